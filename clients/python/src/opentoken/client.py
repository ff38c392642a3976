"""`Client`: the OpenToken API of one daemon, for one account.

Follows the links from `GET /` (self-discovery) like the documents ask, so it needs no URL but
the daemon's address. State kept: the account id (after `confirm` or given), the login session
(cookie), the access code pair used to sign (after `use_access_code`) and an optional bearer
access token. Not thread-safe; make one Client per thread.
"""

from __future__ import annotations

import json
import re
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Mapping
import urllib.parse

from . import account as _account
from .dates import DateLike, format_date
from .errors import OpenTokenError, ProtocolError
from .signing import sign
from .transport import Response, Transport, expand

_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_COOKIE = re.compile(r"(?:^|;\s*)login=([^;]*)")


def _check_id(value: str, what: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"{what} must be URL-safe base64 characters")
    return value


@dataclass
class Registration:
    """A registration in progress (`Client.register`). `totp_key` is the MFA secret: put it
    into an authenticator app (`totp_key_uri` as a QR code, or `totp_key_base32`)."""

    id: str
    href: str
    password_hash_config: dict[str, Any] = field(repr=False)
    totp_key: bytes = field(repr=False)
    totp_key_base32: str = field(repr=False)
    totp_key_uri: str = field(repr=False)
    totp: _account.TotpParameters = field(default_factory=_account.TotpParameters)
    qr_href: str | None = None


@dataclass
class Session:
    account_id: str
    session_id: str = field(repr=False)


@dataclass
class AccessCode:
    """An access code pair. `secret` is only known right after creation."""

    code: str
    expires: str | None = None
    secret: str | None = field(default=None, repr=False)
    description: str | None = None
    created: str | None = None
    href: str | None = None


@dataclass
class Detokenized:
    data: bytes = field(repr=False)
    content_type: str | None
    etag: str | None = None


class Client:
    """One daemon, one account. Build it with the daemon's Unix socket or URL:

        Client(socket_path="var/run/opentokend.sock")
        Client(url="https://127.0.0.1:8443", cafile="var/tls/cert.pem")

    Every method raises `OpenTokenError` (HTTP status + the server's error body) when the
    server refuses, `ProtocolError` when its answer is not understood, `OSError` when it cannot
    be reached."""

    def __init__(self, url: str | None = None, *, socket_path: str | None = None,
                 cafile: str | None = None, ssl_context: ssl.SSLContext | None = None,
                 timeout: float = 30.0, account_id: str | None = None,
                 access_code: str | None = None, secret: str | None = None,
                 bearer_token: str | None = None, transport: Transport | None = None) -> None:
        if transport is not None:
            self.transport = transport
        elif socket_path is not None and url is None:
            self.transport = Transport.unix(socket_path, timeout)
        elif url is not None and socket_path is None:
            self.transport = Transport.url(url, cafile=cafile, context=ssl_context,
                                           timeout=timeout)
        else:
            raise ValueError("give exactly one of url= and socket_path=")
        self.account_id = account_id
        self.bearer_token = bearer_token
        self._session: str | None = None
        self._access_code: str | None = None
        self._secret: str | None = None
        if access_code is not None or secret is not None:
            if access_code is None or secret is None:
                raise ValueError("give both access_code= and secret=")
            self.use_access_code(access_code, secret)
        self._root: Response | None = None

    def __repr__(self) -> str:
        return f"<opentoken.Client {self.transport.description}>"

    # --- plumbing ------------------------------------------------------------------------------
    def request(self, method: str, target: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Response:
        """A raw request (no credentials added); returns the Response whatever its status."""
        return self.transport.request(method, target, headers or {}, body)

    @staticmethod
    def _expect(r: Response, method: str, target: str, *statuses: int) -> Response:
        if r.status not in statuses:
            raise OpenTokenError(r.status, r.body, r.header("Content-Type"),
                                 r.header("Retry-After"), method, target)
        return r

    def _json(self, method: str, target: str, doc: Any, headers: Mapping[str, str],
              *statuses: int) -> Response:
        h = {"Content-Type": "application/json", **headers}
        body = json.dumps(doc, separators=(",", ":")).encode("utf-8")
        return self._expect(self.request(method, target, body, h), method, target, *statuses)

    def _session_auth(self) -> dict[str, str]:
        """Credentials for the management routes: the bearer token when one is set (a request
        with both is refused), else the login cookie."""
        if self.bearer_token is not None:
            return {"Authorization": "Bearer " + self.bearer_token}
        if self._session is not None:
            return {"Cookie": "login=" + self._session}
        raise ValueError("not logged in: call login() or give bearer_token=")

    def _need_account(self) -> str:
        if self.account_id is None:
            raise ValueError("no account id: call confirm() or give account_id=")
        return self.account_id

    def discover(self, refresh: bool = False) -> Response:
        """`GET /` (cached): the service links every other call starts from."""
        if self._root is None or refresh:
            self._root = self._expect(self.request("GET", "/"), "GET", "/", 200, 204)
        return self._root

    def _service(self, title: str, **values: str) -> str:
        return expand(self.discover().link(rel="service", title=title).href, **values)

    def health(self) -> dict[str, Any]:
        """`GET /healthCheck` -> {"status": "healthy"}; OpenTokenError(503) when not."""
        href = self._service("health-check")
        return dict(self._expect(self.request("GET", href), "GET", href, 200).json())

    # --- registration, login -------------------------------------------------------------------
    def register(self, email: str, password: str) -> Registration:
        """Starts a registration and secures it with `password` and the first two TOTP codes;
        the server then mails a confirmation link to `email` (see `confirm`). The password
        leaves this process only as its PBKDF2 hash."""
        href = self._service("registration-register")
        r = self._json("POST", href, {"email": email}, {}, 200, 201)
        doc = r.json()
        try:
            edit = r.link(rel="edit", title="registration-secure").href
            mfa = doc["mfa"]["totp"]
            reg = Registration(
                id=edit.rstrip("/").rsplit("/", 1)[-1], href=edit,
                password_hash_config=dict(doc["passwordHashConfig"]),
                totp_key=bytes.fromhex(mfa["keyHex"]), totp_key_base32=mfa["keyBase32"],
                totp_key_uri=mfa.get("keyUri", ""),
                totp=_account.TotpParameters.from_key_uri(mfa.get("keyUri")))
        except (KeyError, TypeError, ValueError) as e:
            raise ProtocolError(f"registration reply not understood: {e!r}") from None
        for link in r.links():
            if link.rel == "item":
                reg.qr_href = link.href
        self.secure(reg, password)
        return reg

    def registration_qr(self, registration: Registration) -> bytes:
        """The TOTP key as a PNG QR code (for an authenticator app), until confirmation."""
        href = registration.qr_href or registration.href.rstrip("/") + "/qr"
        r = self._expect(self.request("GET", href), "GET", "(registration qr)", 200)
        return r.body

    def secure(self, registration: Registration, password: str,
               when: float | None = None) -> None:
        """(Re)sends the password hash and two consecutive TOTP codes; the server mails a new
        confirmation link (the previous one stops working)."""
        now = time.time() if when is None else when
        p = registration.totp
        body = {
            "mfa": {"totp": {"current": _account.totp(registration.totp_key, now, 0, p),
                             "previous": _account.totp(registration.totp_key, now, -1, p)}},
            "passwordHash": _account.password_hash(password, registration.password_hash_config),
        }
        self._json("POST", registration.href, body, {}, 204, 200)

    def confirm(self, link_or_code: str, registration: Registration | None = None) -> str:
        """Confirms a registration with the link from the mail (absolute URL or path), or with
        the code alone plus the `registration`. Returns the new account id (also kept)."""
        text = link_or_code.strip()
        if "://" in text:
            path = urllib.parse.urlsplit(text).path
        elif text.startswith("/"):
            path = text
        else:
            if registration is None:
                raise ValueError("a bare confirmation code needs the registration")
            path = registration.href.rstrip("/") + "/confirm/" + _check_id(text, "code")
        if not re.match(r"^/registration/[A-Za-z0-9_-]+/confirm/[A-Za-z0-9_-]+$", path):
            raise ValueError("not a confirmation link")
        r = self._expect(self.request("GET", path), "GET", "(confirmation link)", 201, 200)
        try:
            self.account_id = str(r.json()["accountId"])
        except (KeyError, TypeError):
            raise ProtocolError("confirmation reply has no accountId") from None
        return self.account_id

    def login(self, password: str, totp_key: bytes | str | None = None, *,
              totp_code: str | None = None, account_id: str | None = None,
              totp_params: _account.TotpParameters = _account.TotpParameters()) -> Session:
        """Logs in (challenge, then password + TOTP) and keeps the session cookie. Give the
        TOTP key (bytes, or base32 text) or a code read from an authenticator app. A TOTP step
        works for one login only: a second login within 30 s needs the next code."""
        if account_id is not None:
            self.account_id = account_id
        acct = _check_id(self._need_account(), "account id")
        if (totp_key is None) == (totp_code is None):
            raise ValueError("give exactly one of totp_key and totp_code=")
        href = self._service("account-login", accountId=acct)
        ch = self._expect(self.request("GET", href), "GET", href, 200).json()
        if not isinstance(ch, dict) or not {"passwordHashConfig", "challengeHashConfig"} <= set(ch):
            raise ProtocolError("login challenge not understood")
        pw = _account.password_hash(password, ch["passwordHashConfig"])
        if totp_code is not None:
            code = totp_code
        else:
            assert totp_key is not None  # checked above: exactly one of the two
            code = _account.totp(totp_key, None, 0, totp_params)
        body = {"challengeHash": _account.challenge_hash(pw, ch["challengeHashConfig"]),
                "mfa": {"totp": code}}
        r = self._json("POST", href, body, {}, 200)
        m = _COOKIE.search(r.header("Set-Cookie") or "")
        if m is None:
            raise ProtocolError("login reply has no login cookie")
        self._session = m.group(1)
        return Session(acct, self._session)

    @property
    def logged_in(self) -> bool:
        return self._session is not None

    def logout(self) -> None:
        """Ends the session (the server clears the cookie); a no-op when not logged in."""
        if self._session is None:
            return
        href = f"/account/{_check_id(self._need_account(), 'account id')}/logout"
        try:
            self._expect(self.request("POST", href, b"", {"Cookie": "login=" + self._session}),
                         "POST", href, 204, 200)
        finally:
            self._session = None

    def whoami(self) -> dict[str, Any]:
        """`GET /account/{id}` with the session or bearer: {"accountId", "email"}."""
        acct = _check_id(self._need_account(), "account id")
        href = f"/account/{acct}"
        doc = self._expect(self.request("GET", href, None, self._session_auth()), "GET", href,
                           200).json()
        return {"accountId": acct, **doc}

    # --- access codes --------------------------------------------------------------------------
    def _codes_href(self) -> str:
        return f"/account/{_check_id(self._need_account(), 'account id')}/accessCode"

    def create_access_code(self, description: str | None = None) -> AccessCode:
        """A new access code pair; its `secret` is shown only here. Needs a session (or a bearer
        with `accessCodes.create`)."""
        href = self._codes_href()
        doc = {} if description is None else {"description": description}
        r = self._json("POST", href, doc, self._session_auth(), 201)
        d = r.json()
        return AccessCode(code=d["code"], secret=d["secret"], expires=d.get("expires"),
                          description=description, href=r.header("Location"))

    def list_access_codes(self) -> list[AccessCode]:
        """The account's pairs (never their secrets)."""
        href = self._codes_href()
        items = self._expect(self.request("GET", href, None, self._session_auth()), "GET", href,
                             200).json().get("items", [])
        return [AccessCode(code=i["code"], expires=i.get("expires"),
                           description=i.get("description"), created=i.get("created"),
                           href=i.get("href")) for i in items]

    def revoke_access_code(self, code: str) -> None:
        href = self._codes_href() + "/" + _check_id(code, "access code")
        self._expect(self.request("DELETE", href, None, self._session_auth()), "DELETE", href, 204)

    def use_access_code(self, code: AccessCode | str, secret: str | None = None) -> AccessCode:
        """Signs tokenize/detokenize/delete with this pair from now on; returns the pair."""
        pair = code if isinstance(code, AccessCode) else AccessCode(code=code, secret=secret)
        if secret is not None:
            pair.secret = secret
        if pair.secret is None:
            raise ValueError("the access code's secret is needed to sign")
        self._access_code, self._secret = _check_id(pair.code, "access code"), pair.secret
        return pair

    # --- tokens --------------------------------------------------------------------------------
    def _token_base(self) -> str:
        return self._service("account-token-create",
                             accountId=_check_id(self._need_account(), "account id"))

    def _signed(self, method: str, target: str, body: bytes, content_type: str,
                bearer_ok: bool = False, unsigned_ok: bool = False) -> Response:
        headers = {"Host": self.transport.host, "Content-Type": content_type}
        if self._access_code is not None and self._secret is not None:
            headers = sign(method, target, headers, body, self._access_code, self._secret)
        elif bearer_ok and self.bearer_token is not None:
            headers["Authorization"] = "Bearer " + self.bearer_token
        elif not unsigned_ok:
            raise ValueError("no access code: call use_access_code()")
        return self.request(method, target, body, headers)

    def tokenize(self, data: bytes, content_type: str = "application/octet-stream", *,
                 public: bool = False, expires: DateLike | None = None) -> str:
        """Stores `data` (any bytes) and returns the token id. `public` tokens can be read
        without a signature; `expires` (a datetime, Unix time or RFC 3339 string) ends the
        token's life. Signed with the access code pair, or (private tokens only) a bearer with
        `tokens.create`."""
        query = []
        if public:
            query.append("public=true")
        if expires is not None:
            query.append("expires=" + format_date(expires))
        target = self._token_base() + ("?" + "&".join(query) if query else "")
        r = self._expect(self._signed("POST", target, bytes(data), content_type, bearer_ok=True),
                         "POST", target, 201)
        location = r.header("Location")
        if not location or "/" not in location:
            raise ProtocolError("tokenize reply has no Location")
        return location.rstrip("/").rsplit("/", 1)[-1]

    def _token_href(self, token_id: str) -> str:
        _check_id(token_id, "token id")
        return self._token_base() + "/" + token_id

    def detokenize(self, token_id: str, *, signed: bool = True) -> Detokenized:
        """The exact bytes and content type stored under `token_id`. `signed=False` reads a
        public token without credentials."""
        href = self._token_href(token_id)
        if signed:
            r = self._signed("GET", href, b"", "application/octet-stream")
        else:
            r = self.request("GET", href)
        self._expect(r, "GET", href, 200)
        return Detokenized(r.body, r.header("Content-Type"), r.header("ETag"))

    def delete(self, token_id: str) -> None:
        """Deletes a token (signed); later reads are 404."""
        href = self._token_href(token_id)
        self._expect(self._signed("DELETE", href, b"", "application/octet-stream"),
                     "DELETE", href, 204)

    # --- access tokens (/access-tokens) ----------------------------------------------------------
    def _access_tokens_href(self) -> str:
        return self._service("account-accessTokens")

    def create_access_token(self, name: str, *, scope: list[str] | None = None,
                            expiration_date: DateLike | None = None,
                            description: str | None = None,
                            status: str | None = None) -> dict[str, Any]:
        """A bearer access token for this account; the result's `token` is shown only here.
        Without `scope` the token can do nothing."""
        doc: dict[str, Any] = {"name": name}
        if scope is not None:
            doc["scope"] = list(scope)
        if expiration_date is not None:
            doc["expirationDate"] = format_date(expiration_date)
        if description is not None:
            doc["description"] = description
        if status is not None:
            doc["status"] = status
        href = self._access_tokens_href()
        return dict(self._json("POST", href, doc, self._session_auth(), 201).json())

    def list_access_tokens(self) -> list[dict[str, Any]]:
        href = self._access_tokens_href()
        r = self._expect(self.request("GET", href, None, self._session_auth()), "GET", href, 200)
        return list(r.json().get("items", []))

    def _access_token_href(self, access_token_id: str) -> str:
        _check_id(access_token_id, "access token id")
        return self._access_tokens_href() + "/" + access_token_id

    def get_access_token(self, access_token_id: str) -> dict[str, Any]:
        href = self._access_token_href(access_token_id)
        return dict(self._expect(self.request("GET", href, None, self._session_auth()), "GET",
                                 href, 200).json())

    def update_access_token(self, access_token_id: str, *, name: str | None = None,
                            status: str | None = None) -> dict[str, Any]:
        """Renames and/or (de)activates (`status` "active"/"inactive")."""
        doc: dict[str, Any] = {}
        if name is not None:
            doc["name"] = name
        if status is not None:
            doc["status"] = status
        href = self._access_token_href(access_token_id)
        return dict(self._json("PATCH", href, doc, self._session_auth(), 200).json())

    def delete_access_token(self, access_token_id: str) -> None:
        href = self._access_token_href(access_token_id)
        self._expect(self.request("DELETE", href, None, self._session_auth()), "DELETE", href,
                     200, 204)

    # --- access tokens by e-mail (/v1/access_tokens) ---------------------------------------------
    def _email_doc(self, attributes: dict[str, str]) -> dict[str, Any]:
        return {"data": {"type": "access_tokens", "attributes": attributes}}

    def request_access_token_by_email(self, email: str) -> None:
        """Asks for an access token to be mailed to `email` (if it has an account; the answer
        is the same either way)."""
        href = self._service("access-tokens-email")
        self._json("POST", href, self._email_doc({"email_address": email}), {}, 201, 202)

    def request_access_token_deletion_code(self, email: str) -> None:
        """Asks for a code (mailed) that revokes the e-mailed tokens of `email`."""
        href = self._service("access-tokens-email-delete")
        self._json("POST", href, self._email_doc({"email_address": email}), {}, 201, 202)

    def delete_emailed_access_tokens(self, email: str, code: str) -> None:
        """Revokes the e-mailed tokens of `email` with the mailed deletion code."""
        href = self._service("access-tokens-email")
        self._json("DELETE", href, self._email_doc({"email_address": email, "code": code}), {},
                   204, 200)
