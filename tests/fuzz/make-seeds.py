#!/usr/bin/env python3
"""Regenerates the committed seed corpora in tests/fuzz/corpus/<target>/ (small, hand-written).

Run from anywhere: python3 tests/fuzz/make-seeds.py. Existing seed-* files are overwritten; other
files (e.g. minimised crash reproducers, named crash-*) are left alone.
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# --- fuzz_http_request: first byte 0x00 = Unix socket, 0x01 = TCP/TLS ------------------------
H = "Host: vault.example\r\n"
http = {
    "get": "GET /health HTTP/1.1\r\n" + H + "\r\n",
    "post-cl": "POST /account/abc/token HTTP/1.1\r\n" + H +
               "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    "post-chunked": "POST /t HTTP/1.1\r\n" + H +
                    "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "pipelined": ("GET /a HTTP/1.1\r\n" + H + "\r\n") * 2 +
                 "PUT /b HTTP/1.1\r\n" + H + "Content-Length: 2\r\n\r\nok",
    "expect": "POST /x HTTP/1.1\r\n" + H + "Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    "signed": "POST /account/W2l6H0vEhdurrhSDN4VjV2BlgSICpvEH/token HTTP/1.1\r\nHost: api.opentoken.io\r\n"
              "Content-Type: text/plain\r\nX-OpenToken-Date: 2016-11-17T20:01:00Z\r\n"
              "Authorization: OT1-HMAC-SHA256-HEX; access-code=LTyPtAMrYarpdgPxHnIB-aXb5BXIxnf8; "
              "signed-headers=host content-type x-opentoken-date; "
              "signature=fc16d5946385ba3f3e65d944f8d519008421681d9f6029698666abc90e52af5e\r\n"
              "Content-Length: 16\r\n\r\nThis is a test.\n",
    "cl-te": "POST / HTTP/1.1\r\n" + H + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-gzip-smuggle": "POST / HTTP/1.1\r\n" + H + "Transfer-Encoding: gzip\r\n\r\nGET /admin HTTP/1.1\r\n" + H + "\r\n",
    "http10-chunked": "POST / HTTP/1.0\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "dup-cl": "POST / HTTP/1.1\r\n" + H + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "cl-list": "POST / HTTP/1.1\r\n" + H + "Content-Length: 5, 5\r\n\r\nhello",
    "cl-space-colon": "POST / HTTP/1.1\r\n" + H + "Content-Length : 5\r\n\r\nhello",
    "obs-fold": "GET / HTTP/1.1\r\n" + H + "X-A: 1\r\n b\r\n\r\n",
    "bare-lf": "GET / HTTP/1.1\n" + "Host: x\n\n",
    "dup-host": "GET / HTTP/1.1\r\n" + H + H + "\r\n",
    "no-host": "GET / HTTP/1.1\r\n\r\n",
    "chunk-ext": "POST / HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\n\r\n",
    "chunk-hex": "POST / HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
    "trailer-cl": "POST / HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nContent-Length: 9\r\n\r\n",
    "nul-target": "GET /a%00b HTTP/1.1\r\n" + H + "\r\n",
    "dotdot": "GET /a/../b HTTP/1.1\r\n" + H + "\r\n",
    "absolute-form": "GET http://x/ HTTP/1.1\r\n" + H + "\r\n",
    "bad-method": "TRACE / HTTP/1.1\r\n" + H + "\r\n",
    "huge-cl": "POST / HTTP/1.1\r\n" + H + "Content-Length: 999999999\r\n\r\n",
    "cl-overflow": "POST / HTTP/1.1\r\n" + H + "Content-Length: 100000000000000000000000\r\n\r\n",
    "h2-preface": "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "expect-other": "POST / HTTP/1.1\r\n" + H + "Expect: 200-ok\r\nContent-Length: 0\r\n\r\n",
    "cl0-poison": "GET / HTTP/1.1\r\n" + H + "Content-Length: 0\r\n\r\nGET /admin HTTP/1.1\r\n" + H + "\r\n",
}
for name, text in http.items():
    write("fuzz_http_request", "tcp-" + name, b"\x01" + text.encode())
write("fuzz_http_request", "unix-get", b"\x00GET /health HTTP/1.1\r\n\r\n")
write("fuzz_http_request", "tcp-many-headers",
      b"\x01GET / HTTP/1.1\r\n" + H.encode() + b"".join(b"X-%d: v\r\n" % i for i in range(150)) + b"\r\n")
write("fuzz_http_request", "tcp-tls-hello", b"\x01\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32))

# --- fuzz_ot1: auth \0 method \0 target \0 date \0 body [\0 name:value]... --------------------
AUTH = ("OT1-HMAC-SHA256-HEX; access-code=LTyPtAMrYarpdgPxHnIB-aXb5BXIxnf8; "
        "signed-headers=host content-type x-opentoken-date; "
        "signature=fc16d5946385ba3f3e65d944f8d519008421681d9f6029698666abc90e52af5e")
DOC_HEADERS = ["Host:api.opentoken.io", "Content-Type:text/plain", "X-OpenToken-Date:2016-11-17T20:01:00Z"]


def ot1(auth, method="POST", target="/account/W2l6H0vEhdurrhSDN4VjV2BlgSICpvEH/token",
        date="2016-11-17T20:01:00Z", body="This is a test.\n", headers=DOC_HEADERS):
    return "\0".join([auth, method, target, date, body] + headers)


write("fuzz_ot1", "doc", ot1(AUTH))
write("fuzz_ot1", "reordered", ot1("OT1-HMAC-SHA256-HEX;signature=" + "ab" * 32 +
                                   " ;\tsigned-headers=x-opentoken-date\tHOST  content-type x-extra;access-code=a"))
write("fuzz_ot1", "query", ot1(AUTH, method="GET", target="/a/b?c=d&e=%20", body="",
                               headers=DOC_HEADERS + ["X-Extra:  v  "]))
write("fuzz_ot1", "dup-header", ot1(AUTH, headers=DOC_HEADERS + ["host:other"]))
write("fuzz_ot1", "upper-sig", ot1(AUTH.upper()))
write("fuzz_ot1", "trailing-semi", ot1(AUTH + ";"))
write("fuzz_ot1", "leap-date", ot1(AUTH, date="2024-02-29T23:59:59Z"))
write("fuzz_ot1", "bad-date", ot1(AUTH, date="1900-02-29T00:00:00Z"))
write("fuzz_ot1", "year0", ot1(AUTH, date="0000-01-01T00:00:00Z"))
write("fuzz_ot1", "lower-method", ot1(AUTH, method="post"))
write("fuzz_ot1", "tab-value", ot1(AUTH, headers=["Host:\tAPI.Example\t", "Content-Type:a\tb",
                                                  "X-OpenToken-Date:x"]))

# --- fuzz_json: first byte = schema index (see kSchemas in fuzz_json.cc) ----------------------
SCHEMAS = ["registration/register-request.json", "registration/secure-request.json",
           "account/login-request.json", "account/logout-request.json",
           "account/access-code-request.json", "account/token-create-request.json",
           "meta/challenge-hash.json", "meta/date-string.json", "meta/email.json",
           "meta/encoding-method.json", "meta/encryption-method.json", "meta/hash-config.json",
           "meta/hash-derivation.json", "meta/hash-method.json", "meta/mfa-totp-code.json",
           "meta/password-hash.json", "meta/secure-hash-config.json", "meta/totp-code.json"]
json_seeds = {
    0: ['{"email":"user@example.com"}', '{"email":"a@b.c","admin":true}',
        '{"email":"a@b.c","email":"d@e.f"}', '{"em\\u0061il":"x@y.z","email":"a@b.c"}',
        '\ufeff{"email":"a@b.c"}', '{"email":"a\\u0000@b.c"}', '[' * 12 + ']' * 12,
        '{"email":123456789012345678901234567890}', '{"email":1e400}', '"\\ud800"'],
    1: ['{"passwordHash":"$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",'
        '"passwordHashConfig":{"algorithm":"argon2id"},"mfa":{"totp":"123456"}}'],
    2: ['{"challengeHash":"abc","mfa":{"totp":"123456"}}'],
    3: ['{}', '{"x":null}'],
    4: ['{"description":"ci"}', '{}', '{"expires":"2030-01-01T00:00:00Z"}'],
    5: ['{"public":"true"}', '{"public":"yes"}'],
    7: ['"2024-02-29T12:00:00Z"', '"2023-12-31T23:59:60+05:30"', '"2023-02-29T12:00:00Z"', '5'],
    8: ['"user@example.com"', '"' + 'a' * 1100 + '@x.y"'],
    14: ['"123456"', '{"totp":"123456"}'],
    17: ['"12345"'],
}
for idx, docs in json_seeds.items():
    for k, doc in enumerate(docs):
        write("fuzz_json", "%s-%d" % (SCHEMAS[idx].replace("/", "_").replace(".json", ""), k),
              bytes([idx]) + doc.encode("utf-8", "surrogatepass"))

# --- fuzz_record: first byte 0 sealed, 1 wrapped key, 2 fields, 3 AAD -------------------------
def u32(n):
    return n.to_bytes(4, "big")


write("fuzz_record", "sealed", b"\x00" + b"\x01" + u32(1) + bytes(range(12)) + b"ct" + bytes(16))
write("fuzz_record", "sealed-v0", b"\x00" + b"\x01" + u32(0) + bytes(12) + bytes(16))
write("fuzz_record", "wrapped", b"\x01" + b"\x02" + u32(7) + bytes(range(40)))
write("fuzz_record", "wrapped-odd", b"\x01" + b"\x02" + u32(7) + bytes(41))
write("fuzz_record", "fields", b"\x02" + b"\x01" + u32(5) + b"hello" + b"\x02" + u32(8) + u32(0) + u32(42)
      + b"\x07" + u32(0))
write("fuzz_record", "fields-repeat", b"\x02" + b"\x01" + u32(1) + b"a" + b"\x01" + u32(1) + b"b")
write("fuzz_record", "fields-trunc", b"\x02" + b"\x01" + u32(100) + b"short")
write("fuzz_record", "aad", b"\x03" + u32(3) + b"\x05\x07" + b"tokensaccount-idrecord-id")

# --- fuzz_config ---------------------------------------------------------------------------------
base = {
    "listen": {"unix": {"path": "/run/opentokend/api.sock", "mode": "0660"},
               "tls": {"address": "127.0.0.1", "port": 8443, "certificate": "/etc/c.pem",
                       "private_key": "/etc/k.pem"}},
    "storage": {"path": "/var/lib/opentokend", "map_size_mb": 1024},
    "hsm": {"module": "/usr/lib/softhsm/libsofthsm2.so", "token_label": "otd", "max_sessions": 8},
    "mail": {"spool_dir": "/var/spool/otd"},
    "public_url": "https://vault.example",
    "workers": 2, "log_level": "info",
    "limits": {"max_header_bytes": 8192, "max_body_bytes": 1048576, "max_json_body_bytes": 65536,
               "request_timeout_ms": 10000, "idle_timeout_ms": 30000, "write_timeout_ms": 10000,
               "max_connections": 512},
    "accounts": {"registration_lifetime_seconds": 86400, "totp_issuer": "otd"},
    "signature": {"past_seconds": 300, "future_seconds": 60},
    "access_codes": {"lifetime_seconds": 86400},
    "tokens": {"max_lifetime_seconds": 0},
}
write("fuzz_config", "full", json.dumps(base, indent=1))
minimal = {"listen": {"unix": {"path": "/s"}}, "storage": {"path": "/d"},
           "hsm": {"module": "/m.so", "token_label": "t"}, "mail": {"smtp_url": "smtps://h:465",
                                                                 "require_tls": True}}
write("fuzz_config", "minimal-smtp", json.dumps(minimal))
bad = dict(base, limits={"max_body_bytes": -1})
write("fuzz_config", "negative", json.dumps(bad))
write("fuzz_config", "float-port", json.dumps(dict(base, listen={"tls": dict(base["listen"]["tls"], port=8443.0)})))
write("fuzz_config", "unknown-key", json.dumps(dict(base, extra=1)))
write("fuzz_config", "mode-world", json.dumps(dict(base, listen={"unix": {"path": "/s", "mode": "0666"}})))
