"""A small W3C WebDriver client (Python standard library only) driving Debian's headless Chromium
through chromedriver, for tests of what a browser does with the daemon's answers.

    with Browser() as b:
        b.get("https://127.0.0.1:8443/healthCheck")
        b.add_cookie({"name": "login", "value": "...", "path": "/account/", "httpOnly": True})
        title = b.title()

The browser accepts the test daemon's self-signed certificate, keeps no profile between runs
(a fresh --user-data-dir) and makes no background connections (this machine has no network).
"""

import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

CHROMIUM = os.environ.get("OTD_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("OTD_CHROMEDRIVER", "/usr/bin/chromedriver")


class WebDriverError(AssertionError):
    pass


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available():
    """Whether chromium and chromedriver are installed (scripts/install-deps installs them)."""
    return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)


class Browser:
    def __init__(self, downloads=None):
        if not available():
            raise WebDriverError(f"{CHROMIUM} or {CHROMEDRIVER} missing: run scripts/install-deps")
        self.dir = tempfile.mkdtemp(prefix="otd-browser-")
        self.downloads = downloads or os.path.join(self.dir, "downloads")
        os.makedirs(self.downloads, exist_ok=True)
        self.port = _free_port()
        self.log = open(os.path.join(self.dir, "chromedriver.log"), "wb")
        self.driver = subprocess.Popen([CHROMEDRIVER, f"--port={self.port}"], stdout=self.log,
                                       stderr=subprocess.STDOUT)
        self.session = None
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if self._call("GET", "/status").get("ready"):
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            self.close()
            raise WebDriverError("chromedriver did not start")
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage", "--disable-extensions",
                f"--user-data-dir={os.path.join(self.dir, 'profile')}", "--window-size=1280,900"]
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": True,
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": CHROMIUM, "args": args,
                "prefs": {"download.default_directory": self.downloads,
                          "download.prompt_for_download": False}},
        }}}
        try:
            self.session = self._call("POST", "/session", caps)["sessionId"]
        except Exception:
            self.close()
            raise

    # --- protocol ----------------------------------------------------------------------------
    def _call(self, method, path, body=None, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = None if body is None else json.dumps(body)
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            doc = json.loads(r.read() or b"{}")
        finally:
            conn.close()
        value = doc.get("value", doc)
        if r.status >= 400:
            raise WebDriverError(f"{method} {path}: {r.status} {value}")
        return value

    def _s(self, method, path, body=None):
        return self._call(method, f"/session/{self.session}{path}", body)

    # --- commands ----------------------------------------------------------------------------
    def get(self, url):
        self._s("POST", "/url", {"url": url})

    def url(self):
        return self._s("GET", "/url")

    def title(self):
        return self._s("GET", "/title")

    def execute(self, script, *args):
        return self._s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def execute_async(self, script, *args):
        return self._s("POST", "/execute/async", {"script": script, "args": list(args)})

    def add_cookie(self, cookie):
        self._s("POST", "/cookie", {"cookie": cookie})

    def cookies(self):
        return self._s("GET", "/cookie")

    def browser_log(self):
        """Console messages and errors (CSP violations among them) since the last call."""
        return self._s("POST", "/se/log", {"type": "browser"})

    def screenshot(self, path):
        png = base64.b64decode(self._s("GET", "/screenshot"))
        with open(path, "wb") as f:
            f.write(png)

    def full_screenshot(self, path):
        """The whole page, not only the window (DevTools Page.captureScreenshot)."""
        size = self.cdp("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        png = self.cdp("Page.captureScreenshot",
                       {"format": "png", "captureBeyondViewport": True, "clip": clip})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(png))

    def cdp(self, cmd, params=None):
        """A Chrome DevTools Protocol command through chromedriver."""
        return self._s("POST", "/goog/cdp/execute", {"cmd": cmd, "params": params or {}})

    def source(self):
        return self._s("GET", "/source")

    def text(self, css):
        """The visible text of the first element matching `css`."""
        return self._s("GET", f"/element/{self.find(css)}/text")

    def present(self, css):
        return bool(self.execute("return document.querySelector(arguments[0]) !== null;", css))

    def clear(self, css):
        self._s("POST", f"/element/{self.find(css)}/clear", {})

    def find(self, css):
        el = self._s("POST", "/element", {"using": "css selector", "value": css})
        return next(iter(el.values()))

    def click(self, css):
        self._s("POST", f"/element/{self.find(css)}/click", {})

    def type(self, css, text):
        self._s("POST", f"/element/{self.find(css)}/value", {"text": text})

    def wait_for(self, predicate, timeout=10, interval=0.1, what="condition"):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise WebDriverError(f"timed out waiting for {what} (last: {last!r})")

    def close(self):
        if self.session:
            try:
                self._call("DELETE", f"/session/{self.session}", timeout=20)
            except Exception:
                pass
            self.session = None
        if self.driver.poll() is None:
            self.driver.terminate()
            try:
                self.driver.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.driver.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
