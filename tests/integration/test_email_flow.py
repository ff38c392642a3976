"""Issue 14 (hostile review), the e-mail access-token API and token management, against the real
daemon:

  §2  the answer time of POST /v1/access_tokens[/delete] does not show whether the address has
      an account (the work is queued durably and done by a worker; a request survives kill -9);
  §3  a second e-mailed token does not revoke the first; at most email_tokens_per_account live
      side by side, and at the cap a request answers the same and mints nothing;
  §6  a bearer with accessTokens.update cannot change (re-activate, rename) a token wider or
      longer-lived than itself;
  §7  the /v1 answers' Location is absolute when public_url is set, relative otherwise.
"""

import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import unittest

from harness import Daemon
from opentoken_client import logged_in_user, read_mails

TOKEN_RE = r"otk_[A-Za-z0-9_-]{43}"
CODE_RE = r"\n([A-Za-z0-9_-]{32})\r?\n"
ISSUE = "/v1/access_tokens"
DELETE_REQUEST = "/v1/access_tokens/delete"


def iso(delta_seconds):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=delta_seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def email_body(address, code=None):
    attributes = {"email_address": address}
    if code is not None:
        attributes["code"] = code
    return json.dumps({"data": {"type": "access_tokens", "attributes": attributes}})


def post_email(d, path, address, method="POST", code=None):
    return d.request(method, path, body=email_body(address, code),
                     headers={"Content-Type": "application/json"})


def bearer(d, token, method, path, body=None):
    h = {"Authorization": "Bearer " + token}
    if body is not None:
        body = json.dumps(body)
        h["Content-Type"] = "application/json"
    return d.request(method, path, body=body, headers=h)


def mails_to(spool, address, subject_word):
    return [m for m in read_mails(spool)
            if m[1]["To"] == address and subject_word in m[1]["Subject"]]


def wait_mails_to(spool, address, subject_word, count, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        mails = mails_to(spool, address, subject_word)
        if len(mails) >= count:
            return mails
        time.sleep(0.05)
    raise AssertionError(f"expected {count} '{subject_word}' mails to {address}")


def wait_log_count(d, needle, count, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if d.read_log().count(needle) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"expected {count} log lines with {needle}")


# LD_PRELOAD shim: every fsync/fdatasync takes OTD_TEST_SYNC_DELAY_US longer, as on a slow disk.
# The answer-time checks run on it so that what the disk costs stands out of the noise: on a fast
# disk a durable write can cost less than the checks' 1 ms floor, and a request path that waits
# for one only for known addresses would go unnoticed.
SLOW_SYNC_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

static void pause_like_a_slow_disk(void) {
  const char *us = getenv("OTD_TEST_SYNC_DELAY_US");
  if (us) usleep((useconds_t)atoi(us));
}
int fsync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  pause_like_a_slow_disk();
  return real(fd);
}
int fdatasync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  pause_like_a_slow_disk();
  return real(fd);
}
"""


def build_slow_sync_shim(directory):
    """Compiles SLOW_SYNC_SHIM; returns its path, or None without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src = os.path.join(directory, "slow_sync.c")
    out = os.path.join(directory, "slow_sync.so")
    with open(src, "w") as f:
        f.write(SLOW_SYNC_SHIM)
    r = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", out, src, "-ldl"],
                       capture_output=True, text=True)
    return out if r.returncode == 0 else None


class AnswerTimeTest(unittest.TestCase):
    """§2: known and unknown addresses are answered in the same time."""

    SYNC_DELAY_US = 10000  # each fsync/fdatasync: +10 ms

    PAIRS = 30
    # Shared CI cores make one round noisy (a round of the fixed code failed about one time in five
    # on the loaded machine), so a verdict takes two passing rounds out of at most five. The old
    # code (known 33-44 ms, unknown 1 ms with the shim) does not get there by luck.
    ROUNDS = 5
    NEEDED = 2
    PAUSE = 0.1  # after each request: the worker's mail and commits (4-5 slow syncs) are done

    @classmethod
    def setUpClass(cls):
        # Limits high enough for the measured requests; a known address keeps getting tokens
        # (the worker really mints and mails while the requests are measured).
        cls.d = Daemon(extra_config={"access_tokens": {"email_requests_per_address": 1000,
                                                       "email_requests_per_peer": 100000,
                                                       "email_tokens_per_account": 100}})
        shim = build_slow_sync_shim(cls.d.dir)
        if shim is None:
            print("no C compiler: answer times measured on the disk as it is", file=sys.stderr)
        else:
            base = cls.d.env
            extra = {"LD_PRELOAD": shim, "OTD_TEST_SYNC_DELAY_US": str(cls.SYNC_DELAY_US)}
            cls.d.env = lambda: {**base(), **extra}
        cls.d.start()
        cls.spool = os.path.join(cls.d.dir, "mail")
        cls.known = logged_in_user(cls.d, cls.spool, "known@example.com")

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        cls.d.cleanup()
        assert code == 0

    def timed(self, conn, method, path, address, code=None, expect=201):
        body = email_body(address, code)
        t0 = time.perf_counter()
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        elapsed = (time.perf_counter() - t0) * 1000
        self.assertEqual(r.status, expect)
        return elapsed

    def measure(self, round_no, call, before_pair=None):
        """Medians (ms) of PAIRS calls for the known and PAIRS for unknown addresses, interleaved
        (the order inside a pair alternates), on one keep-alive connection. A short pause after
        each request lets the worker finish, so each answer time is the request's own (the load
        the worker leaves behind is a weaker, separate channel: docs/decisions.md)."""
        conn = self.d.unix_conn()
        known, unknown = [], []
        try:
            for i in range(self.PAIRS):
                if before_pair:
                    before_pair()
                other = f"nobody{round_no}-{i}@example.com"
                order = [(known, self.known.address), (unknown, other)]
                if i % 2:
                    order.reverse()
                for samples, address in order:
                    samples.append(call(conn, address))
                    time.sleep(self.PAUSE)
        finally:
            conn.close()
        return statistics.median(known), statistics.median(unknown)

    def check(self, what, call, before_pair=None):
        rounds, passed = [], 0
        for n in range(self.ROUNDS):
            k, u = self.measure(n, call, before_pair)
            rounds.append((round(k, 2), round(u, 2)))
            print(f"{what}: median known {k:.2f} ms, unknown {u:.2f} ms", file=sys.stderr)
            # The issue's bar: the medians differ by less than 1 ms or 25 %, whichever is larger.
            passed += abs(k - u) < max(1.0, 0.25 * max(k, u))
            if passed >= self.NEEDED:
                return
            if passed + (self.ROUNDS - n - 1) < self.NEEDED:
                break
        self.fail(f"{what}: medians (known, unknown) ms too far apart: {rounds}")

    def test_issuing_takes_the_same_time_for_known_and_unknown_addresses(self):
        self.check(ISSUE, lambda conn, a: self.timed(conn, "POST", ISSUE, a))

    def test_deletion_requests_take_the_same_time_for_known_and_unknown_addresses(self):
        self.check(DELETE_REQUEST, lambda conn, a: self.timed(conn, "POST", DELETE_REQUEST, a))

    def test_a_wrong_code_takes_the_same_time_whether_or_not_a_code_is_pending(self):
        # Only an account's address can have a pending code: POST /delete, then a wrong code
        # must not tell (it waited for a durable attempt count before).
        address = self.known.address

        def fresh_code():
            n = len(mails_to(self.spool, address, "Revoke"))
            self.assertEqual(post_email(self.d, DELETE_REQUEST, address).status, 201)
            wait_mails_to(self.spool, address, "Revoke", n + 1)

        wrong = "x" * 32
        self.check("DELETE " + ISSUE,
                   lambda conn, a: self.timed(conn, "DELETE", ISSUE, a, code=wrong, expect=400),
                   before_pair=fresh_code)


class QueueSurvivesKillTest(unittest.TestCase):
    """§2: an accepted request is durable: kill -9 before the mail went out, the mail comes after
    the restart."""

    def setUp(self):
        self.d = Daemon()
        self.spool = os.path.join(self.d.dir, "mail")

    def tearDown(self):
        self.d.cleanup()

    def test_a_request_accepted_before_kill_9_is_mailed_after_the_restart(self):
        d = self.d
        d.start()
        user = logged_in_user(d, self.spool, "durable@example.com")
        # The mail cannot be written: the spool directory is removed (the daemon keeps a handle
        # on it, and creating a file in a deleted directory fails even for root).
        for f in os.listdir(self.spool):
            os.unlink(os.path.join(self.spool, f))
        os.rmdir(self.spool)
        r = post_email(d, ISSUE, user.address)
        self.assertEqual(r.status, 201, r.body)
        # The worker tried, could not mail, and scheduled a retry.
        wait_log_count(d, '"event":"mail_request_retry"', 1)
        d.kill()
        os.mkdir(self.spool, 0o700)
        d.start()
        mail = wait_mails_to(self.spool, user.address, "Your opentokend", 1, timeout=30)[0]
        token = re.search(TOKEN_RE, mail[2]).group(0)
        self.assertEqual(bearer(d, token, "GET", f"/account/{user.account_id}").status, 200)
        # Exactly one token: the failed attempt minted nothing that lives.
        listing = bearer(d, token, "GET", "/access-tokens").json()["items"]
        self.assertEqual(len([i for i in listing if i["source"] == "email"]), 1)
        log = d.read_log()
        self.assertNotIn(user.address, log)
        self.assertEqual(d.stop(), 0)


class EmailFlowTest(unittest.TestCase):
    """§3, §6 and §7 against one daemon (public_url set by the harness)."""

    @classmethod
    def setUpClass(cls):
        # email_tokens_per_account stays at its default (5).
        cls.d = Daemon(extra_config={"access_tokens": {"email_requests_per_address": 50}})
        cls.d.start()
        cls.spool = os.path.join(cls.d.dir, "mail")
        cls.dana = logged_in_user(cls.d, cls.spool, "dana@example.com")
        cls.erin = logged_in_user(cls.d, cls.spool, "erin@example.com")

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        cls.d.cleanup()
        assert code == 0

    def mail_a_token(self, user):
        n = len(mails_to(self.spool, user.address, "Your opentokend"))
        r = post_email(self.d, ISSUE, user.address)
        self.assertEqual(r.status, 201, r.body)
        mail = wait_mails_to(self.spool, user.address, "Your opentokend", n + 1)[n]
        return re.search(TOKEN_RE, mail[2]).group(0)

    def works(self, token, user):
        return bearer(self.d, token, "GET", f"/account/{user.account_id}").status == 200

    # --- §3 ----------------------------------------------------------------------------------
    def test_mailed_tokens_live_side_by_side_up_to_the_cap(self):
        user = self.dana
        first = self.mail_a_token(user)
        second = self.mail_a_token(user)
        self.assertNotEqual(first, second)
        self.assertTrue(self.works(first, user), "a second POST revoked the first mailed token")
        self.assertTrue(self.works(second, user))
        tokens = [first, second] + [self.mail_a_token(user) for _ in range(3)]
        self.assertTrue(all(self.works(t, user) for t in tokens))
        self.assertIn("while there are 5 no new one is mailed", read_mails(self.spool)[-1][2])
        # The sixth: the same answer, nothing minted, nothing mailed.
        skips = self.d.read_log().count('"reason":"email_token_cap"')
        mails = len(read_mails(self.spool))
        r = post_email(self.d, ISSUE, user.address)
        self.assertEqual((r.status, r.body), (201, b"{}"))
        wait_log_count(self.d, '"reason":"email_token_cap"', skips + 1)
        self.assertEqual(len(read_mails(self.spool)), mails)
        listing = user.req("GET", "/access-tokens").json()["items"]
        self.assertEqual(len([i for i in listing if i["source"] == "email"]), 5)
        self.assertTrue(all(self.works(t, user) for t in tokens))
        # Only the mailed code revokes them, all at once; then the cap is free again.
        n = len(mails_to(self.spool, user.address, "Revoke"))
        self.assertEqual(post_email(self.d, DELETE_REQUEST, user.address).status, 201)
        code_mail = wait_mails_to(self.spool, user.address, "Revoke", n + 1)[n]
        code = re.search(CODE_RE, code_mail[2]).group(1)
        r = post_email(self.d, ISSUE, user.address, method="DELETE", code=code)
        self.assertEqual(r.status, 204, r.body)
        self.assertFalse(any(self.works(t, user) for t in tokens))
        self.assertEqual(user.req("GET", f"/account/{user.account_id}").status, 200)  # the session
        self.assertTrue(self.works(self.mail_a_token(user), user))
        self.assertNotIn(user.address, self.d.read_log())

    # --- §6 ----------------------------------------------------------------------------------
    def create(self, **fields):
        body = {"name": "t"}
        body.update(fields)
        r = self.erin.req("POST", "/access-tokens", body)
        self.assertEqual(r.status, 201, r.body)
        return r.json()

    def patch(self, token, target, body):
        return bearer(self.d, token, "PATCH", "/access-tokens/" + target["id"], body)

    def status_of(self, target):
        return self.erin.req("GET", "/access-tokens/" + target["id"]).json()["status"]

    def assertForbidden(self, r):
        self.assertEqual(r.status, 403, r.body)
        self.assertEqual(r.json()["type"], "Forbidden")

    def test_update_scope_cannot_reactivate_or_rename_a_wider_token(self):
        wide = self.create(scope=["accessTokens", "account", "accessCodes"], status="inactive")
        narrow = self.create(scope=["account.read"], status="inactive")
        same = self.create(scope=["accessTokens.update", "account.read"], status="inactive")
        updater = self.create(scope=["accessTokens.update", "account.read"])
        tok = updater["token"]
        # Wider than the bearer: no change of any kind.
        self.assertForbidden(self.patch(tok, wide, {"status": "active"}))
        self.assertForbidden(self.patch(tok, wide, {"name": "renamed"}))
        self.assertForbidden(self.patch(tok, wide, {"status": "inactive"}))
        self.assertEqual(self.status_of(wide), "inactive")
        self.assertEqual(bearer(self.d, wide["token"], "GET", "/access-tokens").status, 401)
        # Within its scope (and lifetime): allowed.
        r = self.patch(tok, narrow, {"status": "active", "name": "back"})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual((r.json()["status"], r.json()["name"]), ("active", "back"))
        self.assertTrue(self.works(narrow["token"], self.erin))
        self.assertEqual(self.patch(tok, same, {"status": "active"}).status, 200)
        # A token that outlives the bearer is out of reach too (the creation rule's other half).
        later = self.create(scope=["account.read"], status="inactive",
                            expirationDate=iso(300 * 86400))
        short = self.create(scope=["accessTokens.update", "account.read"], expirationDate=iso(3600))
        self.assertForbidden(self.patch(short["token"], later, {"status": "active"}))
        self.assertEqual(self.status_of(later), "inactive")
        # The family scope covers its verbs: a token holding "accessTokens" may change a token
        # holding "accessTokens.read"; the login session may change anything.
        fam = self.create(scope=["accessTokens", "account", "accessCodes"])
        self.assertEqual(self.patch(fam["token"], wide, {"name": "by family"}).status, 200)
        r = self.erin.req("PATCH", "/access-tokens/" + wide["id"], {"status": "active"})
        self.assertEqual(r.status, 200, r.body)

    # --- §7 ----------------------------------------------------------------------------------
    def test_location_is_absolute_with_public_url(self):
        base = self.d.config()["public_url"]
        self.assertTrue(base.startswith("https://127.0.0.1:"))
        for path in (ISSUE, DELETE_REQUEST):
            r = post_email(self.d, path, "someone@example.com")
            self.assertEqual(r.status, 201, r.body)
            self.assertEqual(r.header("Location"), base + "/v1/access_tokens")


class RelativeLocationTest(unittest.TestCase):
    """§7: without public_url the Location stays relative."""

    def test_location_is_relative_without_public_url(self):
        d = Daemon()
        try:
            config = d.config()
            del config["public_url"]
            d.write_config(config)
            d.start()
            for path in (ISSUE, DELETE_REQUEST):
                r = post_email(d, path, "someone@example.com")
                self.assertEqual(r.status, 201, r.body)
                self.assertEqual(r.header("Location"), "/v1/access_tokens")
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
