"""Issue 19: the web console (/console/) in a real browser against the real daemon.

Headless Chromium (tests/integration/webdriver.py, chromedriver) goes through the whole journey
over TLS, with the daemon's self-signed certificate: register (the QR code and the key are
shown), a wrong pair of TOTP codes gives a readable error, the right pair (computed here from the
key the page shows) → "check your mail" → the mailed link (from the spool) lands on the console's
confirm page → log in (PBKDF2 and the challenge hash computed by the page) → create an access
code (its secret shown once) → tokenize and detokenize in the try-it panel (OT1 signed by the
page) → create, disable, enable and delete an access token → log out. The same journey runs
through nginx (docs/nginx-example.conf, as in test_nginx_proxy.py).

Along the way: the secrets (TOTP key, access-code secret, access token) are gone from the
document once their page is left and never reach localStorage, sessionStorage or the URL; the
browser reports no console error and no CSP violation (a listener installed through the DevTools
protocol before any page script, and the browser log); a control shows that an inline script
injected into the console is blocked and reported, so the check can fail.

Screenshots of every page go to build/console-screenshots/ (OTD_CONSOLE_SCREENSHOTS to change);
with OTD_UPDATE_CONSOLE_SCREENSHOTS=1 the TLS run also copies them to docs/console/.
"""

import base64
import os
import re
import shutil
import time
import unittest

import harness
import opentoken_client as oc
import test_nginx_proxy as ngx
import webdriver

SHOTS = os.environ.get("OTD_CONSOLE_SCREENSHOTS") or os.path.normpath(
    os.path.join(harness.BIN, "..", "console-screenshots"))
DOCS = os.path.join(harness.SOURCE, "docs", "console")
UPDATE_DOCS = os.environ.get("OTD_UPDATE_CONSOLE_SCREENSHOTS") == "1"
PASSWORD = "a console password 42"
CONSOLE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
               "frame-ancestors 'none'; require-trusted-types-for 'script'")

# Installed before any script of every document (DevTools Page.addScriptToEvaluateOnNewDocument):
# records each CSP violation the document sees.
VIOLATION_LISTENER = """
window.__otdViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__otdViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


def base32_key(text):
    key = re.sub(r"\s", "", text).upper()
    return base64.b32decode(key + "=" * (-len(key) % 8))


class Journey:
    """One user driving the console in `browser` at `origin` (the daemon's or nginx's URL)."""

    def __init__(self, test, browser, origin, daemon, spool, address, shots):
        self.t, self.b, self.origin, self.d = test, browser, origin, daemon
        self.spool, self.address, self.shots = spool, address, shots
        self.secrets = []  # every secret the pages showed

    # --- helpers -------------------------------------------------------------------------------
    def shot(self, name):
        # Every page: each form control has a label (the screen reader's name for it).
        unlabelled = self.b.execute(
            "return Array.from(document.querySelectorAll('input, select, textarea'))"
            ".filter(e => e.labels.length === 0).map(e => e.id || e.name);")
        self.t.assertEqual(unlabelled, [], f"controls without a label on {name}")
        os.makedirs(SHOTS, exist_ok=True)
        path = os.path.join(SHOTS, f"{self.shots}-{name}.png")
        self.b.full_screenshot(path)
        if UPDATE_DOCS and self.shots == "tls":
            os.makedirs(DOCS, exist_ok=True)
            shutil.copyfile(path, os.path.join(DOCS, f"{name}.png"))

    def goto(self, page):
        self.b.execute("location.hash = arguments[0];", page)

    def wait(self, css, what=None):
        return self.b.wait_for(lambda: self.b.present(css), what=what or css)

    def wait_text(self, css, predicate, what=None):
        def check():
            if not self.b.present(css):
                return None
            text = self.b.execute(
                "return document.querySelector(arguments[0]).textContent;", css)
            return text if predicate(text) else None
        return self.b.wait_for(check, timeout=15, what=what or css)

    def fill(self, css, text):
        self.b.clear(css)
        self.b.type(css, text)

    def check_clean(self, allowed_network=()):
        """No console error and no CSP violation so far (network errors of the statuses the step
        expects, e.g. the 400 of a wrong TOTP, are allowed)."""
        violations = self.b.execute("return window.__otdViolations || [];")
        self.t.assertEqual(violations, [], "CSP violations")
        bad = []
        for entry in self.b.browser_log():
            if entry.get("level") != "SEVERE":
                continue
            msg = entry.get("message", "")
            m = re.search(r"status of (\d{3})", msg)
            if entry.get("source") == "network" and m and int(m.group(1)) in allowed_network:
                continue
            bad.append(msg)
        self.t.assertEqual(bad, [], "browser console errors")

    def assert_no_secret_left(self):
        """The secrets shown so far are in no part of the document, no field, no storage and
        not in the URL."""
        source = self.b.source()
        values = self.b.execute(
            "return Array.from(document.querySelectorAll('input, textarea'), e => e.value)"
            ".join('\\n') + '\\n' + location.href + '\\n' + JSON.stringify(localStorage) + "
            "JSON.stringify(sessionStorage) + document.title;")
        storage = self.b.execute("return localStorage.length + sessionStorage.length;")
        self.t.assertEqual(storage, 0)
        for s in self.secrets:
            self.t.assertNotIn(s, source)
            self.t.assertNotIn(s, values)

    # --- the journey ---------------------------------------------------------------------------
    def run(self, wrong_totp=False):
        t, b = self.t, self.b
        b.browser_log()  # what earlier tests left
        b.get(self.origin + "/console/")
        self.wait("#view h1")
        t.assertEqual(b.title(), "opentokend console · opentokend console")
        self.shot("home")

        # Register: the QR code (a loaded PNG) and the key.
        self.goto("#/register")
        self.wait("#register-email")
        self.fill("#register-email", self.address)
        b.click("#register-form button[type=submit]")
        self.wait("#secure-key", "the TOTP key")
        b.wait_for(lambda: b.execute(
            "const i = document.querySelector('#secure-qr'); return i.complete && i.naturalWidth;"),
            what="the QR code to load")
        key_text = b.text("#secure-key")
        seed = base32_key(key_text)
        self.secrets.append(key_text)
        self.fill("#secure-password", PASSWORD)
        self.fill("#secure-password2", PASSWORD)
        self.shot("register")
        if wrong_totp:
            old = time.time() - 3600
            self.fill("#secure-code1", oc.totp(seed, old, -1))
            self.fill("#secure-code2", oc.totp(seed, old))
            b.click("#secure-form button[type=submit]")
            msg = self.wait_text("#secure-error", lambda s: bool(s), "the error")
            t.assertTrue(b.execute("return !document.querySelector('#secure-error').hidden;"))
            t.assertIn("The codes were not accepted", msg)
            t.assertIn("consecutive codes", msg)
            self.shot("register-wrong-totp")
            self.check_clean(allowed_network=(400,))
        now = time.time()
        self.fill("#secure-code1", oc.totp(seed, now, -1))
        self.fill("#secure-code2", oc.totp(seed, now))
        b.click("#secure-form button[type=submit]")
        self.wait_text("#check-mail", lambda s: self.address in s, "check your mail")
        self.shot("check-mail")
        self.assert_no_secret_left()

        # The mailed link (the documented API link) lands on the console's confirm page.
        mails = oc.wait_for_mail(self.spool)
        link = re.search(r"https://\S+/registration/[A-Za-z0-9_-]+/confirm/[A-Za-z0-9_-]+",
                         mails[-1][2]).group(0)
        t.assertTrue(link.startswith(self.origin + "/registration/"), link)
        b.get(link)
        account_id = self.wait_text("#confirm-account", bool, "the account id")
        code = link.rsplit("/", 1)[1]
        t.assertNotIn(code, b.url())
        t.assertTrue(b.url().endswith("/console/#/confirm"), b.url())
        self.shot("confirm")

        # Log in: the account id is offered; password and TOTP typed.
        b.click("#confirm-login")
        self.wait("#login-form")
        t.assertEqual(b.execute("return document.querySelector('#login-account').value;"),
                      account_id)
        self.fill("#login-password", PASSWORD)
        if wrong_totp:
            self.fill("#login-code", oc.totp(seed, time.time() - 3600))
            b.type("#login-code", "\ue007")
            msg = self.wait_text("#login-error", bool, "the login error")
            t.assertEqual(msg, "Login failed: the account id, password or code is wrong.")
            self.check_clean(allowed_network=(401,))
        self.fill("#login-code", oc.totp(seed, time.time()))
        self.shot("login")
        b.type("#login-code", "\ue007")  # Enter submits the form (keyboard only)
        self.wait_text("#account-email", lambda s: s == self.address, "the account page")
        self.shot("account")
        self.check_clean()

        # An access code: the secret shown once, with its warning and a copy button.
        self.goto("#/access-codes")
        self.wait("#codes-form")
        self.fill("#codes-description", "console test")
        b.click("#codes-form button[type=submit]")
        pair_code = self.wait_text("#codes-new-code", bool, "the new access code")
        secret = b.text("#codes-created .secret")
        self.secrets.append(secret)
        t.assertIn("shown only this once", b.text("#codes-created .warning"))
        t.assertTrue(b.present("#codes-created button"))
        self.wait_text("#codes-list", lambda s: pair_code in s, "the list")
        self.shot("access-codes")
        # A second pair, revoked from the list (the first one stays for the try-it panel).
        self.fill("#codes-description", "to revoke")
        b.click("#codes-form button[type=submit]")
        other = self.wait_text("#codes-new-code", lambda s: s and s != pair_code, "a second code")
        self.secrets.append(b.text("#codes-created .secret"))
        self.wait(f"#codes-list tr[data-code='{other}']")
        b.click(f"#codes-list tr[data-code='{other}'] button")
        b.wait_for(lambda: not b.present(f"#codes-list tr[data-code='{other}']"),
                   what="the revoked code's row to go")
        listed = oc.Signer(self.d, other, self.secrets[-1]).request(
            "POST", f"/account/{account_id}/token", body=b"x")
        t.assertEqual(listed.status, 401, listed.body)  # the revoked pair signs nothing

        # Try it: tokenize and detokenize, signed by the page with the pair in memory.
        self.goto("#/try")
        self.wait("#try-form")
        self.assert_no_secret_left()  # left the access-code page: its secret is gone
        t.assertEqual(b.execute("return document.querySelector('#try-pair').value;"), pair_code)
        text = "Card 4111 1111 1111 1111, exp 12/29 — ünïcode ✓"
        self.fill("#try-text", text)
        b.click("#try-tokenize")
        token_id = self.wait_text("#try-token", bool, "the token")
        b.click("#try-detokenize")
        self.wait_text("#try-plain", lambda s: s == text, "the detokenized text")
        self.shot("try-it")
        # The token holds the text (checked without the browser).
        signer = oc.Signer(self.d, pair_code, secret)
        r = signer.request("GET", f"/account/{account_id}/token/{token_id}")
        t.assertEqual((r.status, r.body.decode()), (200, text))
        self.check_clean()

        # An access token: scope checkboxes and expiry; shown once; disable, enable, delete.
        self.goto("#/access-tokens")
        self.wait("#tokens-form")
        self.assert_no_secret_left()
        self.fill("#tokens-name", "console token")
        b.click("#scope-account\\.read")
        b.click("#scope-accessTokens\\.read")
        b.execute("document.querySelector('#tokens-expiry').value = arguments[0];",
                  time.strftime("%Y-%m-%d", time.gmtime(time.time() + 30 * 86400)))
        b.click("#tokens-form button[type=submit]")
        bearer = self.wait_text("#tokens-created .secret", bool, "the access token")
        self.secrets.append(bearer)
        self.wait("#tokens-list tr[data-status=active]")
        row = b.text("#tokens-list tr")
        t.assertIn("account.read accessTokens.read", row)
        self.shot("access-tokens")
        auth = {"Authorization": "Bearer " + bearer}
        t.assertEqual(self.d.request("GET", f"/account/{account_id}", headers=auth).status, 200)
        b.click("#tokens-list tr button.toggle")
        self.wait("#tokens-list tr[data-status=inactive]")
        t.assertEqual(self.d.request("GET", f"/account/{account_id}", headers=auth).status, 401)
        b.click("#tokens-list tr button.toggle")
        self.wait("#tokens-list tr[data-status=active]")
        t.assertEqual(self.d.request("GET", f"/account/{account_id}", headers=auth).status, 200)
        b.click("#tokens-list tr button.delete")
        b.wait_for(lambda: not b.present("#tokens-list tr"), what="the token row to go")
        t.assertEqual(self.d.request("GET", f"/account/{account_id}", headers=auth).status, 401)
        self.goto("#/account")
        self.wait("#logout")
        self.assert_no_secret_left()
        self.check_clean()

        # Log out: back to the login page, and the browser's session no longer works.
        b.click("#logout")
        self.wait("#login-form")
        status = b.execute_async(
            "const done = arguments[arguments.length - 1];"
            "fetch('/account/' + arguments[0]).then(r => done(r.status), e => done(-1));",
            account_id)
        t.assertEqual(status, 401)
        status = b.execute_async(
            "const done = arguments[arguments.length - 1];"
            "fetch('/access-tokens').then(r => done(r.status), e => done(-1));")
        t.assertEqual(status, 401)
        self.check_clean(allowed_network=(401,))
        return account_id


class ConsoleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon()
        cls.d.start()
        cls.spool = os.path.join(cls.d.dir, "mail")
        try:
            cls.browser = webdriver.Browser()
            cls.browser.cdp("Page.addScriptToEvaluateOnNewDocument",
                            {"source": VIOLATION_LISTENER})
        except Exception:
            cls.d.stop()
            cls.d.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.browser.close()
        cls.d.stop()
        cls.d.cleanup()

    def origin(self):
        return f"https://127.0.0.1:{self.d.port}"

    def test_journey_over_tls(self):
        Journey(self, self.browser, self.origin(), self.d, self.spool, "tls@example.com",
                "tls").run(wrong_totp=True)

    def test_journey_through_nginx(self):
        port = harness.free_port()
        d = ngx.UnixOnlyDaemon(extra_config={"public_url": f"https://127.0.0.1:{port}"})
        nginx = None
        try:
            d.start()
            nginx = ngx.Nginx(d.sock, ngx.MAX_BODY, port=port).start()
            Journey(self, self.browser, f"https://127.0.0.1:{port}", d,
                    os.path.join(d.dir, "mail"), "nginx@example.com", "nginx").run()
        finally:
            if nginx:
                nginx.cleanup()
            d.stop()
            d.cleanup()

    def test_an_injected_inline_script_is_blocked_and_reported(self):
        # The control of check_clean: the console's policy stops an inline script (Trusted Types
        # refuse its text, and script-src its execution) and an inline style, and each violation
        # is seen both by the listener and in the browser log.
        b = self.browser
        b.get(self.origin() + "/console/")
        b.wait_for(lambda: b.present("#view h1"), what="the console")
        b.browser_log()
        thrown = b.execute(
            "const s = document.createElement('script'); let thrown = null;"
            "try { s.textContent = 'window.__ran = 1'; } catch (e) { thrown = e.name; }"
            "s.appendChild(document.createTextNode('window.__ran = 2'));"
            "document.body.append(s);"
            "const st = document.createElement('div'); st.setAttribute('style', 'color: red');"
            "document.body.append(st); return thrown;")
        self.assertEqual(thrown, "TypeError")
        violations = b.wait_for(lambda: len(b.execute("return window.__otdViolations;")) >= 3
                                and b.execute("return window.__otdViolations;"),
                                what="the violations")
        self.assertIsNone(b.execute("return window.__ran === undefined ? null : window.__ran;"))
        directives = {v.split(" ")[0] for v in violations}
        self.assertTrue({"require-trusted-types-for", "style-src-attr"} <= directives, violations)
        log = [e["message"] for e in b.browser_log() if e.get("level") == "SEVERE"]
        self.assertTrue(any("TrustedScript" in m for m in log), log)
        self.assertTrue(any("Content Security Policy" in m for m in log), log)

    def test_console_answers_have_their_own_policy_and_the_api_keeps_its_own(self):
        r = self.d.request("GET", "/console/")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Type"), "text/html; charset=utf-8")
        self.assertEqual(r.header("Content-Security-Policy"), CONSOLE_CSP)
        self.assertEqual(r.header("Cache-Control"), "no-cache")
        self.assertEqual(r.header("X-Frame-Options"), "DENY")
        self.assertEqual(r.header("Referrer-Policy"), "no-referrer")
        self.assertNotIn(b"<script>", r.body)  # no inline script
        self.assertNotIn(b"style=", r.body)
        etag = r.header("ETag")
        for none_match, status in ((etag, 304), (f'"x", W/{etag}', 304), ('"x"', 200), ("*", 304)):
            r = self.d.request("GET", "/console/", headers={"If-None-Match": none_match})
            self.assertEqual(r.status, status, none_match)
        self.assertEqual(r.header("ETag"), etag)
        self.assertEqual(r.header("Content-Security-Policy"), CONSOLE_CSP)
        for path, ctype in (("/console/js/app.js", "text/javascript; charset=utf-8"),
                            ("/console/style.css", "text/css; charset=utf-8"),
                            ("/console/icon.svg", "image/svg+xml")):
            r = self.d.request("GET", path)
            self.assertEqual((r.status, r.header("Content-Type")), (200, ctype), path)
            self.assertEqual(r.header("Content-Security-Policy"), CONSOLE_CSP)
        r = self.d.request("GET", "/console")
        self.assertEqual((r.status, r.header("Location")), (301, "/console/"))
        for path in ("/console/nope.js", "/console/js/../index.html"):
            self.assertIn(self.d.request("GET", path).status, (400, 404), path)
        # The API's answers keep the sandbox policy and no-store.
        r = self.d.request("GET", "/healthCheck")
        self.assertEqual(r.header("Content-Security-Policy"),
                         "default-src 'none'; sandbox; frame-ancestors 'none'")
        self.assertEqual(r.header("Cache-Control"), "no-store")
        # Discovery names the console; the mailed link sends a browser there, an API client not.
        self.assertIn('</console/>; rel="service"; title="console"', self.d.request("GET", "/").links())
        audit = os.path.join(self.d.dir, "data", "audit.log")
        before = open(audit).read().count('"registration_confirmed"')
        r = self.d.request("GET", "/registration/abc/confirm/def",
                           headers={"Sec-Fetch-Mode": "navigate", "Accept": "text/html"})
        self.assertEqual((r.status, r.header("Location")),
                         (303, "/console/#/registration/abc/confirm/def"))
        # The hand-over confirms nothing and is no audit event; the API's answer (404) is one.
        r = self.d.request("GET", "/registration/abc/confirm/def",
                           headers={"Sec-Fetch-Mode": "cors", "Accept": "text/html"})
        self.assertEqual(r.status, 404)
        self.assertEqual(self.d.request("GET", "/registration/abc/confirm/def").status, 404)
        deadline = time.time() + 5
        while open(audit).read().count('"registration_confirmed"') < before + 2:
            self.assertLess(time.time(), deadline, "the audit lines of the two 404s")
            time.sleep(0.05)
        time.sleep(0.3)
        self.assertEqual(open(audit).read().count('"registration_confirmed"'), before + 2)

    def test_the_login_cookie_is_set_for_the_two_paths_that_accept_it(self):
        # A browser sends the cookie to /access-tokens only if it was set for that path; the
        # cross-site refusal covers that path as well.
        for f in os.listdir(self.spool):
            os.unlink(os.path.join(self.spool, f))
        c = oc.Client(self.d, transport="tls", address="cookie@example.com")
        c.full_registration(self.spool)
        r = c.login()
        self.assertEqual(r.status, 200, r.body)
        cookies = r.all("Set-Cookie")
        self.assertEqual(len(cookies), 2, cookies)
        for cookie, path in zip(cookies, ("/account/", "/access-tokens")):
            self.assertRegex(cookie, rf"^login={re.escape(c.cookie)}; Path={path}; Max-Age=\d+; "
                                     r"HttpOnly; SameSite=Strict; Secure$")
        self.assertEqual(c.req("GET", "/access-tokens").status, 200)
        evil = c.req("POST", "/access-tokens", {"name": "x"},
                     headers={"Origin": "https://evil.example"})
        self.assertEqual(evil.status, 403, evil.body)
        out = c.req("POST", f"/account/{c.account_id}/logout", {})
        self.assertEqual(out.status, 204)
        cleared = out.all("Set-Cookie")
        self.assertEqual(len(cleared), 2, cleared)
        self.assertTrue(all(re.match(r"login=; Path=\S+; Max-Age=0;", x) for x in cleared), cleared)

    def test_console_enabled_false_removes_the_routes(self):
        d = harness.Daemon(extra_config={"console": {"enabled": False}})
        try:
            d.start()
            for path in ("/console/", "/console", "/console/js/app.js"):
                self.assertEqual(d.request("GET", path).status, 404, path)
            self.assertFalse(any("console" in l for l in d.request("GET", "/").links()))
            # The mailed link stays the API's for a browser too.
            r = d.request("GET", "/registration/abc/confirm/def",
                          headers={"Sec-Fetch-Mode": "navigate", "Accept": "text/html"})
            self.assertEqual(r.status, 404)
        finally:
            d.stop()
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
