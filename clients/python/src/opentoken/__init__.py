"""opentoken: a client for the opentokend tokenization vault (standard library only).

    from opentoken import Client
    c = Client(socket_path="var/run/opentokend.sock")

See README.md for the whole surface.
"""

from .account import TotpParameters, challenge_hash, password_hash, totp, totp_key
from .client import AccessCode, Client, Detokenized, Registration, Session
from .dates import format_date, parse_rfc3339, to_utc
from .errors import OpenTokenError, ProtocolError
from .signing import (MANDATORY_SIGNED_HEADERS, SCHEME, authorization, canonical_string, sign,
                      signature)
from .transport import Link, Response, Transport, parse_links

__version__ = "0.1.0"

__all__ = [
    "AccessCode", "Client", "Detokenized", "Link", "MANDATORY_SIGNED_HEADERS", "OpenTokenError",
    "ProtocolError", "Registration", "Response", "SCHEME", "Session", "TotpParameters",
    "Transport", "authorization", "canonical_string", "challenge_hash", "format_date",
    "parse_links", "parse_rfc3339", "password_hash", "sign", "signature", "to_utc", "totp",
    "totp_key", "__version__",
]
