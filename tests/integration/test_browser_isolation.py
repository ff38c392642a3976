"""Issue 14 item 1, in a real browser: a public token holding a page with a script, opened over TLS
by a browser that holds a victim's `login` cookie, must neither read `document.cookie` nor make a
same-origin request (the hostile review minted an access code for the victim that way).

The page, were its script to run, would record what it could do in document.title and POST
/account/{victim}/accessCode with the victim's cookie. The test opens it in headless Chromium
(chromedriver, tests/integration/webdriver.py) and checks that nothing ran and nothing was minted.
Negative control: the same page from a test-only static server without the daemon's headers does
run (so the probe would have seen it); a second control serves it with only the daemon's
Content-Security-Policy, inline: the script does not run either (the policy alone holds).
"""

import http.server
import os
import threading
import time
import unittest

import harness
import opentoken_client as oc
import webdriver

PROBE = """<!DOCTYPE html><html><head><title>quiet</title></head><body><p>probe</p>
<script>
document.title = "ran";
var r = {};
try { r.cookie = document.cookie; } catch (e) { r.cookie = "blocked:" + e.name; }
fetch("/account/VICTIM/accessCode", {method: "POST", credentials: "include"})
  .then(function (x) { return x.status; }, function (e) { return "error"; })
  .then(function (s) { r.fetch = s; document.title = "ran:" + JSON.stringify(r); });
</script></body></html>
"""

SVG_PROBE = """<svg xmlns="http://www.w3.org/2000/svg"><script>
document.title = "ran";
fetch("/account/VICTIM/accessCode", {method: "POST", credentials: "include"});
</script><text y="20">probe</text></svg>
"""


class StaticServer:
    """Serves one body at every path, with the given headers (test-only negative control)."""

    def __init__(self, body, content_type, headers=None):
        body_bytes = body.encode()
        extra = headers or {}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body_bytes)))
                self.end_headers()
                self.wfile.write(body_bytes)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/page"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class BrowserIsolationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon()
        cls.d.start()
        cls.spool = os.path.join(cls.d.dir, "mail")
        cls.victim = oc.logged_in_user(cls.d, cls.spool, "victim@example.com")
        cls.attacker = oc.logged_in_user(cls.d, cls.spool, "attacker@example.com")
        r = cls.attacker.req("POST", f"/account/{cls.attacker.account_id}/accessCode")
        assert r.status == 201, r.body
        pair = r.json()
        cls.signer = oc.Signer(cls.d, pair["code"], pair["secret"], transport="tls")
        cls.browser = webdriver.Browser()

    @classmethod
    def tearDownClass(cls):
        cls.browser.close()
        cls.d.stop()
        cls.d.cleanup()

    def origin(self):
        return f"https://127.0.0.1:{self.d.port}"

    def public_token(self, body, content_type):
        target = f"/account/{self.attacker.account_id}/token?public=true"
        r = self.signer.request("POST", target, body=body.encode(), content_type=content_type)
        self.assertEqual(r.status, 201, r.body)
        return self.origin() + r.header("Location")

    def victim_codes(self):
        r = self.victim.req("GET", f"/account/{self.victim.account_id}/accessCode")
        self.assertEqual(r.status, 200, r.body)
        return r.json()["count"]

    def arm_browser(self):
        """The browser holds the victim's session as a real login would leave it, plus a readable
        cookie that a script able to read document.cookie would see."""
        b = self.browser
        b.get(self.origin() + "/healthCheck")
        b.add_cookie({"name": "login", "value": self.victim.cookie, "path": "/account/",
                      "httpOnly": True, "secure": True, "sameSite": "Strict"})
        b.add_cookie({"name": "probe", "value": "readable", "path": "/", "secure": True,
                      "sameSite": "Strict"})

    def assert_script_never_ran(self, url):
        before = self.victim_codes()
        self.arm_browser()
        self.browser.get(url)
        time.sleep(2.0)  # the probe's fetch would have completed long before
        title = self.browser.title()
        self.assertFalse(title.startswith("ran"), f"the stored script ran: {title!r}")
        self.assertEqual(self.victim_codes(), before, "an access code was minted for the victim")

    def test_html_token_does_not_run_in_the_vault_origin(self):
        page = PROBE.replace("VICTIM", self.victim.account_id)
        url = self.public_token(page, "text/html")
        self.assert_script_never_ran(url)
        # Downloaded, not rendered: the browser is still on the page it was on.
        self.assertTrue(self.browser.url().endswith("/healthCheck"), self.browser.url())

    def test_svg_and_xhtml_tokens_do_not_run(self):
        svg = SVG_PROBE.replace("VICTIM", self.victim.account_id)
        self.assert_script_never_ran(self.public_token(svg, "image/svg+xml"))
        xhtml = PROBE.replace("VICTIM", self.victim.account_id).replace(
            "<!DOCTYPE html><html>", '<html xmlns="http://www.w3.org/1999/xhtml">')
        self.assert_script_never_ran(self.public_token(xhtml, "application/xhtml+xml"))

    def test_negative_control_the_probe_runs_without_the_headers(self):
        page = PROBE.replace("VICTIM", self.victim.account_id)
        server = StaticServer(page, "text/html")
        try:
            self.browser.get(server.url)
            title = self.browser.wait_for(lambda: self.browser.title().startswith("ran:")
                                          and self.browser.title(), what="the probe to run")
            self.assertIn('"cookie"', title)
        finally:
            server.close()

    def test_control_the_policy_alone_stops_the_script(self):
        page = PROBE.replace("VICTIM", self.victim.account_id)
        r = self.d.request("GET", "/healthCheck")
        policy = r.header("Content-Security-Policy")
        self.assertEqual(policy, "default-src 'none'; sandbox; frame-ancestors 'none'")
        server = StaticServer(page, "text/html", {"Content-Security-Policy": policy})
        try:
            self.browser.get(server.url)
            time.sleep(1.5)
            self.assertEqual(self.browser.title(), "quiet")
        finally:
            server.close()


if __name__ == "__main__":
    unittest.main()
