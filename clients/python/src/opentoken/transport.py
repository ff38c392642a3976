"""How requests reach the daemon: its Unix socket, or HTTPS (or plain HTTP to a local proxy).

One connection per request (http.client); no redirects are followed, no proxy variables are
read. `Transport.host` is the `Host` header the client sends, and therefore signs.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import ProtocolError


@dataclass
class Response:
    """One answer: status, headers in order (repeated ones kept), body bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = field(repr=False)

    def header(self, name: str) -> str | None:
        """The first header called `name` (case-insensitive), or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise ProtocolError(f"HTTP {self.status}: the body is not JSON") from e

    def links(self) -> list["Link"]:
        out: list[Link] = []
        for value in self.header_values("Link"):
            out.extend(parse_links(value))
        return out

    def link(self, rel: str | None = None, title: str | None = None) -> "Link":
        """The first link with this rel and/or title; ProtocolError if there is none."""
        for link in self.links():
            if (rel is None or link.rel == rel) and (title is None or link.title == title):
                return link
        raise ProtocolError(f"no Link rel={rel!r} title={title!r} in the reply")


@dataclass(frozen=True)
class Link:
    href: str
    params: Mapping[str, str]

    @property
    def rel(self) -> str | None:
        return self.params.get("rel")

    @property
    def title(self) -> str | None:
        return self.params.get("title")


_LINK = re.compile(r'\s*<([^>]*)>((?:\s*;\s*[A-Za-z*-]+\s*=\s*(?:"[^"]*"|[^;,\s]*))*)\s*(?:,|$)')
_PARAM = re.compile(r';\s*([A-Za-z*-]+)\s*=\s*(?:"([^"]*)"|([^;,\s]*))')


def parse_links(value: str) -> list[Link]:
    """The links of one `Link` header value (RFC 8288; several may be comma-separated)."""
    out = []
    pos = 0
    while pos < len(value):
        m = _LINK.match(value, pos)
        if m is None or m.end() == pos:
            break
        params = {p.group(1).lower(): p.group(2) if p.group(2) is not None else p.group(3)
                  for p in _PARAM.finditer(m.group(2))}
        out.append(Link(m.group(1), params))
        pos = m.end()
    return out


def expand(template: str, **values: str) -> str:
    """RFC 6570 level 1 `{name}` with the given values (percent-encoded); `{?...}` query
    expressions are dropped (callers add their query themselves)."""
    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            raise ProtocolError(f"no value for template variable {name!r}")
        return urllib.parse.quote(values[name], safe="")
    without_query = re.sub(r"\{\?[^}]*\}", "", template)
    return re.sub(r"\{([A-Za-z0-9_]+)\}", one, without_query)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            s.connect(self._path)
        except BaseException:
            s.close()
            raise
        self.sock = s


class Transport:
    """Where the daemon is. Use `Transport.unix(path)` or `Transport.url(url, cafile=...)`."""

    def __init__(self, host: str, connect: Any, description: str) -> None:
        self.host = host
        self._connect = connect
        self.description = description

    @staticmethod
    def unix(path: str, timeout: float = 30.0, host: str = "localhost") -> "Transport":
        """The daemon's Unix socket. `host` is the Host header sent (and signed)."""
        return Transport(host, lambda: _UnixHTTPConnection(path, timeout), f"unix:{path}")

    @staticmethod
    def url(url: str, cafile: str | None = None, context: ssl.SSLContext | None = None,
            timeout: float = 30.0) -> "Transport":
        """`https://HOST[:PORT]` (the server's certificate is checked against `cafile`, or
        the system CAs, or `context`), or `http://` (only for a trusted local proxy)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("url must be https://HOST[:PORT] (or http://)")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("url must not carry credentials, a query or a fragment")
        if parts.path not in ("", "/"):
            raise ValueError("url must not have a path: the API's links start at /")
        hostname = parts.hostname
        port = parts.port
        netloc = parts.netloc.lower()
        if parts.scheme == "https":
            ctx = context or ssl.create_default_context(cafile=cafile)

            def connect() -> http.client.HTTPConnection:
                return http.client.HTTPSConnection(hostname, port, timeout=timeout, context=ctx)
        else:
            def connect() -> http.client.HTTPConnection:
                return http.client.HTTPConnection(hostname, port, timeout=timeout)
        return Transport(netloc, connect, f"{parts.scheme}://{netloc}")

    def request(self, method: str, target: str, headers: Mapping[str, str],
                body: bytes | None = None) -> Response:
        h = dict(headers)
        if not any(k.lower() == "host" for k in h):
            h["Host"] = self.host
        conn = self._connect()
        try:
            conn.request(method, target, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            return Response(r.status, r.getheaders(), data)
        finally:
            conn.close()
