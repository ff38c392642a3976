"""Hostile clients for test_hostile_clients.py and tests/long/hostile_clients_long.py (issue 7
item 6): a generated catalogue of malformed requests, and attacker roles that run in their own
processes (slowloris, slow body, slow reads, connection flood, pipelining, the catalogue).

Every catalogue entry is a complete byte string (nothing is left for the server to wait for) that
must be refused: the answer must be a 4xx (501 only for unrecognised methods, the RFC 9110 §9.1
answer and documented in the README), exactly one response, and the connection closed (each entry
carries `Connection: close` or is a framing error, after which the server closes). An entry is
never a valid request, so a 2xx is a failure too.

Standard library only; the attackers talk raw sockets so that nothing is normalised on the way.
"""

import collections
import random
import select
import socket
import ssl
import time

Case = collections.namedtuple("Case", "name category raw")

HOST = b"Host: a\r\n"
CLOSE = b"Connection: close\r\n"
SMUGGLED = b"GET /healthCheck HTTP/1.1\r\nHost: a\r\n\r\n"

# Targets where no request of the catalogue can succeed: POST / and POST /healthCheck are 405,
# /nothing is 404, so a framing shape that the server (rightly) accepts still ends in a 4xx.
FRAMING_TARGETS = (b"/", b"/healthCheck", b"/nothing")


def _req(method=b"POST", target=b"/", version=b"HTTP/1.1", headers=(), body=b"", close=True):
    head = method + b" " + target + b" " + version + b"\r\n"
    for h in headers:
        head += h + b"\r\n"
    if close:
        head += CLOSE
    return head + b"\r\n" + body


# --- framing and request smuggling --------------------------------------------------------------
TE_VALUES = [b"chunked", b"Chunked", b"CHUNKED", b" chunked", b"chunked ", b"\tchunked", b"chunked,",
             b",chunked", b"chunked, chunked", b"gzip, chunked", b"chunked, gzip", b"identity",
             b"identity, chunked", b"deflate", b"x-chunked", b"chunk", b"chunked;q=1", b'"chunked"',
             b"chunked\x0b", b"\x0cchunked", b"ch unked", b"", b"chunked\x00", b"ch\xc3\xbcnked"]
TE_NAMES = [b"Transfer-Encoding", b"transfer-encoding", b"TRANSFER-ENCODING", b"Transfer-Encoding ",
            b" Transfer-Encoding", b"Transfer-Encoding\t"]
CL_VALUES = [b"5", b"05", b"+5", b"-5", b" 5", b"5 ", b"5,5", b"5, 5", b"0x5", b"5.0", b"5e0", b"",
             b"\t5", b"\xd9\xa5", b"99999999999999999999", b"18446744073709551616",
             b"18446744073709551615", b"4294967301", b"1048577", b"abc", b"5\x00", b"5;", b"\"5\""]
CL_NAMES = [b"Content-Length", b"content-length", b"Content-Length ", b"Content-Length\t",
            b" Content-Length"]
CHUNKED_BODY = b"0\r\n\r\n"  # 5 bytes: complete under either reading of CL: 5 / chunked


def framing_cases():
    out = []
    # TE x (no CL | CL before | CL after) x target: every combination is either refused (400) or
    # read completely and answered 405/404.
    for i, te in enumerate(TE_VALUES):
        for mode in ("te", "te+cl", "cl+te"):
            target = FRAMING_TARGETS[i % 3]
            hs = [HOST]
            if mode == "te":
                hs += [b"Transfer-Encoding: " + te]
            elif mode == "te+cl":
                hs += [b"Transfer-Encoding: " + te, b"Content-Length: 5"]
            else:
                hs += [b"Content-Length: 5", b"Transfer-Encoding: " + te]
            out.append(Case(f"te-{mode}-{i}", "smuggling", _req(target=target, headers=[h.rstrip(b"\r\n") for h in hs],
                                                              body=CHUNKED_BODY + SMUGGLED)))
    for i, name in enumerate(TE_NAMES):
        for with_cl in (False, True):
            hs = [b"Host: a", name + b": chunked"] + ([b"Content-Length: 5"] if with_cl else [])
            out.append(Case(f"te-name-{i}-cl{int(with_cl)}", "smuggling", _req(headers=hs, body=CHUNKED_BODY + SMUGGLED)))
    # TE on HTTP/1.0, and twice.
    for i, te in enumerate(TE_VALUES[:8]):
        out.append(Case(f"te-http10-{i}", "smuggling",
                        _req(version=b"HTTP/1.0", headers=[b"Host: a", b"Transfer-Encoding: " + te], body=CHUNKED_BODY)))
        out.append(Case(f"te-twice-{i}", "smuggling",
                        _req(headers=[b"Host: a", b"Transfer-Encoding: " + te, b"Transfer-Encoding: chunked"],
                             body=CHUNKED_BODY + SMUGGLED)))
    # Content-Length shapes: one, two equal, two different, with each header-name spelling.
    for i, cl in enumerate(CL_VALUES):
        for dup in ("one", "same", "different"):
            hs = [b"Host: a", b"Content-Length: " + cl]
            if dup == "same":
                hs.append(b"Content-Length: " + cl)
            elif dup == "different":
                hs.append(b"Content-Length: 6")
            out.append(Case(f"cl-{dup}-{i}", "smuggling",
                            _req(target=FRAMING_TARGETS[i % 3], headers=hs, body=b"hello" + SMUGGLED)))
    for i, name in enumerate(CL_NAMES):
        out.append(Case(f"cl-name-{i}", "smuggling", _req(headers=[b"Host: a", name + b": 5"], body=b"hello" + SMUGGLED)))
        out.append(Case(f"cl-name-dup-{i}", "smuggling",
                        _req(headers=[b"Host: a", b"Content-Length: 5", name + b": 10"], body=b"hello" + SMUGGLED)))
    # Chunked bodies that are wrong.
    bad_chunks = [b"0x5\r\nhello\r\n0\r\n\r\n", b"-5\r\nhello\r\n0\r\n\r\n", b"+5\r\nhello\r\n0\r\n\r\n",
                  b" 5\r\nhello\r\n0\r\n\r\n", b"5 \r\nhello\r\n0\r\n\r\n", b"5;x=y\r\nhello\r\n0\r\n\r\n",
                  b"5;" + b"e" * 20000 + b"\r\nhello\r\n0\r\n\r\n", b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
                  b"10000000000000000\r\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX\r\n0\r\n\r\n", b"5\r\nhello0\r\n\r\n",
                  b"5\nhello\n0\n\n", b"5\rhello\r0\r\r", b"g\r\nhello\r\n0\r\n\r\n", b"\r\nhello\r\n0\r\n\r\n",
                  b"0\r\nContent-Length: 5\r\n\r\n", b"0\r\nTransfer-Encoding: chunked\r\n\r\n",
                  b"0\r\nX-Trailer: 1\r\n\r\n", b"0\r\nHost: b\r\n\r\n", b"3\r\nabc\r\n0;ext\r\n\r\n",
                  b"200000\r\n" + b"a" * 64, b"5\r\nhel\x00o\r\n0\r\n\r\n" + SMUGGLED]
    for i, body in enumerate(bad_chunks):
        out.append(Case(f"chunk-{i}", "smuggling",
                        _req(headers=[b"Host: a", b"Transfer-Encoding: chunked"], body=body + SMUGGLED)))
    # Obsolete line folding on each header, with space and tab; bare CR / LF line ends.
    for name in (b"Host", b"Content-Length", b"Transfer-Encoding", b"X-Foo", b"Authorization", b"Content-Type"):
        for f, fold in enumerate((b" ", b"\t", b"  ")):
            value = b"5" if name == b"Content-Length" else (b"chunked" if name == b"Transfer-Encoding" else b"x")
            hs = [b"Host: a", name + b":", fold + value] if name != b"Host" else [b"Host:", fold + b"a"]
            out.append(Case(f"obs-fold-{name.decode()}-{f}", "smuggling",
                            _req(headers=hs, body=b"hello" if name != b"Transfer-Encoding" else CHUNKED_BODY)))
    line_ends = [(b"\n", "lf"), (b"\r", "cr"), (b"\r\r\n", "crcrlf"), (b"\n\r", "lfcr")]
    for eol, tag in line_ends:
        for where in ("request-line", "header", "all"):
            if where == "request-line":
                raw = b"GET / HTTP/1.1" + eol + b"Host: a\r\nConnection: close\r\n\r\n"
            elif where == "header":
                raw = b"GET / HTTP/1.1\r\nHost: a" + eol + b"X-A: b\r\nConnection: close\r\n\r\n"
            else:
                raw = (b"GET / HTTP/1.1" + eol + b"Host: a" + eol + b"Connection: close" + eol + eol
                       + b"\r\n\r\n")
            out.append(Case(f"eol-{tag}-{where}", "smuggling", raw))
    # Header line shapes.
    shapes = [b"NoColon", b": empty-name", b"X Foo: y", b"X(Foo): y", b"X@Foo: y", b"X\"Foo: y",
              b"X-Foo : y", b"X-Foo\t: y", b" X-Foo: y", b"\tX-Foo: y", b"X-" + b"n" * 9000 + b": y",
              b"X/Foo: y", b"X[Foo]: y", b"X{Foo}: y", b"X=Foo: y", b"X;Foo: y", b"X,Foo: y", b"X?Foo: y"]
    for i, shape in enumerate(shapes):
        hs = [b"Host: a", shape] if not shape.startswith((b" ", b"\t")) else [shape, b"Host: a"]
        out.append(Case(f"header-shape-{i}", "smuggling", _req(method=b"POST", headers=hs)))
    # Host header shapes.
    hosts = [b"", b"a b", b"a@b", b"a/b", b"a\\b", b"a,b", b"a, b", b"\xc3\xa9", b"\xff", b"a" * 300, b"\x7f",
             b"a\x01"]
    for i, h in enumerate(hosts):
        out.append(Case(f"host-{i}", "smuggling", _req(headers=[b"Host: " + h])))
    out.append(Case("host-twice", "smuggling", _req(headers=[b"Host: a", b"Host: a"])))
    out.append(Case("host-twice-different", "smuggling", _req(headers=[b"Host: a", b"Host: b"])))
    for i, exp in enumerate([b"200-ok", b"100-continue, x", b"x", b"", b"100-continue;a=b", b"\xff"]):
        out.append(Case(f"expect-{i}", "smuggling", _req(headers=[b"Host: a", b"Expect: " + exp, b"Content-Length: 5"],
                                                        body=b"hello")))
    return out


# --- request line ---------------------------------------------------------------------------
KNOWN_METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE"]
UNSUPPORTED_METHODS = [b"BREW", b"FOO", b"PROPFIND", b"MKCOL", b"LOCK", b"UNLOCK", b"SEARCH", b"M-SEARCH",
                       b"PURGE", b"LINK", b"UNLINK", b"COPY", b"MOVE", b"REPORT", b"BIND", b"ACL", b"OPTIONS",
                       b"TRACE", b"CONNECT", b"PRI", b"GETX", b"XGET", b"MERGE", b"NOTIFY", b"SUBSCRIBE"]


def request_line_cases():
    out = []
    for m in KNOWN_METHODS:
        out.append(Case(f"method-lower-{m.decode()}", "bad-method", _req(method=m.lower(), target=b"/nothing",
                                                                       headers=[b"Host: a"])))
        out.append(Case(f"method-mixed-{m.decode()}", "bad-method", _req(method=m[:1] + m[1:].lower(), target=b"/nothing",
                                                                       headers=[b"Host: a"])))
    for m in UNSUPPORTED_METHODS:
        for target in (b"/", b"/healthCheck", b"*"):
            out.append(Case(f"method-{m.decode()}-{target.decode()}", "bad-method",
                            _req(method=m, target=target, headers=[b"Host: a"])))
    odd = [b"G ET", b"GET\t", b"", b"G\x00ET", b"G\xc3\x89T", b"GET" * 400, b"123", b"GET/", b"-", b"GE\x7fT"]
    for i, m in enumerate(odd):
        out.append(Case(f"method-odd-{i}", "bad-method", _req(method=m, target=b"/nothing", headers=[b"Host: a"])))
    versions = [b"HTTP/1.0", b"HTTP/0.9", b"HTTP/2.0", b"HTTP/2", b"HTTP/1.2", b"HTTP/3", b"http/1.1", b"HTTP/1.1x",
                b"HTTP/01.1", b"HTTP/1.10", b"HTTP/1.1 ", b"HTTP/", b"", b"HTTP/1", b"HTTP/1.", b"HTTP/11",
                b"HTTPS/1.1", b"HTTP /1.1", b"HTTP/\xc3\xa9", b"HTTP/9.9"]
    for i, v in enumerate(versions):
        for target in (b"/", b"/healthCheck"):
            out.append(Case(f"version-{i}-{target.decode()}", "request-line",
                            _req(method=b"GET", target=target, version=v, headers=[b"Host: a"])))
    targets = [b"http://a/", b"https://a/healthCheck", b"a:443", b"*", b"healthCheck", b"/a#b", b"/a\\b",
               b"/schema/../etc/passwd", b"/schema/%2e%2e/x", b"/schema/%2E%2e/x", b"/a%2fb", b"/a%2Fb",
               b"/a%5cb", b"//healthCheck", b"/healthCheck/..", b"/a%00b", b"/a%0d%0aSet-Cookie:x",
               b"/a%0Ab", b"/?%00", b"/a b", b"/a\tb", b"/\xc3\xa9", b"/\xff", b"/\xc0\xaf",
               b"/%ff%fe", b"/schema/%c0%af.json", b"/" + b"a" * 2048, b"/" + b"a" * 5000, b"/" + b"a" * 9000,
               b"/healthCheck?" + b"q" * 3000, b"/schema/" + b"../" * 20, b"/%", b"/%zz", b"/%2"]
    for i, t in enumerate(targets):
        for method in (b"GET", b"POST"):
            out.append(Case(f"target-{i}-{method.decode()}", "request-line",
                            _req(method=method, target=t, headers=[b"Host: a"])))
    spacing = [b"GET  / HTTP/1.1", b" GET / HTTP/1.1", b"GET /  HTTP/1.1", b"GET\t/\tHTTP/1.1", b"GET /",
               b"GET", b"/ HTTP/1.1", b"GET / HTTP/1.1 extra", b"\r\nGET / HTTP/1.1"]
    for i, line in enumerate(spacing):
        out.append(Case(f"spacing-{i}", "request-line", line + b"\r\nHost: a\r\nConnection: close\r\n\r\n"))
    out.append(Case("h2-preface", "request-line", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
    out.append(Case("tls-on-plain", "request-line", bytes.fromhex("160301006a0100006603030000") + b"\r\n\r\n"))
    return out


# --- oversized --------------------------------------------------------------------------------
def oversized_cases():
    out = []
    for size in (8193, 9000, 16384, 65536, 262144):
        out.append(Case(f"header-value-{size}", "oversized",
                        _req(method=b"GET", target=b"/healthCheck", headers=[b"Host: a", b"X-Big: " + b"v" * size])))
        out.append(Case(f"cookie-{size}", "oversized",
                        _req(method=b"GET", target=b"/account/x", headers=[b"Host: a", b"Cookie: login=" + b"c" * size])))
        out.append(Case(f"authorization-{size}", "oversized",
                        _req(method=b"GET", target=b"/account/x/token/y",
                             headers=[b"Host: a", b"Authorization: OT1-HMAC-SHA256-HEX; " + b"x" * size])))
    for count in (600, 2000, 10000):
        out.append(Case(f"many-headers-{count}", "oversized",
                        _req(method=b"GET", target=b"/nothing", headers=[b"Host: a"] + [b"X-A: b"] * count)))
    for size in (2049, 4096, 8000, 8200, 65536):
        out.append(Case(f"uri-{size}", "oversized", _req(method=b"GET", target=b"/" + b"u" * (size - 1),
                                                        headers=[b"Host: a"])))
        out.append(Case(f"query-{size}", "oversized", _req(method=b"GET", target=b"/healthCheck?" + b"q=1&" * (size // 4),
                                                          headers=[b"Host: a"])))
    for cl in (1048577, 2 ** 31, 2 ** 40, 10 ** 18):
        out.append(Case(f"body-cl-{cl}", "oversized",
                        _req(target=b"/account/x/token", headers=[b"Host: a", b"Content-Length: " + str(cl).encode(),
                                                                  b"Content-Type: text/plain"])))
    # Chunked body over 1 MiB (sent in full; the server stops reading at the limit).
    big = (b"8000\r\n" + b"a" * 0x8000 + b"\r\n") * 33 + b"0\r\n\r\n"
    out.append(Case("body-chunked-over-limit", "oversized",
                    _req(target=b"/account/x/token", headers=[b"Host: a", b"Transfer-Encoding: chunked"], body=big)))
    # JSON body over the JSON limit (64 KiB) on a JSON endpoint.
    for size in (65537, 200000, 1048576):
        body = b'{"email": "' + b"a" * (size - 14) + b'"}'
        out.append(Case(f"json-over-limit-{size}", "oversized",
                        _req(target=b"/registration", headers=[b"Host: a", b"Content-Type: application/json",
                                                               b"Content-Length: " + str(len(body)).encode()],
                             body=body)))
    return out


# --- bad UTF-8 and NUL ----------------------------------------------------------------------
BAD_UTF8 = [b"\xff", b"\xfe", b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xed\xa0\x80",
            b"\xed\xbf\xbf", b"\xf0\x80\x80\xaf", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80",
            b"\xfc\x84\x80\x80\x80\x80", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xc3\x28", b"\xe2\x28\xa1"]


def json_request(target, body, content_type=b"application/json", extra=()):
    return _req(target=target, headers=[b"Host: a", b"Content-Type: " + content_type,
                                        b"Content-Length: " + str(len(body)).encode(), *extra], body=body)


def encoding_cases(account_id, code):
    out = []
    acct = account_id.encode() if account_id else b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    code_b = code.encode() if code else b"BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
    token_path = b"/account/" + acct + b"/token"
    for i, bad in enumerate(BAD_UTF8):
        out.append(Case(f"utf8-path-{i}", "bad-utf8", _req(method=b"GET", target=b"/schema/" + bad + b".json",
                                                          headers=[b"Host: a"])))
        out.append(Case(f"utf8-query-{i}", "bad-utf8", _req(method=b"GET", target=b"/healthCheck?x=" + bad,
                                                           headers=[b"Host: a"])))
        out.append(Case(f"utf8-json-string-{i}", "bad-utf8",
                        json_request(b"/registration", b'{"email": "a' + bad + b'@example.com"}')))
        out.append(Case(f"utf8-json-key-{i}", "bad-utf8",
                        json_request(b"/registration", b'{"em' + bad + b'ail": "a@example.com"}')))
        out.append(Case(f"utf8-content-type-{i}", "bad-utf8",
                        json_request(b"/registration", b'{"email": "x"}', content_type=b"application/json" + bad)))
        out.append(Case(f"utf8-cookie-{i}", "bad-utf8",
                        _req(method=b"GET", target=b"/account/" + acct, headers=[b"Host: a", b"Cookie: login=" + bad])))
        auth = (b"Authorization: OT1-HMAC-SHA256-HEX; access-code=" + code_b + bad
                + b"; signed-headers=host content-type x-opentoken-date; signature=" + b"0" * 64)
        out.append(Case(f"utf8-authorization-{i}", "bad-utf8",
                        _req(target=token_path, headers=[b"Host: a", b"Content-Type: text/plain",
                                                         b"X-OpenToken-Date: 2024-01-01T00:00:00Z", auth,
                                                         b"Content-Length: 1"], body=b"x")))
        out.append(Case(f"utf8-date-{i}", "bad-utf8",
                        _req(target=token_path, headers=[b"Host: a", b"Content-Type: text/plain",
                                                         b"X-OpenToken-Date: 2024-01-01T00:00:00Z" + bad,
                                                         b"Authorization: OT1-HMAC-SHA256-HEX; access-code=" + code_b
                                                         + b"; signed-headers=host content-type x-opentoken-date; "
                                                         b"signature=" + b"0" * 64, b"Content-Length: 1"], body=b"x")))
    # NUL and other control bytes at every place of a request.
    for c in list(range(0, 0x20)) + [0x7f]:
        if c in (0x09, 0x0a, 0x0d):
            continue
        b = bytes([c])
        out.append(Case(f"ctl-{c:02x}-method", "nul-control", _req(method=b"GE" + b + b"T", target=b"/nothing",
                                                                  headers=[b"Host: a"])))
        out.append(Case(f"ctl-{c:02x}-target", "nul-control", _req(method=b"GET", target=b"/a" + b + b"b",
                                                                  headers=[b"Host: a"])))
        out.append(Case(f"ctl-{c:02x}-header-name", "nul-control", _req(method=b"GET", target=b"/nothing",
                                                                       headers=[b"Host: a", b"X-" + b + b"A: b"])))
        out.append(Case(f"ctl-{c:02x}-header-value", "nul-control", _req(method=b"GET", target=b"/nothing",
                                                                        headers=[b"Host: a", b"X-A: b" + b + b"c"])))
        out.append(Case(f"ctl-{c:02x}-json-string", "nul-control",
                        json_request(b"/registration", b'{"email": "a' + b + b'@example.com"}')))
    nul_json = [b'{"email": "a\\u0000@example.com"}', b'\x00{"email": "a@example.com"}',
                b'{"email": "a@example.com"}\x00', b'{"em\x00ail": "a@example.com"}', b'{"email\\u0000": "x"}',
                b"\x00" * 100, b'{"email": "a@example.com"}\x00{"x": [[[[[[[[[[1]]]]]]]]]]}',
                b'{"email": "a@example.com"}\x00\xff\xfe garbage']
    for i, body in enumerate(nul_json):
        out.append(Case(f"nul-json-{i}", "nul-control", json_request(b"/registration", body)))
    return out


# --- JSON -----------------------------------------------------------------------------------
def json_bodies():
    """(name, body) pairs that no JSON endpoint may accept."""
    b = []
    for depth in (9, 10, 16, 64, 256, 1000, 5000, 30000):
        b.append((f"deep-array-{depth}", b"[" * depth + b"]" * depth))
        b.append((f"deep-object-{depth}", b'{"a":' * depth + b"1" + b"}" * depth))
        b.append((f"deep-email-{depth}", b'{"email":' + b"[" * depth + b"]" * depth + b"}"))
        b.append((f"deep-unclosed-{depth}", b"[" * depth))
    b.append(("deep-mixed", b'{"a":[{"a":[{"a":[{"a":[{"a":[{"a":1}]}]}]}]}]}'))
    b.append(("wide-array", b"[" + b"1," * 20000 + b"1]"))
    b.append(("wide-object", b"{" + b",".join(b'"k%d":1' % i for i in range(5000)) + b"}"))
    b.append(("wide-email-array", b'{"email": [' + b'"a@example.com",' * 3000 + b'"a@example.com"]}'))
    dup = [b'{"email": "a@example.com", "email": "b@example.com"}',
           b'{"email": "a@example.com", "email": "a@example.com"}',
           b'{"email": "a@example.com", "\\u0065mail": "b@example.com"}',
           b'{"email": "a@example.com", "em\\u0061il": "a@example.com"}',
           b'{"data": {"type": "access_tokens", "type": "access_tokens", '
           b'"attributes": {"email_address": "a@example.com"}}}',
           b'{"data": {"type": "access_tokens", '
           b'"attributes": {"email_address": "a@example.com", "email_address": "b@example.com"}}}',
           b'{"data": {}, "data": {}}',
           b'{"passwordHash": "x", "passwordHash": "y"}',
           b'{"challengeHash": "a", "challengeHash": "b", "mfa": {"totp": "000000"}}',
           b"{" + b'"email": "a@example.com",' * 100 + b'"x": 1}']
    b += [(f"duplicate-keys-{i}", x) for i, x in enumerate(dup)]
    numbers = [b"1e999999", b"-1e999999", b"1" + b"0" * 50000, b"0." + b"0" * 50000 + b"1", b"NaN", b"Infinity",
               b"-Infinity", b"-0", b"1e-999999", b"123456789012345678901234567890", b"0123", b"+1", b".5", b"5.",
               b"0x10", b"1_000", b"1e", b"--1", b"18446744073709551616", b"-9223372036854775809", b"1E400",
               b"4.9e-325", b"1.7976931348623157e309"]
    for i, n in enumerate(numbers):
        b.append((f"number-email-{i}", b'{"email": ' + n + b"}"))
        b.append((f"number-top-{i}", n))
        b.append((f"number-totp-{i}", b'{"challengeHash": "' + b"a" * 128 + b'", "mfa": {"totp": ' + n + b"}}"))
    strings = [b'"' + b"a" * 60000 + b'"', b'"' + b"a" * 2000 + b'"', b'"a@' + b"b" * 5000 + b'.com"',
               b'"' + b"\\u0041" * 10000 + b'"', b'"' + b"\\\\" * 20000 + b'"', b'"\\ud800"', b'"\\udc00"',
               b'"\\ud800\\u0041"', b'"\\x41"', b'"\\a"', b'"\\u12"', b'"\\u12G4"', b'"abc', b"'a@example.com'",
               b'"a@example.com\\"', b'"\t@example.com"', b'"' + bytes(range(1, 32)) + b'"', b'"a@example.com"\n"x"']
    for i, s in enumerate(strings):
        b.append((f"string-email-{i}", b'{"email": ' + s + b"}"))
    syntax = [b"", b"null", b"[]", b"{}", b'"str"', b"true", b"{", b"}", b'{"email":}', b'{"email": "a@example.com",}',
              b"{'email': 'a@example.com'}", b'{/*c*/"email": "a@example.com"}', b'{"email": "a@example.com"} //c',
              b'\xef\xbb\xbf{"email": "a@example.com"}', b'{"email": "a@example.com"}x',
              b'{"email": "a@example.com"}{"email": "a@example.com"}', b"{email: 1}", b'{"email" "a@example.com"}',
              b'{"email": "a@example.com"', b'{"email":: "a@example.com"}', b"[" + b"{}," * 1000 + b"{}]",
              b'{"email": undefined}', b'{"email": "a@example.com", "admin": true}', b'{"": ""}',
              b'{"email": 1}', b'{"email": true}', b'{"email": null}', b'{"email": {}}', b'{"email": []}',
              b'{"email": "no-at-sign"}', b'{"email": "@"}', b'{"email": "a@b"}', b"\xfe\xff\x00{", b"\xff\xfe{\x00",
              b'{"data": {"type": "other", "attributes": {"email_address": "a@example.com"}}}',
              b'{"data": {"type": "access_tokens"}}', b'{"data": []}', b'{"data": "x"}']
    b += [(f"syntax-{i}", x) for i, x in enumerate(syntax)]
    return b


JSON_ENDPOINTS = [b"/registration", b"/v1/access_tokens", b"/v1/access_tokens/delete",
                  b"/registration/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", b"/account/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/login"]


def json_cases():
    out = []
    for i, (name, body) in enumerate(json_bodies()):
        # Each body to two endpoints (rotating), one of them chunked for a third of them.
        for j in range(2):
            target = JSON_ENDPOINTS[(i + j * 2) % len(JSON_ENDPOINTS)]
            if (i + j) % 3 == 0 and len(body) < 60000:
                chunks = b"".join(b"%x\r\n" % len(body[k:k + 4096]) + body[k:k + 4096] + b"\r\n"
                                  for k in range(0, len(body), 4096)) + b"0\r\n\r\n"
                raw = _req(target=target, headers=[b"Host: a", b"Content-Type: application/json",
                                                   b"Transfer-Encoding: chunked"], body=chunks)
            else:
                raw = json_request(target, body)
            out.append(Case(f"json-{name}-{target.decode().split('/')[1]}-{j}", "json", raw))
    # Content types that are not JSON, with a valid-looking body.
    for i, ct in enumerate([b"text/plain", b"application/jsonx", b"application/x-www-form-urlencoded",
                            b"application/json; charset=utf-16", b"multipart/form-data; boundary=x", b"*/*",
                            b"application", b"json", b"application/json, text/plain"]):
        out.append(Case(f"json-content-type-{i}", "json", json_request(b"/registration", b'{"email": "x"}', ct)))
    out.append(Case("json-no-content-type", "json",
                    _req(target=b"/registration", headers=[b"Host: a", b"Content-Length: 2"], body=b"{}")))
    return out


# --- OT1 Authorization header ---------------------------------------------------------------
def auth_cases(account_id, code):
    acct = account_id.encode() if account_id else b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    code_b = code.encode() if code else b"BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
    sig = b"0123456789abcdef" * 4
    good_sh = b"signed-headers=host content-type x-opentoken-date"
    variants = [
        b"", b"OT1-HMAC-SHA256-HEX", b"ot1-hmac-sha256-hex; access-code=" + code_b + b"; " + good_sh + b"; signature=" + sig,
        b"OT1-HMAC-SHA256-HEX access-code=" + code_b + b" " + good_sh + b" signature=" + sig,
        b"OT1-HMAC-SHA256-HEX; access-code=" + code_b + b"; " + good_sh,
        b"OT1-HMAC-SHA256-HEX; access-code=" + code_b + b"; signature=" + sig,
        b"OT1-HMAC-SHA256-HEX; " + good_sh + b"; signature=" + sig,
        b"OT1-HMAC-SHA256-HEX; access-code=" + code_b + b"; access-code=" + code_b + b"; " + good_sh + b"; signature=" + sig,
        b"OT1-HMAC-SHA256-HEX; access-code=" + code_b + b"; " + good_sh + b"; signature=" + sig.upper(),
        b"OT1-HMAC-SHA256-HEX; access-code=" + code_b + b"; " + good_sh + b"; signature=" + sig[:63],
        b"OT1-HMAC-SHA256-HEX; access-code=" + code_b + b"; " + good_sh + b"; signature=" + sig + b"0",
        b"OT1-HMAC-SHA256-HEX; access-code=" + code_b + b"; " + good_sh + b"; signature=" + b"g" * 64,
        b"OT1-HMAC-SHA256-HEX; access-code=" + code_b + b"; signed-headers=host; signature=" + sig,
        b"OT1-HMAC-SHA256-HEX; access-code=" + code_b + b"; signed-headers=; signature=" + sig,
        b"OT1-HMAC-SHA256-HEX; access-code=" + code_b + b"; signed-headers=host host content-type x-opentoken-date; signature=" + sig,
        b"OT1-HMAC-SHA256-HEX; access-code=" + code_b + b"; " + good_sh + b" x-missing; signature=" + sig,
        b"OT1-HMAC-SHA256-HEX; access-code=\"" + code_b + b"\"; " + good_sh + b"; signature=" + sig,
        b"OT1-HMAC-SHA256-HEX; access-code=; " + good_sh + b"; signature=" + sig,
        b"OT1-HMAC-SHA256-HEX; access-code=" + b"c" * 4000 + b"; " + good_sh + b"; signature=" + sig,
        b"OT1-HMAC-SHA256-HEX;;;;; access-code=" + code_b + b"; " + good_sh + b"; signature=" + sig,
        b"OT1-HMAC-SHA256-HEX; ACCESS-CODE=" + code_b + b"; " + good_sh + b"; signature=" + sig,
        b"OT1-HMAC-SHA256-HEX; access-code=" + code_b + b"; " + good_sh + b"; signature=" + sig + b"; extra=1",
        b"Bearer " + code_b, b"Bearer otk_" + b"A" * 43, b"Basic YTpi", b"Bearer", b"OT1-HMAC-SHA1-HEX; x=y",
        b"OT1-HMAC-SHA256-HEX; access-code=../../" + code_b + b"; " + good_sh + b"; signature=" + sig,
    ]
    dates = [b"2024-01-01T00:00:00Z", b"", b"now", b"2024-01-01T00:00:00.000Z", b"2024-13-01T00:00:00Z",
             b"9999-12-31T23:59:59Z", b"0000-00-00T00:00:00Z", b"2024-01-01 00:00:00Z", b"1970-01-01T00:00:00Z",
             b"2024-02-30T00:00:00Z"]
    out = []
    for i, a in enumerate(variants):
        for method, target in ((b"POST", b"/account/" + acct + b"/token"),
                               (b"GET", b"/account/" + acct + b"/token/CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"),
                               (b"DELETE", b"/account/" + acct + b"/token/CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC")):
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()).encode()
            hs = [b"Host: a", b"Content-Type: text/plain", b"X-OpenToken-Date: " + now, b"Authorization: " + a,
                  b"Content-Length: 1"]
            out.append(Case(f"auth-{i}-{method.decode()}", "ot1",
                            _req(method=method, target=target, headers=hs, body=b"x")))
    for i, d in enumerate(dates):
        hs = [b"Host: a", b"Content-Type: text/plain", b"X-OpenToken-Date: " + d,
              b"Authorization: OT1-HMAC-SHA256-HEX; access-code=" + code_b + b"; " + good_sh + b"; signature=" + sig,
              b"Content-Length: 1"]
        out.append(Case(f"auth-date-{i}", "ot1", _req(target=b"/account/" + acct + b"/token", headers=hs, body=b"x")))
    # Token creation options that are invalid (signature is wrong too; either refusal is a 4xx).
    for i, q in enumerate([b"?public=yes", b"?public=true&public=false", b"?expires=tomorrow", b"?x=1", b"?public",
                           b"?expires=2024-01-01T00:00:00%2B01:00"]):
        hs = [b"Host: a", b"Content-Type: text/plain", b"Content-Length: 1"]
        out.append(Case(f"token-query-{i}", "ot1", _req(target=b"/account/" + acct + b"/token" + q, headers=hs, body=b"x")))
    return out


def catalogue(account_id=None, code=None):
    cases = (framing_cases() + request_line_cases() + oversized_cases() + encoding_cases(account_id, code)
             + json_cases() + auth_cases(account_id, code))
    names = [c.name for c in cases]
    dups = {n for n in names if names.count(n) > 1}
    assert not dups, f"duplicate case names: {sorted(dups)[:10]}"
    return cases


def mutations(cases, rnd, n):
    """`n` random mutations of catalogue entries (bytes flipped, inserted, deleted, duplicated, cut).
    A mutation may turn into a valid request, so for these only "no 5xx, no hang" is required."""
    out = []
    for i in range(n):
        raw = bytearray(rnd.choice(cases).raw)
        for _ in range(rnd.randint(1, 4)):
            op = rnd.randrange(5)
            pos = rnd.randrange(len(raw) + 1)
            if op == 0 and raw:
                raw[min(pos, len(raw) - 1)] = rnd.randrange(256)
            elif op == 1:
                raw[pos:pos] = bytes([rnd.choice(b"\r\n\x00 :;,\t\"{}[]%\xff0123456789")])
            elif op == 2 and raw:
                del raw[pos:pos + rnd.randint(1, 8)]
            elif op == 3:
                raw[pos:pos] = raw[pos:pos + rnd.randint(1, 64)] * rnd.randint(1, 50)
            else:
                raw = raw[:max(pos, 16)]
        # Complete the request so that the server has nothing to wait for (except when the
        # mutation changed the framing: then the server's deadline closes it, also acceptable).
        if b"\r\n\r\n" not in raw:
            raw += b"\r\n\r\n"
        out.append(Case(f"mutation-{i}", "mutation", bytes(raw)))
    return out


def allowed_status(case, status):
    if case.category == "mutation":
        return status < 500 or status == 501
    if 400 <= status <= 499:
        return True
    # 501 is the RFC 9110 answer to a method the server does not recognise or implement.
    return status == 501 and case.category == "bad-method"


# --- connections ----------------------------------------------------------------------------
class Target:
    """Where the daemon listens; picklable, so attacker processes can connect on their own."""

    def __init__(self, sock, port, cafile):
        self.sock, self.port, self.cafile = sock, port, cafile

    def connect(self, transport="unix", timeout=10.0, rcvbuf=None):
        """A connected socket; `rcvbuf` shrinks the receive buffer (set before connecting, so
        that TCP's window stays small and a client that does not read makes the server block)."""
        if transport == "unix":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            try:
                s.connect(self.sock)
            except OSError:
                s.close()
                raise
            return s
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.settimeout(timeout)
        try:
            if rcvbuf:
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            raw.connect(("127.0.0.1", self.port))
        except OSError:
            raw.close()
            raise
        try:
            return ssl.create_default_context(cafile=self.cafile).wrap_socket(raw, server_hostname="127.0.0.1")
        except (OSError, ssl.SSLError):
            raw.close()
            raise


def read_until_close(s, timeout):
    """(data, closed, seconds): everything the server sent until it closed, or until `timeout`."""
    chunks = []
    t0 = time.monotonic()
    deadline = t0 + timeout
    closed = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
            closed = True
            break
        if not b:
            closed = True
            break
        chunks.append(b)
    return b"".join(chunks), closed, time.monotonic() - t0


def status_of(data):
    if data[:9] in (b"HTTP/1.1 ", b"HTTP/1.0 ") and data[9:12].isdigit():
        return int(data[9:12])
    return None


def parse_responses(data):
    """Statuses of the complete HTTP/1.1 responses at the start of `data`, in order (bodies are
    skipped by Content-Length; a trailing partial response is ignored)."""
    statuses = []
    pos = 0
    while True:
        end = data.find(b"\r\n\r\n", pos)
        if end < 0 or data[pos:pos + 9] != b"HTTP/1.1 ":
            return statuses
        head = data[pos:end].decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if end + 4 + length > len(data):
            return statuses
        statuses.append(int(head[9:12]))
        pos = end + 4 + length


def _response_length(data):
    """Bytes of the first response (head + Content-Length body)."""
    end = data.find(b"\r\n\r\n")
    length = 0
    for line in data[:end].decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return end + 4 + length


def count_responses(data):
    return len(parse_responses(data))


def send_case(target, case, transport, hang_timeout):
    """Sends one catalogue entry; returns a dict describing what happened."""
    t0 = time.monotonic()
    try:
        s = target.connect(transport, timeout=hang_timeout)
    except (OSError, ssl.SSLError) as e:
        return {"outcome": "connect-failed", "error": repr(e), "seconds": time.monotonic() - t0}
    try:
        try:
            s.sendall(case.raw)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass  # the server may answer and close before a large bad request is fully sent
        data, closed, _ = read_until_close(s, hang_timeout)
    finally:
        s.close()
    seconds = time.monotonic() - t0
    status = status_of(data)
    if not closed:
        outcome = "hang"
    elif status is None:
        outcome = "closed-without-answer" if not data else "garbage-answer"
    elif not all(allowed_status(case, st) for st in [status] + parse_responses(data)):
        outcome = "bad-status"
    elif case.category == "mutation":
        outcome = "ok"  # may have become valid (even several requests); no 5xx, no hang is what counts
    elif count_responses(data) != 1 or len(data) != _response_length(data):
        outcome = "several-responses"
    else:
        outcome = "ok"
    return {"outcome": outcome, "status": status, "seconds": seconds, "head": data[:120]}


# --- attacker roles (each runs in its own process) -----------------------------------------------
def _now():
    return time.monotonic()


def role_catalogue(target, cases, workers, tls_every, hang_timeout, stop, out):
    """Sends every case (each on a fresh connection) from `workers` threads; every `tls_every`-th
    case also over TLS."""
    import threading
    jobs = [(c, "unix") for c in cases] + [(c, "tls") for i, c in enumerate(cases) if tls_every and i % tls_every == 0]
    random.Random(7).shuffle(jobs)
    lock = threading.Lock()
    results = []

    def worker():
        while not stop.is_set():
            with lock:
                if not jobs:
                    return
                case, transport = jobs.pop()
            r = send_case(target, case, transport, hang_timeout)
            with lock:
                results.append((case, transport, r))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    t0 = _now()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = collections.Counter()
    outcomes = collections.Counter()
    per_category = collections.Counter()
    violations = []
    slowest = 0.0
    for case, transport, r in results:
        outcomes[r["outcome"]] += 1
        per_category[case.category] += 1
        statuses[r.get("status")] += 1
        slowest = max(slowest, r["seconds"])
        ok = r["outcome"] == "ok"
        if case.category == "mutation" and r["outcome"] == "closed-without-answer":
            ok = True  # a mutation that left the request incomplete: cut by the request deadline
        if transport == "tls" and r["outcome"] in ("closed-without-answer", "connect-failed"):
            ok = True  # TLS: a reset may discard the answer of a large refused request
        if not ok:
            shown = {k: (v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in r.items()}
            violations.append({"case": case.name, "transport": transport, **shown})
    out.put(("catalogue", {
        "sent": len(results), "unix": sum(1 for _, t, _ in results if t == "unix"),
        "tls": sum(1 for _, t, _ in results if t == "tls"), "outcomes": dict(outcomes),
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))},
        "categories": dict(per_category), "violations": violations[:50], "violation_count": len(violations),
        "slowest_s": round(slowest, 3), "seconds": round(_now() - t0, 1), "unfinished": len(jobs)}))


def _slow_holder(name, target, stop, out, n, transports, opener, step, interval, refuse_window=0.3):
    """Keeps `n` connections that `opener(sock)` started and `step(sock, i)` feeds every
    `interval` s; records how long each was held until the server closed it."""
    conns = {}
    held, refused, opened, connect_failed, sent_bytes = [], 0, 0, 0, 0
    k = 0
    while not stop.is_set():
        while len(conns) < n and not stop.is_set():
            transport = transports[k % len(transports)]
            k += 1
            try:
                s = target.connect(transport, timeout=5)
                opener(s)
            except (OSError, ssl.SSLError):
                connect_failed += 1
                time.sleep(0.05)
                continue
            opened += 1
            s.setblocking(False)
            conns[s] = [_now(), 0]
        readable, _, _ = select.select(list(conns), [], [], interval)
        for s in readable:
            try:
                b = s.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError):
                continue
            except (OSError, ssl.SSLError):
                b = b""
            if not b:
                t_open, _ = conns.pop(s)
                life = _now() - t_open
                if life < refuse_window:
                    refused += 1
                else:
                    held.append(life)
                s.close()
        for s, st in list(conns.items()):
            try:
                sent_bytes += step(s, st[1])
                st[1] += 1
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                pass
            except (OSError, ssl.SSLError):
                t_open, _ = conns.pop(s)
                held.append(_now() - t_open)
                s.close()
    for s in conns:
        s.close()
    out.put((name, {"opened": opened, "cut": len(held), "refused_at_accept": refused,
                    "connect_failed": connect_failed, "held_max_s": round(max(held), 2) if held else None,
                    "held_mean_s": round(sum(held) / len(held), 2) if held else None, "bytes_sent": sent_bytes,
                    "still_open_at_end": len(conns)}))


def role_slowloris(target, stop, out, n=12, interval=0.5, transports=("unix", "unix", "tls")):
    """Slow headers: a request header that grows by one byte every `interval` and never ends."""
    def opener(s):
        s.sendall(b"GET /healthCheck HTTP/1.1\r\nHost: a\r\nX-Slow: ")

    def step(s, i):
        return s.send(b"a")
    _slow_holder("slowloris", target, stop, out, n, transports, opener, step, interval)


def role_slow_body(target, stop, out, token_path, n=6, interval=0.5, transports=("unix", "tls")):
    """Slow body: complete headers announcing 100 kB (or chunked), then one byte per `interval`."""
    state = {"k": 0}

    def opener(s):
        state["k"] += 1
        if state["k"] % 2:
            s.sendall(b"POST " + token_path + b" HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\n"
                      b"Content-Length: 100000\r\n\r\n")
        else:
            s.sendall(b"POST " + token_path + b" HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n186a0\r\n")

    def step(s, i):
        return s.send(b"x")
    _slow_holder("slow_body", target, stop, out, n, transports, opener, step, interval)


def role_slow_read(target, stop, out, requests, expected_bytes, n=6, hold=6.0, transports=("unix", "tls")):
    """Slow reads: each connection pipelines `requests` (big detokenize answers, see the test) and
    does not read for `hold` seconds (longer than the write timeout), then drains what is left.
    A connection counts as cut when it ends (EOF) before all `expected_bytes` arrived. Half of the
    connections trickle-read 4 KiB every 0.5 s instead of not reading at all."""
    import threading
    lock = threading.Lock()
    stats = collections.Counter()
    drained = []
    detail = []

    def one(i):
        k = 0
        while not stop.is_set():
            k += 1
            transport = transports[(i + k) % len(transports)]
            try:
                s = target.connect(transport, timeout=5, rcvbuf=4096)
                reqs = requests() if callable(requests) else requests
                s.sendall(b"".join(reqs))
            except (OSError, ssl.SSLError):
                with lock:
                    stats["connect_failed"] += 1
                time.sleep(0.2)
                continue
            total = 0
            t0 = _now()
            trickle = i % 2 == 1
            closed = False
            interrupted = False
            try:
                while _now() - t0 < hold and not stop.is_set():
                    if trickle:
                        s.settimeout(0.5)
                        try:
                            b = s.recv(4096)
                            if not b:
                                closed = True
                                break
                            total += len(b)
                        except socket.timeout:
                            pass
                        time.sleep(0.5)
                    else:
                        time.sleep(0.2)
                interrupted = _now() - t0 < hold and not closed
                if not closed:
                    data, closed, _ = read_until_close(s, 5.0)
                    total += len(data)
            except (OSError, ssl.SSLError):
                closed = True
            finally:
                s.close()
            with lock:
                if interrupted:
                    stats["interrupted_by_stop"] += 1  # drained early at the end: not classified
                    continue
                stats["cycles"] += 1
                stats["trickle_cycles" if trickle else "no_read_cycles"] += 1
                if total == 0 and closed and _now() - t0 < 0.5:
                    stats["refused_at_accept"] += 1
                elif closed and total < expected_bytes:
                    stats["cut"] += 1
                elif total >= expected_bytes:
                    stats["served_completely"] += 1
                else:
                    stats["not_closed"] += 1
                drained.append(total)
                if len(detail) < 40:
                    detail.append((transport, "trickle" if trickle else "no-read", total, closed,
                                   round(_now() - t0, 1)))

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(("slow_read", {**dict(stats), "expected_bytes_per_connection": expected_bytes,
                           "max_bytes_received": max(drained) if drained else 0, "detail": detail}))


def role_flood(target, stop, out, n=200, transports=("unix",)):
    """Connection flood: keeps `n` connections open (more than max_connections), sending nothing;
    reopens every one the server closes. Connections closed at once were refused at accept."""
    conns = {}
    refused = cut = opened = connect_failed = 0
    max_open = 0
    k = 0
    while not stop.is_set():
        burst = 0
        while len(conns) < n and burst < 200 and not stop.is_set():
            burst += 1
            try:
                s = target.connect(transports[k % len(transports)], timeout=5)
            except (OSError, ssl.SSLError):
                connect_failed += 1
                continue
            finally:
                k += 1
            opened += 1
            s.setblocking(False)
            conns[s] = _now()
        max_open = max(max_open, len(conns))
        if not conns:
            time.sleep(0.05)
            continue
        readable, _, _ = select.select(list(conns), [], [], 0.05)
        for s in readable:
            try:
                b = s.recv(4096)
            except (BlockingIOError, ssl.SSLWantReadError):
                continue
            except (OSError, ssl.SSLError):
                b = b""
            if not b:
                life = _now() - conns.pop(s)
                if life < 0.3:
                    refused += 1
                else:
                    cut += 1
                s.close()
    for s in conns:
        s.close()
    out.put(("flood", {"opened": opened, "refused_at_accept": refused, "cut_by_timeout": cut,
                       "connect_failed": connect_failed, "max_open_client_side": max_open}))


def role_pipeline(target, stop, out, depth=32):
    """Pipelining: `depth` requests in one write, answered in order; and a batch with a smuggling
    shape in the middle, after which nothing more may be answered."""
    stats = collections.Counter()
    problems = []
    good = b"GET /healthCheck HTTP/1.1\r\nHost: a\r\n\r\n"
    smuggle = (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    k = 0
    while not stop.is_set():
        k += 1
        transport = "tls" if k % 4 == 0 else "unix"
        if k % 2:
            raw = good * (depth - 1) + b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            expect = [200] * (depth - 1) + [204]
        else:
            raw = good + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" + smuggle + good + good
            expect = [200, 204, 400]
        try:
            s = target.connect(transport, timeout=10)
        except (OSError, ssl.SSLError):
            stats["connect_failed"] += 1
            time.sleep(0.05)
            continue
        try:
            try:
                s.sendall(raw)
            except (OSError, ssl.SSLError):
                pass
            data, closed, seconds = read_until_close(s, 15.0)
        finally:
            s.close()
        got = parse_responses(data)
        if not got and closed and seconds < 0.5:
            stats["refused_at_accept"] += 1
            continue
        stats["batches"] += 1
        stats["responses"] += len(got)
        if got != expect or not closed:
            stats["mismatches"] += 1
            if len(problems) < 10:
                problems.append({"transport": transport, "expected": expect[:5], "got": got[:40], "closed": closed})
    out.put(("pipeline", {**dict(stats), "problems": problems}))


class BigReads:
    """Requests of a slow reader: unsigned GETs of a big public token and an OT1-signed GET of a
    big private token (signed afresh for each connection). Picklable for spawned processes."""

    def __init__(self, public_path, private_path, code, secret, public_count=2):
        self.public_path, self.private_path = public_path, private_path
        self.code, self.secret, self.public_count = code, secret, public_count

    def __call__(self):
        from opentoken_client import ot1_date, ot1_sign
        reqs = [b"GET " + self.public_path.encode() + b" HTTP/1.1\r\nHost: a\r\n\r\n"] * self.public_count
        headers = {"Host": "a", "Content-Type": "application/octet-stream", "X-OpenToken-Date": ot1_date()}
        h = ot1_sign("GET", self.private_path, headers, b"", self.code, self.secret)
        reqs.append(("GET " + self.private_path + " HTTP/1.1\r\n"
                     + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n").encode())
        return reqs
