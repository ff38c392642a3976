"""OT1 request signatures (doc/api/signed-requests.md, doc/request-signatures.md).

The canonical string is

    METHOD \\n PATH \\n QUERY \\n name:value \\n ... \\n \\n BODY

with each signed header's name lower-cased, its value trimmed of spaces and tabs (and the `host`
value lower-cased), in the order of `signed-headers`. The signature is the lower-case hex
HMAC-SHA256 of that string keyed with the access code's secret, sent as

    Authorization: OT1-HMAC-SHA256-HEX; access-code=CODE;
        signed-headers=host content-type x-opentoken-date; signature=HEX

Every header that is signed must be sent exactly as signed: `sign()` returns the complete header
set to send. Pure functions, no I/O; the secret is never logged or returned.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Mapping, Sequence

from .dates import DateLike, format_date

SCHEME = "OT1-HMAC-SHA256-HEX"
DATE_HEADER = "X-OpenToken-Date"
MANDATORY_SIGNED_HEADERS: tuple[str, ...] = ("host", "content-type", "x-opentoken-date")

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ACCESS_CODE = re.compile(r"^[A-Za-z0-9_-]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _find(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header `name` (case-insensitive); ValueError if it appears twice."""
    found = None
    for key, value in headers.items():
        if key.strip().lower() == name:
            if found is not None:
                raise ValueError(f"header {name!r} given twice")
            found = value
    return found


def canonical_string(method: str, target: str, headers: Mapping[str, str],
                     signed_headers: Sequence[str], body: bytes = b"") -> bytes:
    """The exact bytes an OT1 signature covers (what the daemon's verifier rebuilds).

    `target` is the request target as sent: path, optionally `?query` (not decoded, not
    re-ordered). Raises ValueError for what the server would refuse: a method that is not an
    upper-case token, a target that does not start with `/`, a signed header that is missing,
    given twice, or has a control character in its value."""
    if not _TOKEN.match(method) or method != method.upper():
        raise ValueError(f"method is not an upper-case token: {method!r}")
    if (not target.startswith("/") or _CONTROL.search(target) or " " in target
            or not target.isascii()):
        raise ValueError("target must be origin-form (start with '/', ASCII, no spaces or "
                         "controls; percent-encode the rest)")
    if not signed_headers:
        raise ValueError("no signed headers")
    path, _, query = target.partition("?")
    lines = [method, path, query]
    for name in signed_headers:
        if not _TOKEN.match(name) or name != name.lower():
            raise ValueError(f"signed header name is not a lower-case token: {name!r}")
        value = _find(headers, name)
        if value is None:
            raise ValueError(f"signed header {name!r} is not in the request's headers")
        value = value.strip(" \t")
        if _CONTROL.search(value) or not value.isascii():
            raise ValueError(f"header {name!r} has a control or non-ASCII character")
        if name == "host":
            value = value.lower()
        lines.append(f"{name}:{value}")
    head = "\n".join(lines) + "\n\n"
    return head.encode("utf-8") + bytes(body)


def signature(canonical: bytes, secret: str | bytes) -> str:
    """Lower-case hex HMAC-SHA256 of `canonical` keyed with the secret."""
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def authorization(access_code: str, signed_headers: Sequence[str], sig: str) -> str:
    """The `Authorization` header value."""
    return (f"{SCHEME}; access-code={access_code}; "
            f"signed-headers={' '.join(signed_headers)}; signature={sig}")


def sign(method: str, target: str, headers: Mapping[str, str], body: bytes,
         access_code: str, secret: str | bytes, date: DateLike | None = None,
         signed_headers: Sequence[str] = MANDATORY_SIGNED_HEADERS) -> dict[str, str]:
    """The headers to send for an OT1-signed request: `headers` plus `X-OpenToken-Date` and
    `Authorization`.

    `headers` must hold `Host` (over a Unix socket the daemon sees what you send, usually
    `localhost`; over TLS `127.0.0.1:PORT` or the name in your URL, with the port unless it is
    the scheme's default) and `Content-Type` (also for a GET without a body: the server
    requires it signed). `X-OpenToken-Date` is set from `date` (default: now), formatted as
    `YYYY-MM-DDTHH:MM:SSZ`; if `date` is None and `headers` already has one, that value is kept
    and signed as is. Extra headers may be signed by listing them in `signed_headers` (which
    must contain the three mandatory ones)."""
    if not _ACCESS_CODE.match(access_code):
        raise ValueError("access code must be URL-safe base64 characters")
    names = [n.lower() for n in signed_headers]
    for mandatory in MANDATORY_SIGNED_HEADERS:
        if mandatory not in names:
            raise ValueError(f"{mandatory!r} must be signed")
    if len(set(names)) != len(names):
        raise ValueError("a signed header is listed twice")
    out = {k: v for k, v in headers.items() if k.strip().lower() != "authorization"}
    if date is not None or _find(out, "x-opentoken-date") is None:
        out = {k: v for k, v in out.items() if k.strip().lower() != "x-opentoken-date"}
        out[DATE_HEADER] = format_date(date)
    canonical = canonical_string(method, target, out, names, body)
    out["Authorization"] = authorization(access_code, names, signature(canonical, secret))
    return out
