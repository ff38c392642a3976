"""Issue 17 part 4: the OpenAPI 3.1 description (schema/openapi.json, served at /openapi.json).

* It is the committed file, linked from GET / with rel="service-desc", and valid against the
  official OpenAPI 3.1 meta-schema (schemas/v3.1/schema.json, $id .../3.1/schema/2022-10-07, as
  shipped by the openapi-spec-validator Python package of the machine image), checked with
  jsonschema's Draft 2020-12 validator; every $ref resolves from /openapi.json (the request
  schemas are the files the daemon serves under /schema/).
* Contract: every example of the description is replayed against the real daemon, in an order
  that sets up what it needs (an account, a session, an access code pair, a token, an access
  token, a mailed code), and each answer must have the example's status (the operation's success
  status, or `x-expected-status` on an error example) and a body valid against the response
  schema the description gives for that status. The route table itself is compared with the
  description by api/routes_test.cc.

Needs python3-jsonschema (>= 4.18, with `referencing`) and openapi-spec-validator's copy of the
meta-schema: both fail the test loudly when missing (a skipped contract test would prove nothing).
"""

import json
import os
import re
import time
import unittest
from urllib.parse import quote

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

import harness
import opentoken_client as oc

BASE = "https://opentokend.invalid/"
DOC_URI = BASE + "openapi.json"
CODE_RE = r"\n([A-Za-z0-9_-]{32})\r?\n"


def meta_schema():
    import openapi_spec_validator  # the packaged copy of the official meta-schema
    path = os.path.join(os.path.dirname(openapi_spec_validator.__file__),
                        "resources", "schemas", "v3.1", "schema.json")
    with open(path) as f:
        meta = json.load(f)
    assert meta["$id"] == "https://spec.openapis.org/oas/3.1/schema/2022-10-07", meta["$id"]
    return meta


def pointer(*parts):
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class OpenApiContractTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon()
        cls.d.start()
        cls.spool = os.path.join(cls.d.dir, "mail")
        r = cls.d.request("GET", "/openapi.json")
        assert r.status == 200, r.body
        cls.served = r
        cls.doc = json.loads(r.body)
        cls.fetched = {}

        def retrieve(uri):
            # Relative $refs of the description resolve against /openapi.json: fetch them from the
            # daemon, as any client would.
            assert uri.startswith(BASE), uri
            if uri not in cls.fetched:
                got = cls.d.request("GET", "/" + uri[len(BASE):])
                assert got.status == 200, (uri, got.status)
                cls.fetched[uri] = json.loads(got.body)
            return Resource.from_contents(cls.fetched[uri], default_specification=DRAFT202012)

        cls.registry = Registry(retrieve=retrieve).with_resource(
            DOC_URI, Resource.from_contents(cls.doc, default_specification=DRAFT202012))

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.d.cleanup()

    # --- helpers ---------------------------------------------------------------------------------
    def deref(self, obj):
        """Follows an OpenAPI (not schema) $ref inside the document."""
        while isinstance(obj, dict) and "$ref" in obj:
            target = self.doc
            for part in obj["$ref"][2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            obj = target
        return obj

    def validator(self, *parts):
        """A validator for the schema at this JSON pointer of the document."""
        frag = quote(pointer(*parts), safe="/~")
        return jsonschema.Draft202012Validator({"$ref": DOC_URI + "#" + frag},
                                               registry=self.registry)

    def operations(self):
        for path, item in self.doc["paths"].items():
            for method, op in item.items():
                yield path, method, op

    def response_for(self, op, status):
        responses = op["responses"]
        for key in (str(status), f"{str(status)[0]}XX", "default"):
            if key in responses:
                return key, self.deref(responses[key])
        self.fail(f"{op['operationId']}: status {status} is not described")

    def check_reply(self, path, method, op, reply, expected):
        """The answer has the expected status and a body valid against its schema."""
        name = op["operationId"]
        self.assertEqual(reply.status, expected, (name, reply.body[:300]))
        key, response = self.response_for(op, reply.status)
        content = response.get("content")
        if not content:
            self.assertEqual(reply.body, b"", name)
            return
        ctype = (reply.header("Content-Type") or "").split(";")[0].strip()
        media = next((m for m in content if m.split(";")[0] == ctype), None)
        if media is None:
            self.assertIn("*/*", content, (name, ctype))
            return
        if "json" not in media:
            return  # bytes (PNG, a payload): the media type is the contract
        body = json.loads(reply.body)
        if "$ref" in op["responses"][key]:
            parts = op["responses"][key]["$ref"][2:].split("/") + ["content", media, "schema"]
        else:
            parts = ["paths", path, method, "responses", key, "content", media, "schema"]
        errors = list(self.validator(*parts).iter_errors(body))
        self.assertEqual(errors, [], (name, reply.status, body))
        self.checked.add(name)

    def examples(self, op):
        """(name, value, expected status) of each request example; one call without a body for
        an operation that has none."""
        success = min(int(k) for k in op["responses"] if k.isdigit() and k.startswith("2"))
        body = op.get("requestBody")
        if not body:
            return [("-", None, success)]
        out = []
        for media in body["content"].values():
            for name, e in media.get("examples", {}).items():
                out.append((name, e["value"], e.get("x-expected-status", success)))
        self.assertTrue(out, op["operationId"])
        return out

    # --- the document ----------------------------------------------------------------------------
    def test_served_document_is_the_committed_file_and_linked_from_discovery(self):
        with open(os.path.join(os.environ["OTD_SOURCE_DIR"], "schema", "openapi.json"), "rb") as f:
            self.assertEqual(self.served.body, f.read())
        self.assertEqual(self.served.header("Content-Type"),
                         "application/vnd.oai.openapi+json;version=3.1")
        link = oc.find_link(self.d.request("GET", "/"), rel="service-desc")
        self.assertEqual(link["href"], "/openapi.json")

    def test_document_is_valid_openapi_3_1(self):
        meta = meta_schema()
        jsonschema.Draft202012Validator.check_schema(meta)
        errors = sorted(jsonschema.Draft202012Validator(meta).iter_errors(self.doc),
                        key=lambda e: list(e.path))
        self.assertEqual([f"{list(e.path)}: {e.message}" for e in errors], [])
        # openapi-spec-validator's own checks too (the suggestion), resolving the relative
        # $refs to the schema files of the source tree.
        from openapi_spec_validator import validate
        validate(self.doc, base_uri="file://" + os.path.join(os.environ["OTD_SOURCE_DIR"],
                                                             "openapi.json"))
        # The validator is not vacuous: a broken document fails.
        broken = json.loads(json.dumps(self.doc))
        broken["paths"]["/"]["get"]["responses"]["204"] = {"content": {}}  # no description
        self.assertFalse(jsonschema.Draft202012Validator(meta).is_valid(broken))

    def test_every_schema_and_example_is_consistent(self):
        # Every schema compiles and every $ref in it resolves (relative ones via /schema/).
        for path, method, op in self.operations():
            for code, response in op["responses"].items():
                response = self.deref(response)
                for media, content in response.get("content", {}).items():
                    if "$ref" in op["responses"][code]:
                        parts = op["responses"][code]["$ref"][2:].split("/")
                    else:
                        parts = ["paths", path, method, "responses", code]
                    v = self.validator(*parts, "content", media, "schema")
                    examples = ([content["example"]] if "example" in content else []) + \
                        [e["value"] for e in content.get("examples", {}).values()]
                    for value in examples:
                        with self.subTest(op=op["operationId"], status=code, media=media):
                            if "json" in media:
                                self.assertEqual(list(v.iter_errors(value)), [])
            body = op.get("requestBody")
            for media, content in (body or {}).get("content", {}).items():
                v = self.validator("paths", path, method, "requestBody", "content", media,
                                   "schema")
                for name, e in content.get("examples", {}).items():
                    if "json" in media and "x-expected-status" not in e:
                        with self.subTest(op=op["operationId"], example=name):
                            self.assertEqual(list(v.iter_errors(e["value"])), [])
        self.assertTrue(self.fetched)  # the request schemas came from /schema/

    # --- the contract ----------------------------------------------------------------------------
    def test_every_example_replays_against_the_daemon(self):
        self.checked = set()
        ops = {op["operationId"]: (path, method, op) for path, method, op in self.operations()}
        ctx = {}
        order = [n for n, _ in self.steps()]
        self.assertEqual(sorted(order), sorted(ops), "a step per operation, no more")
        steps = dict(self.steps())
        start = time.monotonic()
        for name in order:
            path, method, op = ops[name]
            for example, value, expected in self.examples(op):
                with self.subTest(op=name, example=example):
                    reply = steps[name](ctx, value, expected)
                    self.check_reply(path, method, op, reply, expected)
        self.assertEqual(self.checked, {n for n in ops if self.has_json_answer(ops[n][2])})
        self.assertLess(time.monotonic() - start, 90)

    def has_json_answer(self, op):
        statuses = {s for _, _, s in self.examples(op)}
        for s in statuses:
            _, response = self.response_for(op, s)
            if any("json" in m for m in response.get("content", {})):
                return True
        return False

    def steps(self):
        """(operationId, replay(ctx, example value, expected status) -> Reply), in order."""
        d = self.d

        def user():
            c = oc.Client(d, address=ctx_email)
            return c

        ctx_email = "contract-user@example.com"

        def get(path):
            return lambda ctx, value, expected: d.request("GET", path)

        def with_session(method, path_fn):
            return lambda ctx, value, expected: ctx["client"].req(method, path_fn(ctx), value)

        def register(ctx, value, expected):
            if expected != 200:
                return d.request("POST", "/registration", json.dumps(value),
                                 {"Content-Type": "application/json"})
            c = user()
            value = dict(value, email=ctx_email)
            r = c.req("POST", "/registration", value)
            if r.status == 200:
                c.registration, c.reg_body = r, r.json()
                c.seed = bytes.fromhex(c.reg_body["mfa"]["totp"]["keyHex"])
                c.pw_hash = oc.password_hash(c.reg_body["passwordHashConfig"])
                ctx["client"] = c
                ctx["reg"] = oc.find_link(r, rel="self")["href"]
            return r

        def secure(ctx, value, expected):
            c = ctx["client"]
            now = time.time()
            value = json.loads(json.dumps(value))
            value["mfa"]["totp"] = {"current": oc.totp(c.seed, now),
                                    "previous": oc.totp(c.seed, now, -1)}
            value["passwordHash"] = c.pw_hash
            return c.req("POST", ctx["reg"], value)

        def confirm(ctx, value, expected):
            path = oc.confirm_path(oc.wait_for_mail(self.spool)[-1][2])
            r = d.request("GET", path)
            if r.status == 201:
                ctx["account"] = r.json()["accountId"]
                ctx["client"].account_id = ctx["account"]
            return r

        def login(ctx, value, expected):
            c = ctx["client"]
            cfg = c.req("GET", f"/account/{ctx['account']}/login").json()
            value = dict(value, challengeHash=oc.challenge_hash(c.pw_hash,
                                                                 cfg["challengeHashConfig"]),
                         mfa={"totp": oc.totp(c.seed, time.time())})
            r = c.req("POST", f"/account/{ctx['account']}/login", value)
            if r.status == 200:
                c.cookie = re.match(r"login=([^;]*)", r.header("Set-Cookie")).group(1)
            return r

        def create_code(ctx, value, expected):
            r = ctx["client"].req("POST", f"/account/{ctx['account']}/accessCode", value)
            if r.status == 201:
                ctx["signer"] = oc.Signer(d, r.json()["code"], r.json()["secret"])
                ctx["code"] = r.json()["code"]
            return r

        def tokenize(ctx, value, expected):
            if expected == 401:  # the error example: not signed
                return d.request("POST", f"/account/{ctx['account']}/token", value.encode(),
                                 {"Content-Type": "text/plain"})
            r = ctx["signer"].request("POST", f"/account/{ctx['account']}/token",
                                      body=value.encode(), content_type="text/plain")
            ctx["token"] = r.header("Location")
            return r

        def create_access_token(ctx, value, expected):
            r = ctx["client"].req("POST", "/access-tokens", value)
            if r.status == 201:
                ctx["at"] = "/access-tokens/" + r.json()["id"]
            return r

        def email(method, path, address=True, code=False):
            def call(ctx, value, expected):
                value = json.loads(json.dumps(value))
                if address and "data" in value:
                    value["data"]["attributes"]["email_address"] = ctx_email
                if code and expected == 204:
                    value["data"]["attributes"]["code"] = ctx["mailed_code"]
                r = d.request(method, path, json.dumps(value),
                              {"Content-Type": "application/json"})
                if path.endswith("/delete") and r.status == 201:
                    ctx["mailed_code"] = self.wait_code(ctx_email)
                return r
            return call

        acct = lambda suffix: (lambda ctx: f"/account/{ctx['account']}{suffix}")  # noqa: E731
        return [
            ("getDiscovery", get("/")),
            ("getHealthCheck", get("/healthCheck")),
            ("getSchema", get("/schema/account/login-request.json")),
            ("getSignatureInformation", get("/signature-information")),
            ("getOpenApi", get("/openapi.json")),
            ("register", register),
            ("getRegistration", lambda ctx, v, e: d.request("GET", ctx["reg"])),
            ("getRegistrationQr", lambda ctx, v, e: d.request("GET", ctx["reg"] + "/qr")),
            ("secureRegistration", secure),
            ("confirmRegistration", confirm),
            ("getLoginChallenge", lambda ctx, v, e: d.request("GET", acct("/login")(ctx))),
            ("login", login),
            ("getAccount", with_session("GET", acct(""))),
            ("createAccessCode", create_code),
            ("listAccessCodes", with_session("GET", acct("/accessCode"))),
            ("getAccessCode", lambda ctx, v, e: ctx["client"].req(
                "GET", acct("/accessCode/")(ctx) + ctx["code"])),
            ("tokenize", tokenize),
            ("detokenize", lambda ctx, v, e: ctx["signer"].request("GET", ctx["token"])),
            ("deleteToken", lambda ctx, v, e: ctx["signer"].request("DELETE", ctx["token"])),
            ("createAccessToken", create_access_token),
            ("listAccessTokens", lambda ctx, v, e: ctx["client"].req("GET", "/access-tokens")),
            ("getAccessToken", lambda ctx, v, e: ctx["client"].req("GET", ctx["at"])),
            ("updateAccessToken", lambda ctx, v, e: ctx["client"].req("PATCH", ctx["at"], v)),
            ("deleteAccessToken", lambda ctx, v, e: ctx["client"].req("DELETE", ctx["at"])),
            ("revokeAccessCode", lambda ctx, v, e: ctx["client"].req(
                "DELETE", acct("/accessCode/")(ctx) + ctx["code"])),
            ("mailAccessToken", email("POST", "/v1/access_tokens")),
            ("mailAccessTokenDeletionCode", email("POST", "/v1/access_tokens/delete")),
            ("revokeMailedAccessTokens", email("DELETE", "/v1/access_tokens", code=True)),
            ("logoutGet", with_session("GET", acct("/logout"))),
            ("logoutPost", with_session("POST", acct("/logout"))),
        ]

    def wait_code(self, address, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for _, headers, text in oc.read_mails(self.spool):
                if headers["To"] == address and "Revoke" in headers["Subject"]:
                    return re.search(CODE_RE, text).group(1)
            time.sleep(0.05)
        self.fail("no deletion code mailed")


if __name__ == "__main__":
    unittest.main()
