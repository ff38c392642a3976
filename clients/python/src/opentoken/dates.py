"""Dates as the daemon wants them.

The OT1 `X-OpenToken-Date` header and a token's `?expires=` are strictly `YYYY-MM-DDTHH:MM:SSZ`
(UTC, whole seconds). This module accepts every date form a caller is likely to hold and turns it
into that form:

* an aware `datetime.datetime` (any time zone; converted to UTC, fraction dropped);
* a Unix time in seconds (`int` or `float`, fraction dropped);
* an RFC 3339 string: `T` or `t`, an optional fraction of any length (JavaScript's
  `toISOString()` gives milliseconds), then `Z`/`z` or `+hh:mm`/`-hh:mm`. A leap second (`:60`)
  counts as `:59`, as the server does.

A naive `datetime` (no time zone) is refused: it may be local time or UTC, and guessing wrong
shifts a signature out of the server's window.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Union

DateLike = Union[_dt.datetime, int, float, str]

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))$",
    re.ASCII,
)


def parse_rfc3339(text: str) -> _dt.datetime:
    """An RFC 3339 date-time as an aware UTC datetime, truncated to whole seconds.

    Raises ValueError for anything else (no date-only forms, no space instead of `T`, no
    offset-less local times, no out-of-range fields)."""
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 date-time: {text!r}")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    if second == 60:
        second = 59
    if m.group(8) is not None:
        offset = _dt.timedelta(0)
    else:
        off_h, off_m = int(m.group(10)), int(m.group(11))
        if off_h > 23 or off_m > 59:
            raise ValueError(f"offset out of range: {text!r}")
        offset = _dt.timedelta(hours=off_h, minutes=off_m)
        if m.group(9) == "-":
            offset = -offset
    local = _dt.datetime(year, month, day, hour, minute, second,
                         tzinfo=_dt.timezone(offset))  # ValueError on Feb 30 etc.
    return local.astimezone(_dt.timezone.utc)


def to_utc(value: DateLike) -> _dt.datetime:
    """Any accepted date form as an aware UTC datetime with whole seconds."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise ValueError("naive datetime: give it a time zone (e.g. datetime.timezone.utc)")
        out = value.astimezone(_dt.timezone.utc)
    elif isinstance(value, bool):
        raise TypeError("a bool is not a date")
    elif isinstance(value, (int, float)):
        out = _dt.datetime.fromtimestamp(int(value // 1), tz=_dt.timezone.utc)
    elif isinstance(value, str):
        out = parse_rfc3339(value)
    else:
        raise TypeError(f"not a date: {type(value).__name__}")
    return out.replace(microsecond=0)


def format_date(value: DateLike | None = None) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` for `value` (now when None): the form the server requires."""
    when = to_utc(value if value is not None else _dt.datetime.now(_dt.timezone.utc))
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
