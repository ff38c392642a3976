"""Black-box harness: runs the real opentokend against a fresh SoftHSM2 token and LMDB dir.

Every Daemon gets its own temp state dir (own softhsm2.conf via SOFTHSM2_CONF, token, PIN, TLS
pair, config) and is stopped with SIGTERM at the end. Clients talk over the Unix socket and TLS
with the Python standard library only.
"""

import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

BIN = os.environ.get("OTD_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build/bin"))
MODULE = os.environ.get("OTD_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
SOURCE = os.environ.get("OTD_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
LABEL = "otd-it"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



def names_token_object(body):
    """True when an error body names a token object (a key label such as otd-kek-v1, or the token
    label otd-it). The random "logref" is not looked at: its 12 URL-safe characters contain
    "otd-" by chance about once in 2 million replies (a CI run failed on logref "bNv0otd-6IAg")."""
    try:
        doc = json.loads(body)
    except ValueError:
        return b"otd-" in body
    if isinstance(doc, dict):
        doc = {k: v for k, v in doc.items() if k != "logref"}
    return "otd-" in json.dumps(doc)

class Daemon:
    """hsm_from: another Daemon whose SoftHSM2 token (token dir, softhsm2.conf, PIN file) this
    one shares instead of a fresh token of its own: the nodes of one vault (issue 16). The
    storage config of a node is passed as extra_config={"storage": {...}}."""

    def __init__(self, limits=None, init_keys=True, extra_config=None, hsm_from=None):
        self.dir = tempfile.mkdtemp(prefix="otd-it-")
        self.hsm_from = hsm_from
        self.limits = limits or {}
        self.extra_config = extra_config or {}
        self.proc = None
        self.log_path = os.path.join(self.dir, "daemon.log")
        self.port = free_port()
        self._make_state()
        if init_keys:
            self.admin("init", check=True)

    # --- state -------------------------------------------------------------------------------
    def _make_state(self):
        d = self.dir
        for sub in ("hsm/tokens", "tls", "data", "mail", "run"):
            os.makedirs(os.path.join(d, sub), mode=0o700, exist_ok=True)
        if self.hsm_from is not None:
            self.conf = self.hsm_from.conf
            self.pin = self.hsm_from.pin
            self.pin_file = self.hsm_from.pin_file
        else:
            self.conf = os.path.join(d, "hsm", "softhsm2.conf")
            with open(self.conf, "w") as f:
                f.write(f"directories.tokendir = {d}/hsm/tokens\nobjectstore.backend = file\n"
                        "log.level = ERROR\nslots.removable = false\n")
            self.pin = secrets.token_hex(8)
            self.pin_file = os.path.join(d, "hsm", "pin")
            with open(os.open(self.pin_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(self.pin + "\n")
            subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", LABEL,
                            "--so-pin", "12345678", "--pin", self.pin],
                           env=self.env(), check=True, stdout=subprocess.DEVNULL)
        self.cert = os.path.join(d, "tls", "cert.pem")
        self.key = os.path.join(d, "tls", "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", self.key, "-out", self.cert],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.sock = os.path.join(d, "run", "opentokend.sock")
        self.config_path = os.path.join(d, "opentokend.json")
        self.write_config()

    def config(self):
        c = {
            "listen": {
                "unix": {"path": self.sock, "mode": "0660"},
                "tls": {"address": "127.0.0.1", "port": self.port,
                        "certificate": self.cert, "private_key": self.key},
            },
            "storage": {"path": os.path.join(self.dir, "data"), "map_size_mb": 64},
            "hsm": {"module": MODULE, "token_label": LABEL, "pin_file": self.pin_file},
            "mail": {"spool_dir": os.path.join(self.dir, "mail")},
            "public_url": f"https://127.0.0.1:{self.port}",
        }
        if self.limits:
            c["limits"] = self.limits
        c.update(self.extra_config)
        return c

    def write_config(self, config=None):
        with open(self.config_path, "w") as f:
            json.dump(config if config is not None else self.config(), f)

    def env(self):
        e = dict(os.environ)
        e["SOFTHSM2_CONF"] = self.conf
        return e

    # --- processes ---------------------------------------------------------------------------
    def admin(self, *args, check=False):
        r = subprocess.run([os.path.join(BIN, "opentoken-admin"), *args, "--config", self.config_path],
                           env=self.env(), capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"opentoken-admin {args} failed ({r.returncode}): {r.stderr}")
        return r

    def argv(self):
        a = [os.path.join(BIN, "opentokend"), "--config", self.config_path]
        if os.geteuid() == 0:
            a.append("--allow-root")
        return a

    def start(self, wait=True):
        self.log_offset = len(self.read_log())
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), env=self.env(), stdout=self.log,
                                     stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.read_log()}")
            if '"event":"ready"' in self.read_log()[self.log_offset:]:
                return
            time.sleep(0.05)
        raise AssertionError("daemon not ready: " + self.read_log())

    def run_to_exit(self, timeout=30):
        """Starts the daemon expecting it to exit by itself; returns (code, log)."""
        self.start(wait=False)
        code = self.proc.wait(timeout=timeout)
        self.log.close()
        return code, self.read_log()

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout=30):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self.log.close()
        return code

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        self.kill()
        if getattr(self, "log", None) and not self.log.closed:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- clients -----------------------------------------------------------------------------
    def unix_conn(self, timeout=10):
        return UnixHTTPConnection(self.sock, timeout=timeout)

    def tls_context(self):
        ctx = ssl.create_default_context(cafile=self.cert)
        return ctx

    def tls_conn(self, timeout=10):
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                           context=self.tls_context())

    def request(self, method, path, body=None, headers=None, transport="unix"):
        conn = self.unix_conn() if transport == "unix" else self.tls_conn()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return Reply(r.status, r.getheaders(), data)
        finally:
            conn.close()

    def raw(self, data, transport="unix", timeout=5.0):
        """Sends raw bytes; returns (response bytes, closed_by_server)."""
        s = self.raw_socket(transport, timeout)
        try:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                # The server may answer and close before a large bad request is fully sent.
                pass
            return read_until_close(s, timeout)
        finally:
            s.close()

    def raw_socket(self, transport="unix", timeout=5.0):
        if transport == "unix":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.connect(self.sock)
            return s
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return self.tls_context().wrap_socket(raw, server_hostname="127.0.0.1")


def read_until_close(s, timeout):
    chunks = []
    deadline = time.time() + timeout
    closed = False
    while time.time() < deadline:
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, ssl.SSLError):
            closed = True
            break
        if not b:
            closed = True
            break
        chunks.append(b)
    return b"".join(chunks), closed


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def links(self):
        out = []
        for v in self.all("Link"):
            out.extend(split_links(v))
        return out

    def json(self):
        return json.loads(self.body)


def split_links(value):
    """Splits a Link header value (possibly several comma-separated links) into link strings."""
    parts, depth, cur = [], 0, ""
    in_quotes = False
    for ch in value:
        if ch == '"':
            in_quotes = not in_quotes
        if ch == "," and not in_quotes:
            parts.append(cur.strip())
            cur = ""
            continue
        cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def count_responses(data):
    """Number of HTTP/1.1 status lines at line starts in raw bytes."""
    return len(re.findall(rb"(?:^|\n)HTTP/1\.1 \d{3} ", data))


def status_of(response_bytes):
    """Status code of the first HTTP response in raw bytes, or None."""
    if not response_bytes.startswith(b"HTTP/1.1 "):
        return None
    return int(response_bytes[9:12])
