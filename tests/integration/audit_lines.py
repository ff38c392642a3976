"""Reads audit trail lines of either format (service/audit.h) with format 1's field names.

Format 2 (issue 20) writes short names, identifiers in base64url and a compact time; this maps
a line back the way `opentoken-admin audit-show` prints it, so tests can look at fields by name.
"""
import base64
import datetime
import json

NAMES = {"s": "seq", "v": "format", "p": "prev", "n": "node", "t": "time", "e": "event",
         "o": "outcome", "c": "status", "a": "account", "i": "object", "d": "detail",
         "h": "heads", "m": "mac"}


def _hex(b64):
    return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()


def expand(line, state=None):
    """One line as a dict with format 1's names. `state` (a dict) carries the node of a format-2
    file, which only the lines naming "p" hold."""
    j = json.loads(line)
    if "s" not in j:
        if state is not None:
            state["node"] = j.get("node", "")
        return j
    out = {}
    for k, v in j.items():
        name = NAMES.get(k, k)
        if name == "time":  # Unix seconds in the file
            v = datetime.datetime.fromtimestamp(v, datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
        elif name in ("account", "object"):
            v = _hex(v)
        elif name == "heads":
            v = [{"node": h["n"], "seq": h["s"], "hash": h["h"]} for h in v]
        out[name] = v
    if state is not None:
        if "prev" in out:
            state["node"] = out.get("node", "")
        elif state.get("node"):
            out["node"] = state["node"]
    return out


def read(path):
    """Every line of one audit file, expanded."""
    state = {}
    with open(path) as f:
        return [expand(line, state) for line in f if line.strip()]


def is_mac(line):
    """True when a raw line carries a MAC (the last line of a batch)."""
    return ',"m":"' in line or ',"mac":"' in line
