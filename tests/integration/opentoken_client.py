"""A client written against the OpenToken documents only: it follows Link headers from `/`,
hashes passwords as `passwordHashConfig` says, computes TOTP codes (RFC 6238) and challenge hashes.
Used by the black-box tests."""

import base64
import email
import email.policy
import glob
import hashlib
import hmac
import json
import os
import re
import struct
import time

PASSWORD = "correct horse battery staple"


def totp(key: bytes, t: float, step_offset: int = 0) -> str:
    counter = int(t) // 30 + step_offset
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    o = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[o:o + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{code:06d}"


def password_hash(config: dict, password: str = PASSWORD) -> str:
    assert config["type"] == "pbkdf2" and config["algorithm"] == "sha512"
    assert config["encoding"] == "base64"
    raw = hashlib.pbkdf2_hmac("sha512", password.encode(), config["salt"].encode(),
                              config["iterations"], config["derivedLength"])
    return base64.b64encode(raw).decode()


def challenge_hash(pw_hash: str, challenge_config: dict) -> str:
    assert challenge_config["algorithm"] == "sha512" and challenge_config["encoding"] == "hex"
    return hashlib.sha512((pw_hash + challenge_config["salt"]).encode()).hexdigest()


def parse_link(link: str) -> dict:
    m = re.match(r"<([^>]*)>(.*)", link)
    out = {"href": m.group(1)}
    for k, v in re.findall(r';\s*([a-z]+)="([^"]*)"', m.group(2)):
        out[k] = v
    return out


def find_link(reply, rel=None, title=None):
    for raw in reply.links():
        link = parse_link(raw)
        if (rel is None or link.get("rel") == rel) and (title is None or link.get("title") == title):
            return link
    raise AssertionError(f"no link rel={rel} title={title} in {reply.links()}")


def expand(template: str, **values) -> str:
    for k, v in values.items():
        template = template.replace("{" + k + "}", v)
    return re.sub(r"\{\?[^}]*\}", "", template)


def read_mails(spool_dir):
    out = []
    for path in sorted(glob.glob(os.path.join(spool_dir, "*.eml"))):
        with open(path, "rb") as f:
            msg = email.message_from_binary_file(f, policy=email.policy.default)
        text = msg.get_body(preferencelist=("plain",)).get_content()
        out.append((path, msg, text))
    return out


def wait_for_mail(spool_dir, count=1, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        mails = read_mails(spool_dir)
        if len(mails) >= count:
            return mails
        time.sleep(0.05)
    raise AssertionError(f"expected {count} mails in {spool_dir}")


def confirm_path(text):
    m = re.search(r"https?://[^/\s]+(/registration/[A-Za-z0-9_-]+/confirm/[A-Za-z0-9_-]+)", text)
    assert m, text
    return m.group(1)


def logged_in_user(daemon, spool_dir, address):
    """A confirmed account, logged in (the spool is emptied first so its link is the only one)."""
    for f in glob.glob(os.path.join(spool_dir, "*.eml")):
        os.unlink(f)
    c = Client(daemon, address=address)
    c.full_registration(spool_dir)
    r = c.login()
    assert r.status == 200, r.body
    return c


class Client:
    """One user going through the documented flows against a harness.Daemon."""

    def __init__(self, daemon, transport="unix", address="user@example.com"):
        self.d = daemon
        self.t = transport
        self.address = address
        self.cookie = None

    def req(self, method, path, body=None, headers=None):
        h = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        if self.cookie:
            h.setdefault("Cookie", "login=" + self.cookie)
        return self.d.request(method, path, body=body, headers=h, transport=self.t)

    def register(self):
        root = self.req("GET", "/")
        link = find_link(root, rel="service", title="registration-register")
        assert link["profile"] == "/schema/registration/register-request.json"
        r = self.req("POST", link["href"], {"email": self.address})
        assert r.status == 200, (r.status, r.body)
        self.registration = r
        self.reg_body = r.json()
        self.seed = bytes.fromhex(self.reg_body["mfa"]["totp"]["keyHex"])
        self.pw_hash = password_hash(self.reg_body["passwordHashConfig"])
        return r

    def secure(self, now=None):
        now = time.time() if now is None else now
        edit = find_link(self.registration, rel="edit", title="registration-secure")
        body = {"mfa": {"totp": {"current": totp(self.seed, now), "previous": totp(self.seed, now, -1)}},
                "passwordHash": self.pw_hash}
        return self.req("POST", edit["href"], body)

    def confirm(self, spool_dir, mail_index=-1):
        mails = wait_for_mail(spool_dir)
        path = confirm_path(mails[mail_index][2])
        r = self.req("GET", path)
        return r, path

    def full_registration(self, spool_dir):
        self.register()
        r = self.secure()
        assert r.status == 204, (r.status, r.body)
        r, _ = self.confirm(spool_dir)
        assert r.status == 201, (r.status, r.body)
        self.account_id = r.json()["accountId"]
        self.login_href = find_link(r, rel="login", title="account-login")["href"]
        return r

    def login(self, step_offset=0, pw_hash=None, now=None):
        """Logs in with the TOTP code of the step `step_offset` away from `now` (default: the
        moment the request is sent; pass a fixed time to send one step's code again)."""
        ch = self.req("GET", self.login_href)
        assert ch.status == 200, (ch.status, ch.body)
        body = ch.json()
        h = challenge_hash(pw_hash or password_hash(body["passwordHashConfig"]), body["challengeHashConfig"])
        at = time.time() if now is None else now
        r = self.req("POST", self.login_href,
                     {"challengeHash": h, "mfa": {"totp": totp(self.seed, at, step_offset)}})
        if r.status == 200:
            cookie = r.header("Set-Cookie")
            self.cookie = re.match(r"login=([^;]*)", cookie).group(1)
            self.login_reply = r
        return r


def ot1_date(t=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def ot1_canonical(method, target, headers, signed, body: bytes) -> bytes:
    path, _, query = target.partition("?")
    lower = {k.lower(): v for k, v in headers.items()}
    lines = []
    for name in signed:
        value = lower[name].strip()
        if name == "host":
            value = value.lower()
        lines.append(f"{name}:{value}")
    head = f"{method}\n{path}\n{query}\n" + "".join(l + "\n" for l in lines) + "\n"
    return head.encode() + body


def ot1_sign(method, target, headers, body: bytes, code, secret,
             signed=("host", "content-type", "x-opentoken-date")) -> dict:
    """Returns headers with Authorization added (signing exactly what will be sent)."""
    canonical = ot1_canonical(method, target, headers, signed, body)
    sig = hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest()
    h = dict(headers)
    h["Authorization"] = (f"OT1-HMAC-SHA256-HEX; access-code={code}; "
                          f"signed-headers={' '.join(signed)}; signature={sig}")
    return h


class Signer:
    """Makes OT1-signed requests with one access code pair."""

    def __init__(self, daemon, code, secret, transport="unix"):
        self.d, self.code, self.secret, self.t = daemon, code, secret, transport

    def host(self):
        return "localhost" if self.t == "unix" else f"127.0.0.1:{self.d.port}"

    def request(self, method, target, body=b"", content_type="text/plain", date=None, extra=None,
                signed=("host", "content-type", "x-opentoken-date"), tamper=None):
        headers = {"Host": self.host(), "Content-Type": content_type, "X-OpenToken-Date": date or ot1_date()}
        headers.update(extra or {})
        h = ot1_sign(method, target, headers, body, self.code, self.secret, signed)
        if tamper:
            h, body = tamper(h, body)
        return self.d.request(method, target, body=body, headers=h, transport=self.t)
