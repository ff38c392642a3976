"""Account helpers: the client-side password hash, challenge hash and TOTP codes.

The server announces its parameters and the client follows them (doc/api/registration.md,
doc/api/account.md):

* password hash = base64(PBKDF2-HMAC-SHA512(password, salt, 100000 iterations, 48 bytes)), all
  taken from `passwordHashConfig`;
* challenge hash = hex(SHA-512(password hash + challenge salt)), from `challengeHashConfig`;
* TOTP = RFC 6238 (HMAC-SHA1, 30 s steps, 6 digits unless the key URI says otherwise).

Pure functions, no I/O, nothing logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Mapping

_HASHES = {"sha1", "sha256", "sha384", "sha512"}


def _algorithm(config: Mapping[str, Any], what: str) -> str:
    algorithm = str(config.get("algorithm", "")).lower()
    if algorithm not in _HASHES:
        raise ValueError(f"{what}: unsupported algorithm {algorithm!r}")
    return algorithm


def _encode(raw: bytes, encoding: str, what: str) -> str:
    if encoding == "base64":
        return base64.b64encode(raw).decode("ascii")
    if encoding == "hex":
        return raw.hex()
    raise ValueError(f"{what}: unsupported encoding {encoding!r}")


def password_hash(password: str, config: Mapping[str, Any]) -> str:
    """The password hash the server expects, computed as `passwordHashConfig` says
    (`type` pbkdf2, `algorithm`, `iterations`, `derivedLength`, `salt`, `encoding`)."""
    if config.get("type") != "pbkdf2":
        raise ValueError(f"passwordHashConfig: unsupported type {config.get('type')!r}")
    algorithm = _algorithm(config, "passwordHashConfig")
    iterations = int(config["iterations"])
    length = int(config["derivedLength"])
    if not 1 <= iterations <= 10_000_000 or not 1 <= length <= 1024:
        raise ValueError("passwordHashConfig: iterations or derivedLength out of range")
    raw = hashlib.pbkdf2_hmac(algorithm, password.encode("utf-8"),
                              str(config["salt"]).encode("utf-8"), iterations, length)
    return _encode(raw, str(config.get("encoding", "base64")), "passwordHashConfig")


def challenge_hash(pw_hash: str, config: Mapping[str, Any]) -> str:
    """hash(password hash + challenge salt), as `challengeHashConfig` says (`algorithm`,
    `salt`, `encoding`)."""
    algorithm = _algorithm(config, "challengeHashConfig")
    raw = hashlib.new(algorithm, (pw_hash + str(config["salt"])).encode("utf-8")).digest()
    return _encode(raw, str(config.get("encoding", "hex")), "challengeHashConfig")


@dataclass(frozen=True)
class TotpParameters:
    """How codes are computed: RFC 6238 defaults unless the server's key URI says otherwise."""

    period: int = 30
    digits: int = 6
    algorithm: str = "sha1"

    @staticmethod
    def from_key_uri(uri: str | None) -> "TotpParameters":
        """Reads `period`, `digits` and `algorithm` from an `otpauth://totp/...` URI."""
        if not uri:
            return TotpParameters()
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(uri).query)
        period = int(q.get("period", ["30"])[0])
        digits = int(q.get("digits", ["6"])[0])
        algorithm = q.get("algorithm", ["SHA1"])[0].lower()
        if period < 1 or not 6 <= digits <= 10 or algorithm not in _HASHES:
            raise ValueError("TOTP key URI: unsupported parameters")
        return TotpParameters(period, digits, algorithm)


def totp_key(key: bytes | str) -> bytes:
    """A TOTP key as bytes: bytes are taken as is, a string as base32 (what authenticator apps
    and `keyBase32` show; spaces and case ignored, padding optional)."""
    if isinstance(key, (bytes, bytearray)):
        return bytes(key)
    text = key.replace(" ", "").upper()
    text += "=" * (-len(text) % 8)
    try:
        return base64.b32decode(text)
    except binascii.Error:
        raise ValueError("TOTP key is not base32") from None


def totp(key: bytes | str, when: float | None = None, step_offset: int = 0,
         params: TotpParameters = TotpParameters()) -> str:
    """The RFC 6238 code for time `when` (Unix seconds; default now), `step_offset` steps
    away (-1: the previous code)."""
    t = time.time() if when is None else when
    counter = int(t // params.period) + step_offset
    mac = hmac.new(totp_key(key), struct.pack(">Q", counter), params.algorithm).digest()
    o = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[o:o + 4])[0] & 0x7FFFFFFF) % (10 ** params.digits)
    return f"{code:0{params.digits}d}"
