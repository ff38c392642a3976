"""Issue 5: scoped access tokens, the collection API (/access-tokens, seed 003) and the e-mail
API (/v1/access_tokens, seed 002), against the real daemon."""

import datetime
import glob
import json
import os
import re
import time
import unittest

from harness import Daemon
from opentoken_client import Client, Signer, find_link, logged_in_user, read_mails, wait_for_mail

TOKEN_RE = r"^otk_[A-Za-z0-9_-]{43}$"
SCOPES = ["account", "account.read", "accessCodes", "accessCodes.read", "accessCodes.create",
          "accessCodes.delete", "accessTokens", "accessTokens.read", "accessTokens.create",
          "accessTokens.update", "accessTokens.delete", "tokens", "tokens.create"]


def iso(delta_seconds):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=delta_seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class AccessTokenTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon()
        cls.d.start()
        cls.spool = os.path.join(cls.d.dir, "mail")
        cls.alice = cls.new_user("alice@example.com")
        cls.bob = cls.new_user("bob@example.com")
        cls.carol = cls.new_user("carol@example.com")

    @classmethod
    def new_user(cls, address):
        return logged_in_user(cls.d, cls.spool, address)

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        cls.d.cleanup()
        assert code == 0

    # --- helpers -----------------------------------------------------------------------------
    def create(self, user=None, expect=201, **fields):
        body = {"name": "test token"}
        body.update(fields)
        r = (user or self.alice).req("POST", "/access-tokens", body)
        self.assertEqual(r.status, expect, r.body)
        return r.json()

    def bearer(self, token, method, path, body=None, headers=None):
        h = {"Authorization": "Bearer " + token}
        h.update(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        return self.d.request(method, path, body=body, headers=h)

    def email(self, path, attributes, method="POST", headers=None):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        body = json.dumps({"data": {"type": "access_tokens", "attributes": attributes}})
        return self.d.request(method, path, body=body, headers=h)

    def mails_to(self, address, subject_word):
        return [m for m in read_mails(self.spool)
                if m[1]["To"] == address and subject_word in m[1]["Subject"]]

    def wait_mails_to(self, address, subject_word, count):
        deadline = time.time() + 10
        while time.time() < deadline:
            mails = self.mails_to(address, subject_word)
            if len(mails) >= count:
                return mails
            time.sleep(0.05)
        self.fail(f"expected {count} '{subject_word}' mails to {address}")

    def assertLosantError(self, r, status, type_):
        self.assertEqual(r.status, status, r.body)
        self.assertEqual(r.header("Content-Type"), "application/json")
        body = r.json()
        self.assertEqual(set(body), {"type", "message"})
        self.assertEqual(body["type"], type_)

    def assertPkmnError(self, r, status, id_):
        self.assertEqual(r.status, status, r.body)
        body = r.json()
        self.assertEqual(set(body), {"data"})
        self.assertEqual(body["data"]["id"], id_)
        self.assertEqual(body["data"]["type"], "errors")
        self.assertIsInstance(body["data"]["attributes"]["message"], str)

    # --- collection API ----------------------------------------------------------------------
    def test_create_list_get_patch_delete(self):
        t = self.create(name="My New Access Token", expirationDate=iso(86400),
                        scope=["account.read", "accessTokens.read"], status="active")
        self.assertRegex(t["token"], TOKEN_RE)
        self.assertRegex(t["id"], r"^[0-9a-f]{24}$")
        self.assertEqual(t["accessTokenId"], t["id"])
        self.assertEqual(t["accountId"], self.alice.account_id)
        self.assertEqual(t["scope"], ["account.read", "accessTokens.read"])
        self.assertEqual(t["status"], "active")
        self.assertRegex(t["expirationDate"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$")
        listing = self.alice.req("GET", "/access-tokens")
        self.assertEqual(listing.status, 200)
        self.assertEqual(listing.json()["count"], len(listing.json()["items"]))
        self.assertIn(t["id"], [i["id"] for i in listing.json()["items"]])
        self.assertNotIn(t["token"].encode(), listing.body)
        self.assertNotIn(b"otk_", listing.body)
        one = self.alice.req("GET", "/access-tokens/" + t["id"])
        self.assertEqual(one.status, 200)
        self.assertNotIn("token", one.json())
        self.assertEqual(one.json()["name"], "My New Access Token")
        patched = self.alice.req("PATCH", "/access-tokens/" + t["id"], {"name": "Renamed", "status": "inactive"})
        self.assertEqual(patched.status, 200, patched.body)
        self.assertEqual(patched.json()["name"], "Renamed")
        self.assertEqual(patched.json()["status"], "inactive")
        self.assertNotIn("token", patched.json())
        self.assertEqual(self.alice.req("PATCH", "/access-tokens/" + t["id"], {}).status, 200)
        deleted = self.alice.req("DELETE", "/access-tokens/" + t["id"])
        self.assertEqual(deleted.status, 200)
        self.assertEqual(deleted.json(), {"success": True})
        self.assertLosantError(self.alice.req("GET", "/access-tokens/" + t["id"]), 404, "NotFound")
        self.assertLosantError(self.alice.req("DELETE", "/access-tokens/" + t["id"]), 404, "NotFound")
        self.assertEqual(self.bearer(t["token"], "GET", "/access-tokens").status, 401)

    def test_missing_scope_means_no_rights_and_losant_query_defaults_are_accepted(self):
        t = self.create()
        self.assertEqual(t["scope"], [])
        self.assertLosantError(self.bearer(t["token"], "GET", "/access-tokens"), 403, "Forbidden")
        ok = self.alice.req("GET", "/access-tokens?_actions=false&_links=true&_embedded=true")
        self.assertEqual(ok.status, 200)
        self.assertLosantError(self.alice.req("GET", "/access-tokens?page=1"), 400, "Validation")

    def test_validation_errors(self):
        cases = [
            {"name": "x", "extra": 1},
            {"name": "x", "scope": ["devices"]},
            {"name": "x", "scope": "account.read"},
            {"name": "x", "expirationDate": iso(-60)},
            {"name": "x", "expirationDate": iso(10 * 366 * 86400)},
            {"name": "x", "expirationDate": "tomorrow"},
            {"name": "x", "status": "paused"},
            {"name": ""},
            {"name": "x" * 256},
            {},
        ]
        for body in cases:
            r = self.alice.req("POST", "/access-tokens", body)
            self.assertLosantError(r, 400, "Validation")
        bad_json = self.alice.req("POST", "/access-tokens", "{", headers={"Content-Type": "application/json"})
        self.assertLosantError(bad_json, 400, "Validation")
        wrong_type = self.alice.req("POST", "/access-tokens", "name=x", headers={"Content-Type": "text/plain"})
        self.assertEqual(wrong_type.status, 415)
        t = self.create()
        self.assertLosantError(self.alice.req("PATCH", "/access-tokens/" + t["id"], {"scope": ["account"]}),
                               400, "Validation")
        self.assertLosantError(self.alice.req("GET", "/access-tokens/not-an-id"), 400, "Validation")
        self.assertLosantError(self.alice.req("GET", "/access-tokens/" + "0" * 24), 404, "NotFound")
        # Offsets and fractions are accepted and normalised to UTC with milliseconds.
        later = (datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=2))) +
                 datetime.timedelta(days=2)).isoformat(timespec="microseconds")
        t = self.create(expirationDate=later)
        self.assertTrue(t["expirationDate"].endswith(".000Z"))

    def test_bearer_authentication_failures(self):
        t = self.create(scope=["accessTokens.read"])
        token = t["token"]
        self.assertLosantError(self.d.request("GET", "/access-tokens"), 401, "Unauthorized")
        r = self.bearer("otk_" + "A" * 43, "GET", "/access-tokens")
        self.assertLosantError(r, 401, "Unauthorized")
        self.assertIn("Bearer", r.header("WWW-Authenticate"))
        self.assertLosantError(self.bearer("garbage", "GET", "/access-tokens"), 401, "Unauthorized")
        self.assertEqual(self.d.request("GET", "/access-tokens", headers={"Authorization": "bearer " + token}).status, 200)
        both = self.d.request("GET", "/access-tokens",
                              headers={"Authorization": "Bearer " + token, "Cookie": "login=" + self.alice.cookie})
        self.assertLosantError(both, 400, "Validation")
        basic = self.d.request("GET", "/access-tokens", headers={"Authorization": "Basic eDp5"})
        self.assertLosantError(basic, 401, "Unauthorized")
        # Inactive: refused at once; active again: accepted.
        self.assertEqual(self.alice.req("PATCH", "/access-tokens/" + t["id"], {"status": "inactive"}).status, 200)
        self.assertLosantError(self.bearer(token, "GET", "/access-tokens"), 401, "Unauthorized")
        self.assertEqual(self.alice.req("PATCH", "/access-tokens/" + t["id"], {"status": "active"}).status, 200)
        r = self.bearer(token, "GET", "/access-tokens/" + t["id"])
        self.assertEqual(r.status, 200)
        self.assertIn("lastUsed", r.json())
        # Created inactive: refused.
        inactive = self.create(scope=["accessTokens.read"], status="inactive")
        self.assertEqual(self.bearer(inactive["token"], "GET", "/access-tokens").status, 401)

    def test_expired_token_is_refused_at_once(self):
        t = self.create(scope=["accessTokens.read"], expirationDate=iso(3))
        self.assertEqual(self.bearer(t["token"], "GET", "/access-tokens").status, 200)
        time.sleep(4.2)
        self.assertLosantError(self.bearer(t["token"], "GET", "/access-tokens"), 401, "Unauthorized")
        self.assertLosantError(self.alice.req("GET", "/access-tokens/" + t["id"]), 404, "NotFound")

    def test_each_scope_allows_exactly_what_it_names(self):
        a = self.alice
        acct = f"/account/{a.account_id}"
        target = self.create(scope=[])  # something to read and patch
        pair = a.req("POST", acct + "/accessCode", {})
        self.assertEqual(pair.status, 201)
        pair = pair.json()
        stored = Signer(self.d, pair["code"], pair["secret"]).request("POST", acct + "/token", b"data")
        self.assertEqual(stored.status, 201)
        # endpoint name -> (needed scope, request, statuses that mean "allowed")
        endpoints = {
            "account.get": ("account.read", lambda tok: self.bearer(tok, "GET", acct), {200}),
            "accessCode.list": ("accessCodes.read", lambda tok: self.bearer(tok, "GET", acct + "/accessCode"), {200}),
            "accessCode.create": ("accessCodes.create",
                                  lambda tok: self.bearer(tok, "POST", acct + "/accessCode", {}), {201}),
            "accessCode.delete": ("accessCodes.delete",
                                  lambda tok: self.bearer(tok, "DELETE", acct + "/accessCode/" + "A" * 32), {404}),
            "accessTokens.list": ("accessTokens.read", lambda tok: self.bearer(tok, "GET", "/access-tokens"), {200}),
            "accessTokens.get": ("accessTokens.read",
                                 lambda tok: self.bearer(tok, "GET", "/access-tokens/" + target["id"]), {200}),
            "accessTokens.create": ("accessTokens.create",
                                    lambda tok: self.bearer(tok, "POST", "/access-tokens", {"name": "child"}), {201}),
            "accessTokens.patch": ("accessTokens.update",
                                   lambda tok: self.bearer(tok, "PATCH", "/access-tokens/" + target["id"], {}), {200}),
            "accessTokens.delete": ("accessTokens.delete",
                                    lambda tok: self.bearer(tok, "DELETE", "/access-tokens/" + "0" * 24), {404}),
            "token.create": ("tokens.create",
                             lambda tok: self.bearer(tok, "POST", acct + "/token", b"payload",
                                                     {"Content-Type": "text/plain"}), {201}),
        }
        for scope in SCOPES + [None]:
            granted = [] if scope is None else [scope]
            tok = self.create(scope=granted)["token"]
            for name, (needed, call, ok_statuses) in endpoints.items():
                allowed = scope is not None and (scope == needed or scope == needed.split(".")[0])
                r = call(tok)
                if allowed:
                    self.assertIn(r.status, ok_statuses, (scope, name, r.status, r.body))
                else:
                    self.assertEqual(r.status, 403, (scope, name, r.status, r.body))
            # No scope ever detokenizes, deletes token data or logs out.
            loc = stored.header("Location")
            self.assertEqual(self.bearer(tok, "GET", loc).status, 401, scope)
            self.assertEqual(self.bearer(tok, "DELETE", loc).status, 401, scope)
        # A bearer never creates public tokens (readable by anyone).
        tok = self.create(scope=["tokens.create"])["token"]
        r = self.bearer(tok, "POST", acct + "/token?public=true", b"x", {"Content-Type": "text/plain"})
        self.assertEqual(r.status, 403)

    def test_bearer_cannot_escalate(self):
        parent = self.create(scope=["accessTokens.create", "account.read"], expirationDate=iso(3600))
        tok = parent["token"]
        for scope in (["accessCodes.create"], ["accessTokens"], ["accessTokens.read"], ["account.read", "tokens"]):
            r = self.bearer(tok, "POST", "/access-tokens", {"name": "child", "scope": scope})
            self.assertLosantError(r, 403, "Forbidden")
        r = self.bearer(tok, "POST", "/access-tokens", {"name": "c", "scope": ["account.read"],
                                                        "expirationDate": iso(7200)})
        self.assertLosantError(r, 403, "Forbidden")
        child = self.bearer(tok, "POST", "/access-tokens", {"name": "c", "scope": ["account.read", "accessTokens.create"]})
        self.assertEqual(child.status, 201, child.body)
        self.assertLessEqual(child.json()["expirationDate"], parent["expirationDate"])
        self.assertEqual(child.json()["accountId"], self.alice.account_id)
        # The family scope holder may create any verb of the family.
        fam = self.create(scope=["accessTokens"])
        r = self.bearer(fam["token"], "POST", "/access-tokens", {"name": "c", "scope": ["accessTokens.update"]})
        self.assertEqual(r.status, 201, r.body)

    def test_other_accounts_are_out_of_reach(self):
        bob_token = self.create(user=self.bob, scope=["accessTokens", "account.read", "accessCodes"])
        self.assertLosantError(self.alice.req("GET", "/access-tokens/" + bob_token["id"]), 404, "NotFound")
        self.assertLosantError(self.alice.req("DELETE", "/access-tokens/" + bob_token["id"]), 404, "NotFound")
        mine = self.alice.req("GET", "/access-tokens").json()["items"]
        self.assertNotIn(bob_token["id"], [i["id"] for i in mine])
        tok = bob_token["token"]
        self.assertEqual(self.bearer(tok, "GET", f"/account/{self.alice.account_id}").status, 403)
        self.assertEqual(self.bearer(tok, "POST", f"/account/{self.alice.account_id}/accessCode", {}).status, 403)
        self.assertEqual(self.bearer(tok, "GET", f"/account/{self.bob.account_id}").status, 200)

    def test_discovery_links(self):
        root = self.d.request("GET", "/")
        link = find_link(root, rel="service", title="account-accessTokens")
        self.assertEqual(link["href"], "/access-tokens")
        self.assertEqual(link["profile"], "/schema/access-tokens/access-token-post.json")
        self.assertEqual(find_link(root, rel="service", title="access-tokens-email")["href"], "/v1/access_tokens")
        account = self.alice.req("GET", f"/account/{self.alice.account_id}")
        self.assertEqual(find_link(account, rel="service", title="account-accessTokens")["href"], "/access-tokens")
        for path in ("access-tokens/access-token-post.json", "access-tokens/access-token-patch.json",
                     "v1/access-tokens-request.json", "v1/access-tokens-delete-request.json"):
            self.assertEqual(self.d.request("GET", "/schema/" + path).status, 200, path)

    # --- e-mail API --------------------------------------------------------------------------
    def test_email_flow_end_to_end(self):
        address = self.carol.address
        r = self.email("/v1/access_tokens", {"email_address": address})
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(r.json(), {})
        # Absolute: the harness sets public_url (test_email_flow.py checks it relative without).
        self.assertEqual(r.header("Location"), self.d.config()["public_url"] + "/v1/access_tokens")
        self.assertNotIn(b"otk_", r.body)
        mail = self.wait_mails_to(address, "Your opentokend", 1)[-1]
        token = re.search(r"otk_[A-Za-z0-9_-]{43}", mail[2]).group(0)
        self.assertEqual(self.bearer(token, "GET", f"/account/{self.carol.account_id}").status, 200)
        listing = self.bearer(token, "GET", "/access-tokens")
        self.assertEqual(listing.status, 200)
        item = [i for i in listing.json()["items"] if i["source"] == "email"]
        self.assertEqual(len(item), 1)
        self.assertEqual(sorted(item[0]["scope"]), sorted(["account.read", "accessTokens.read", "accessTokens.delete"]))
        # The conservative default scope mints nothing.
        self.assertEqual(self.bearer(token, "POST", f"/account/{self.carol.account_id}/accessCode", {}).status, 403)
        self.assertEqual(self.bearer(token, "POST", "/access-tokens", {"name": "x"}).status, 403)
        # A second request (any case) mints a second token beside the first: an unauthenticated
        # POST revokes nothing (issue 14 §3).
        self.assertEqual(self.email("/v1/access_tokens", {"email_address": address.upper()}).status, 201)
        mail2 = self.wait_mails_to(address.upper(), "Your opentokend", 1)[-1]
        token2 = re.search(r"otk_[A-Za-z0-9_-]{43}", mail2[2]).group(0)
        self.assertNotEqual(token, token2)
        self.assertEqual(self.bearer(token, "GET", f"/account/{self.carol.account_id}").status, 200)
        self.assertEqual(self.bearer(token2, "GET", f"/account/{self.carol.account_id}").status, 200)
        # Deletion: code by mail, a wrong code changes nothing, the right one revokes.
        r = self.email("/v1/access_tokens/delete", {"email_address": address})
        self.assertEqual(r.status, 201)
        self.assertEqual(r.json(), {})
        code_mail = self.wait_mails_to(address, "Revoke", 1)[-1]
        code = re.search(r"\n([A-Za-z0-9_-]{32})\r?\n", code_mail[2]).group(1)
        wrong = self.email("/v1/access_tokens", {"email_address": address, "code": "1337"}, method="DELETE")
        self.assertPkmnError(wrong, 400, "error_access_tokens_invalid")
        self.assertEqual(self.bearer(token, "GET", f"/account/{self.carol.account_id}").status, 200)
        self.assertEqual(self.bearer(token2, "GET", f"/account/{self.carol.account_id}").status, 200)
        ok = self.email("/v1/access_tokens", {"email_address": address, "code": code}, method="DELETE")
        self.assertEqual(ok.status, 204, ok.body)
        self.assertEqual(ok.body, b"")
        self.assertIsNone(ok.header("Content-Type"))
        # The code revokes every token mailed to the address.
        self.assertEqual(self.bearer(token, "GET", f"/account/{self.carol.account_id}").status, 401)
        self.assertEqual(self.bearer(token2, "GET", f"/account/{self.carol.account_id}").status, 401)
        again = self.email("/v1/access_tokens", {"email_address": address, "code": code}, method="DELETE")
        self.assertPkmnError(again, 400, "error_access_tokens_invalid")
        # Other credentials of the account are untouched.
        self.assertEqual(self.carol.req("GET", "/access-tokens").status, 200)

    def test_unknown_address_gets_the_same_reply_and_no_mail(self):
        n = len(self.mails_to(self.bob.address, "Revoke"))
        before = len(read_mails(self.spool))
        known = self.email("/v1/access_tokens/delete", {"email_address": self.bob.address})
        self.wait_mails_to(self.bob.address, "Revoke", n + 1)
        after_known = len(read_mails(self.spool))
        skipped = self.d.read_log().count('"event":"access_token_mail_skipped"')
        unknown = self.email("/v1/access_tokens/delete", {"email_address": "nobody@example.com"})
        unknown_issue = self.email("/v1/access_tokens", {"email_address": "nobody@example.com"})
        # The worker has done both (it logs each skip, without the address) and mailed nothing.
        deadline = time.time() + 10
        while self.d.read_log().count('"event":"access_token_mail_skipped"') < skipped + 2:
            self.assertLess(time.time(), deadline, "the unknown requests were not processed")
            time.sleep(0.05)
        self.assertNotIn("nobody@example.com", self.d.read_log())
        self.assertEqual(after_known, before + 1)
        self.assertEqual(len(read_mails(self.spool)), after_known)
        for r in (unknown, unknown_issue):
            self.assertEqual((r.status, r.body, r.header("Location"), r.header("Content-Type")),
                             (known.status, known.body, known.header("Location"), known.header("Content-Type")))
        bad = self.email("/v1/access_tokens", {"email_address": "nobody@example.com", "code": "x" * 32},
                         method="DELETE")
        self.assertPkmnError(bad, 400, "error_access_tokens_invalid")

    def test_deletion_code_allows_few_tries(self):
        address = self.bob.address
        self.assertEqual(self.email("/v1/access_tokens", {"email_address": address}).status, 201)
        token = re.search(r"otk_[A-Za-z0-9_-]{43}", self.wait_mails_to(address, "Your opentokend", 1)[-1][2]).group(0)
        n = len(self.mails_to(address, "Revoke"))
        self.assertEqual(self.email("/v1/access_tokens/delete", {"email_address": address}).status, 201)
        code_mail = self.wait_mails_to(address, "Revoke", n + 1)[-1]
        code = re.search(r"\n([A-Za-z0-9_-]{32})\r?\n", code_mail[2]).group(1)
        for _ in range(5):
            r = self.email("/v1/access_tokens", {"email_address": address, "code": "wrong" + code[5:]}, method="DELETE")
            self.assertPkmnError(r, 400, "error_access_tokens_invalid")
        r = self.email("/v1/access_tokens", {"email_address": address, "code": code}, method="DELETE")
        self.assertPkmnError(r, 400, "error_access_tokens_invalid")
        self.assertEqual(self.bearer(token, "GET", f"/account/{self.bob.account_id}").status, 200)

    def test_malformed_email_requests(self):
        def raw(body, ctype="application/json", method="POST", headers=None):
            h = {"Content-Type": ctype}
            h.update(headers or {})
            return self.d.request(method, "/v1/access_tokens", body=json.dumps(body), headers=h)

        good = {"data": {"type": "access_tokens", "attributes": {"email_address": "x@example.com"}}}
        cases = [
            {"data": {"type": "users", "attributes": {"email_address": "x@example.com"}}},
            {"data": {"type": "access_tokens"}},
            {"data": {"type": "access_tokens", "attributes": {}}},
            {"data": {"type": "access_tokens", "attributes": {"email_address": "x@example.com", "extra": 1}}},
            {"data": {"type": "access_tokens", "attributes": {"email_address": "x@example.com"}, "id": "1"}},
            {"data": {"type": "access_tokens", "attributes": {"email_address": "not an address"}}},
            {"data": {"type": "access_tokens", "attributes": {"email_address": "a" * 250 + "@example.com"}}},
            {"email_address": "x@example.com"},
            [],
        ]
        for body in cases:
            self.assertPkmnError(raw(body), 400, "error_access_tokens_invalid")
        self.assertPkmnError(raw(good, method="DELETE"), 400, "error_access_tokens_invalid")  # no code
        self.assertEqual(raw(good, ctype="text/plain").status, 415)
        self.assertPkmnError(raw(good, headers={"Authorization": "Bearer otk_x"}), 403, "error_access_tokens_forbidden")
        self.assertPkmnError(raw(good, headers={"Authorization": "Basic eDp5"}), 403, "error_access_tokens_forbidden")

    def test_email_requests_are_rate_limited_per_address(self):
        address = "flood@example.com"
        statuses = [self.email("/v1/access_tokens", {"email_address": address}).status for _ in range(6)]
        self.assertEqual(statuses[:5], [201] * 5)
        self.assertEqual(statuses[5], 429)
        r = self.email("/v1/access_tokens/delete", {"email_address": address})
        self.assertPkmnError(r, 429, "error_too_many_requests")
        self.assertIsNotNone(r.header("Retry-After"))
        # Another address is not affected.
        self.assertEqual(self.email("/v1/access_tokens", {"email_address": "other@example.com"}).status, 201)

    def test_no_token_string_or_code_in_the_store(self):
        t = self.create(scope=["account.read"])
        self.assertEqual(self.email("/v1/access_tokens", {"email_address": self.alice.address}).status, 201)
        mailed = re.search(r"otk_[A-Za-z0-9_-]{43}",
                           self.wait_mails_to(self.alice.address, "Your opentokend", 1)[-1][2]).group(0)
        self.assertEqual(self.email("/v1/access_tokens/delete", {"email_address": self.alice.address}).status, 201)
        code = re.search(r"\n([A-Za-z0-9_-]{32})\r?\n",
                         self.wait_mails_to(self.alice.address, "Revoke", 1)[-1][2]).group(1)
        secrets = [t["token"].encode(), mailed.encode(), mailed[4:].encode(), t["token"][4:].encode(), code.encode()]
        for dirpath, _, files in os.walk(os.path.join(self.d.dir, "data")):
            for name in files:
                with open(os.path.join(dirpath, name), "rb") as f:
                    data = f.read()
                for s in secrets:
                    self.assertNotIn(s, data, name)
                self.assertNotIn(b"otk_", data, name)
                self.assertNotIn(b"test token", data, name)  # names are sealed too


if __name__ == "__main__":
    unittest.main()
