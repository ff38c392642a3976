"""Issue 7 item 3: crash consistency under kill -9 (style-and-safety B.3 "kill test").

Several client threads work against the real daemon while the test SIGKILLs it at random moments
and restarts it:
  * token writers tokenize random payloads (OT1-signed, random sizes and content types);
  * an access-code writer creates access-code pairs with the login session and, at a cap,
    revokes the oldest (a 204 revocation must be durable too);
  * a registration writer starts registrations (POST /registration) for fresh addresses.
A result counts as acknowledged only when its complete 2xx response reached the client. After the
last restart the test checks, through the API, that
  * every acknowledged token detokenizes byte-exactly with its content type;
  * every acknowledged access-code pair still signs (it can read a token), every acknowledged
    revocation still refuses;
  * every acknowledged registration can still be secured (its record survived).
Finally the daemon must stop cleanly and `opentoken-admin verify` (issue 8: every record opens,
every data key unwraps) must pass on the crashed-and-restarted store.

Fast variant (scripts/test): 20 kills, about 30-60 s. tests/long/crash_consistency_long.py runs the
same code with more kills (OTD_CRASH_KILLS, OTD_CRASH_SEED also work here).
"""

import os
import random
import threading
import time
import unittest

from harness import Daemon
from opentoken_client import Client, Signer, expand, find_link, password_hash, totp

TOKEN_WRITERS = 3
CONTENT_TYPES = ["application/octet-stream", "text/plain", "application/json", "image/png; x=1"]


class Acks:
    """What reached the clients, shared by the worker threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.tokens = []         # (location, body, content type)
        self.pairs = []          # {"code", "secret", ...}
        self.revoked = []        # pairs whose DELETE got 204
        self.uncertain = []      # pairs whose DELETE did not get an answer
        self.revoke_statuses = {}
        self.registrations = []  # Client after a 200 from register()
        self.attempts = {"token": 0, "pair": 0, "registration": 0}
        self.errors = []         # unexpected statuses (not connection failures)

    def add(self, kind, item):
        with self.lock:
            getattr(self, kind).append(item)

    def attempt(self, kind):
        with self.lock:
            self.attempts[kind] += 1


def connection_failure(e):
    # What a client sees when the daemon dies under it or is not up yet.
    return isinstance(e, (OSError, ConnectionError)) or type(e).__name__ in (
        "RemoteDisconnected", "BadStatusLine", "IncompleteRead", "CannotSendRequest",
        "ResponseNotReady")


def run_crash_consistency(test, kills, seed, min_uptime=0.05, max_uptime=0.6,
                          max_pairs=20, max_registrations=30, pace=0.15):
    rnd = random.Random(seed)
    # One peer (this process) makes every registration: the per-peer registration limits
    # (test_registration_limits.py) are raised out of the way.
    d = Daemon(extra_config={"accounts": {"registrations_per_peer": 1000,
                                          "max_pending_registrations_per_peer": 1000}})
    test.addCleanup(d.cleanup)
    d.start()
    spool = os.path.join(d.dir, "mail")
    user = Client(d, address="crash@example.com")
    user.full_registration(spool)
    r = user.login()
    test.assertEqual(r.status, 200, r.body)
    account = user.req("GET", find_link(r, rel="up", title="account")["href"])
    code_href = find_link(account, title="account-accessCode")["href"]
    token_url = expand(find_link(account, title="account-token-create")["href"],
                       accountId=user.account_id)
    first = user.req("POST", code_href, {"description": "crash test"})
    test.assertEqual(first.status, 201, first.body)
    pair = first.json()
    # The pair the token writers use is never revoked (it is not in acks.pairs).

    acks = Acks()
    stop = threading.Event()

    def token_writer(i):
        wr = random.Random(seed * 100 + i)
        s = Signer(d, pair["code"], pair["secret"])
        while not stop.is_set():
            size = wr.choice([0, 1, 16, 100, 1000, 4096, 65536]) if wr.random() < 0.3 else wr.randrange(2048)
            body = wr.randbytes(size)
            ctype = wr.choice(CONTENT_TYPES)
            acks.attempt("token")
            try:
                rep = s.request("POST", token_url, body, ctype)
            except Exception as e:  # noqa: BLE001 - classified below
                if not connection_failure(e):
                    acks.errors.append(f"token writer: {e!r}")
                time.sleep(0.02)
                continue
            if rep.status == 201:
                acks.add("tokens", (rep.header("Location"), body, ctype))
            elif rep.status != 503:
                acks.errors.append(f"tokenize: {rep.status} {rep.body[:200]!r}")

    def pair_writer():
        # Creates pairs; at the cap (an account may hold 100, and the listing has one Link header
        # per pair, which must stay under http.client's 100-header limit) revokes the oldest live
        # one first. A revocation acknowledged with 204 must be durable too.
        while not stop.is_set():
            if len(acks.pairs) + 1 >= max_pairs:
                victim = acks.pairs[0]
                try:
                    rep = user.req("DELETE", victim["location"])
                except Exception as e:  # noqa: BLE001
                    if not connection_failure(e):
                        acks.errors.append(f"pair revoker: {e!r}")
                    with acks.lock:  # outcome unknown: check neither way
                        acks.pairs.remove(victim)
                        acks.uncertain.append(victim)
                    time.sleep(0.02)
                    continue
                with acks.lock:
                    acks.pairs.remove(victim)
                    acks.revoke_statuses[rep.status] = acks.revoke_statuses.get(rep.status, 0) + 1
                    if rep.status == 204:
                        acks.revoked.append(victim)
                    elif rep.status == 404:  # an earlier unacknowledged attempt did it
                        acks.uncertain.append(victim)
                    else:
                        acks.uncertain.append(victim)
                        if rep.status != 503:
                            acks.errors.append(f"revoke: {rep.status} {rep.body[:200]!r}")
                continue
            acks.attempt("pair")
            try:
                rep = user.req("POST", code_href, {"description": "crash pair"})
            except Exception as e:  # noqa: BLE001
                if not connection_failure(e):
                    acks.errors.append(f"pair writer: {e!r}")
                time.sleep(0.02)
                continue
            if rep.status == 201:
                p = rep.json()
                p["location"] = rep.header("Location")
                acks.add("pairs", p)
            elif rep.status != 503:
                acks.errors.append(f"access code: {rep.status} {rep.body[:200]!r}")
            time.sleep(pace)  # spread the creations over the kills

    def registration_writer():
        n = 0
        while not stop.is_set():
            if len(acks.registrations) >= max_registrations:
                time.sleep(0.05)
                continue
            n += 1
            c = Client(d, address=f"crash-reg-{seed}-{n}@example.com")
            acks.attempt("registration")
            try:
                root = c.req("GET", "/")
                link = find_link(root, rel="service", title="registration-register")
                rep = c.req("POST", link["href"], {"email": c.address})
            except Exception as e:  # noqa: BLE001
                if not connection_failure(e):
                    acks.errors.append(f"registration writer: {e!r}")
                time.sleep(0.02)
                continue
            if rep.status == 200:
                c.registration = rep
                c.reg_body = rep.json()
                c.seed = bytes.fromhex(c.reg_body["mfa"]["totp"]["keyHex"])
                acks.add("registrations", c)
            elif rep.status != 503:
                acks.errors.append(f"register: {rep.status} {rep.body[:200]!r}")
            time.sleep(pace)

    threads = [threading.Thread(target=token_writer, args=(i,), daemon=True) for i in range(TOKEN_WRITERS)]
    threads.append(threading.Thread(target=pair_writer, daemon=True))
    threads.append(threading.Thread(target=registration_writer, daemon=True))
    for t in threads:
        t.start()

    restart_times = []
    try:
        for _ in range(kills):
            time.sleep(rnd.uniform(min_uptime, max_uptime))
            d.kill()  # SIGKILL, wait for the process
            d.log.close()
            t0 = time.time()
            d.start()  # asserts the daemon becomes ready (startup survived the crash)
            restart_times.append(time.time() - t0)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)

    test.assertEqual(acks.errors, [], "unexpected statuses while crashing")
    # The workload must actually have raced the kills.
    test.assertGreater(len(acks.tokens), kills, acks.attempts)
    test.assertGreater(len(acks.pairs), 0, acks.attempts)
    test.assertGreater(len(acks.registrations), 0, acks.attempts)

    # --- every acknowledged token detokenizes byte-exactly ---------------------------------------
    s = Signer(d, pair["code"], pair["secret"])
    lost = []
    for loc, body, ctype in acks.tokens:
        g = s.request("GET", loc, b"", ctype)
        if g.status != 200 or g.body != body or g.header("Content-Type") != ctype:
            lost.append((loc, g.status, len(body), len(g.body)))
    test.assertEqual(lost, [], f"acknowledged tokens lost or changed ({len(lost)}/{len(acks.tokens)})")
    locations = [t[0] for t in acks.tokens]
    test.assertEqual(len(set(locations)), len(locations), "a token id was handed out twice")

    # --- every acknowledged access-code pair still signs -----------------------------------------
    probe = acks.tokens[0][0]
    dead = []
    for p in acks.pairs:
        g = Signer(d, p["code"], p["secret"]).request("GET", probe, b"", acks.tokens[0][2])
        if g.status != 200:
            dead.append((p["code"], g.status))
    test.assertEqual(dead, [], "acknowledged access-code pairs no longer sign")
    listing = user.req("GET", f"/account/{user.account_id}/accessCode")
    test.assertEqual(listing.status, 200)
    listed = {i["code"] for i in listing.json()["items"]}
    test.assertTrue({p["code"] for p in acks.pairs} <= listed, "acknowledged pairs missing from the listing")
    # ... and every acknowledged revocation stays revoked.
    resurrected = []
    for p in acks.revoked:
        g = Signer(d, p["code"], p["secret"]).request("GET", probe, b"", acks.tokens[0][2])
        if g.status != 401 or p["code"] in listed:
            resurrected.append((p["code"], g.status))
    test.assertEqual(resurrected, [], "revoked access-code pairs sign again after a crash")

    # --- every acknowledged registration can still be secured ------------------------------------
    missing = []
    for c in acks.registrations:
        now = time.time()
        edit = find_link(c.registration, rel="edit", title="registration-secure")
        c.pw_hash = password_hash(c.reg_body["passwordHashConfig"])
        body = {"mfa": {"totp": {"current": totp(c.seed, now), "previous": totp(c.seed, now, -1)}},
                "passwordHash": c.pw_hash}
        rep = c.req("POST", edit["href"], body)
        if rep.status != 204:
            missing.append((c.address, rep.status))
    test.assertEqual(missing, [], "acknowledged registrations lost")

    # The daemon still shuts down cleanly after all that, and the store verifies offline
    # (opentoken-admin verify, issue 8: every record opens, every data key unwraps).
    test.assertEqual(d.stop(), 0)
    v = d.admin("verify")
    test.assertEqual(v.returncode, 0, v.stdout + v.stderr)
    test.assertIn("verify: ok", v.stdout)
    return {
        "kills": kills,
        "tokens": len(acks.tokens),
        "pairs": len(acks.pairs),
        "revoked": len(acks.revoked),
        "revoke_statuses": dict(acks.revoke_statuses),
        "revoke_uncertain": len(acks.uncertain),
        "registrations": len(acks.registrations),
        "attempts": dict(acks.attempts),
        "restart_s_max": round(max(restart_times), 3) if restart_times else 0,
        "restart_s_mean": round(sum(restart_times) / len(restart_times), 3) if restart_times else 0,
    }


class CrashConsistencyTest(unittest.TestCase):
    def test_acknowledged_writes_survive_kill_9(self):
        kills = int(os.environ.get("OTD_CRASH_KILLS", "20"))
        seed = int(os.environ.get("OTD_CRASH_SEED", str(random.randrange(1 << 30))))
        print(f"crash consistency: seed={seed} kills={kills}", flush=True)
        t0 = time.time()
        stats = run_crash_consistency(self, kills=kills, seed=seed)
        stats["seconds"] = round(time.time() - t0, 1)
        print(f"crash consistency: {stats}", flush=True)


if __name__ == "__main__":
    unittest.main()
