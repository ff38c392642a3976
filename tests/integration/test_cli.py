"""Black-box tests of the `opentoken` client CLI (clients/cpp, issue 17): build/bin/opentoken run as
a user would, against the real daemon, over the Unix socket and over TLS. The whole journey
(register -> confirm -> login -> access code -> tokenize -> detokenize -> delete), access tokens,
sign/request, --format json, the documented exit codes, and secrets never on the command line."""

import base64
import json
import os
import pty
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import unittest

import harness
import opentoken_client as oc

CLI = os.path.join(harness.BIN, "opentoken")
PASSWORD = "correct horse battery staple"


class CliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon()
        cls.d.start()
        cls.spool = os.path.join(cls.d.dir, "mail")
        cls.home = tempfile.mkdtemp(prefix="otd-cli-home-")
        cls.pw_file = os.path.join(cls.home, "pw")
        with open(os.open(cls.pw_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(PASSWORD + "\n")
        cls.argv_seen = []
        cls.users = {}

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.d.cleanup()
        shutil.rmtree(cls.home, ignore_errors=True)

    # --- helpers -----------------------------------------------------------------------------
    def env(self, profile="sock", **extra):
        e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.home,
             "OPENTOKEN_PROFILE": profile}
        e.update(extra)
        return e

    def endpoint(self, transport):
        if transport == "unix":
            return ["--socket", self.d.sock]
        return ["--url", f"https://127.0.0.1:{self.d.port}", "--cacert", self.d.cert]

    def cli(self, *args, transport="unix", profile=None, stdin=b"", env=None, pass_fds=(),
            expect=0):
        argv = [CLI, *self.endpoint(transport), *args]
        self.argv_seen.append(argv)
        r = subprocess.run(argv, input=stdin, capture_output=True, timeout=30, pass_fds=pass_fds,
                           env=env or self.env(profile or transport))
        if expect is not None:
            self.assertEqual(r.returncode, expect,
                             f"{args}: exit {r.returncode}\nstdout: {r.stdout[:2000]!r}\n"
                             f"stderr: {r.stderr.decode(errors='replace')}")
        return r

    def cli_json(self, *args, **kw):
        r = self.cli("--format", "json", *args, **kw)
        return json.loads(r.stdout)

    def journey_account(self, transport, address):
        """register -> confirm -> login, as the README does; returns (account id, TOTP key)."""
        for f in os.listdir(self.spool):
            os.unlink(os.path.join(self.spool, f))
        reg = self.cli_json("register", address, "--password-file", self.pw_file,
                            transport=transport)
        self.assertRegex(reg["registration"], r"^/registration/[A-Za-z0-9_-]+$")
        key = bytes.fromhex(reg["totp"]["keyHex"])
        self.assertTrue(reg["totp"]["keyUri"].startswith("otpauth://totp/"))
        mails = oc.wait_for_mail(self.spool)
        if transport == "unix":
            # The spool directory (scripts/serve's var/mail) is enough.
            conf = self.cli_json("confirm", "--mail", self.spool, transport=transport)
        else:
            # The bare code: the pending registration was kept in the profile's state file.
            code = re.search(r"/confirm/([A-Za-z0-9_-]+)", mails[-1][2]).group(1)
            conf = self.cli_json("confirm", code, transport=transport)
        account = conf["accountId"]
        # The TOTP code on a file descriptor, the password from a file.
        rfd, wfd = os.pipe()
        os.write(wfd, (oc.totp(key, time.time()) + "\n").encode())
        os.close(wfd)
        try:
            login = self.cli_json("login", "--password-file", self.pw_file, "--totp-fd", str(rfd),
                                  transport=transport, pass_fds=(rfd,))
        finally:
            os.close(rfd)
        self.assertEqual(login["accountId"], account)
        session = login["session"]
        self.assertEqual(stat.S_IMODE(os.stat(session).st_mode), 0o600)
        with open(session) as f:
            self.assertIn("cookie", json.load(f))
        return account, key

    # --- the journey -------------------------------------------------------------------------
    def journey(self, transport, address):
        account, _ = self.journey_account(transport, address)
        who = self.cli_json("whoami", transport=transport)
        self.assertEqual(who, {"accountId": account, "email": address})
        self.assertEqual(self.cli("whoami", transport=transport).stdout.decode(),
                         f"{address} (account {account})\n")

        saved = self.cli_json("access-code", "create", "--description", "cli", "--save",
                              transport=transport)
        self.assertNotIn("secret", saved)
        self.assertEqual(stat.S_IMODE(os.stat(saved["saved"]).st_mode), 0o600)
        listing = self.cli_json("access-code", "list", transport=transport)
        self.assertIn(saved["code"], [i["code"] for i in listing["items"]])

        payload = bytes(range(256)) * 3 + b"\r\n\x00end"
        r = self.cli("tokenize", "--content-type", "application/octet-stream",
                     transport=transport, stdin=payload)
        token_id = r.stdout.decode().strip()
        self.assertRegex(token_id, r"^[A-Za-z0-9_-]{32}$")
        self.assertEqual(r.stdout.decode(), token_id + "\n")
        out = self.cli("detokenize", token_id, transport=transport)
        self.assertEqual(out.stdout, payload)  # the exact bytes
        doc = self.cli_json("detokenize", token_id, transport=transport)
        self.assertEqual(base64.b64decode(doc["dataBase64"]), payload)
        self.assertEqual(doc["contentType"], "application/octet-stream")

        text_id = self.cli_json("tokenize", "--content-type", "text/plain", "--expires", "1h",
                                transport=transport, stdin=b"This is a test.\n")["id"]
        self.assertEqual(self.cli("detokenize", text_id, transport=transport).stdout,
                         b"This is a test.\n")
        public = self.cli("tokenize", "--public", "--content-type", "text/plain",
                          transport=transport, stdin=b"public\n").stdout.decode().strip()
        unsigned = self.d.request("GET", f"/account/{account}/token/{public}")
        self.assertEqual((unsigned.status, unsigned.body), (200, b"public\n"))

        self.cli("delete", token_id, transport=transport)
        gone = self.cli("detokenize", token_id, transport=transport, expect=1)
        self.assertEqual(gone.stdout, b"")
        self.assertIn(b"404", gone.stderr)
        return account

    def test_journey_over_the_unix_socket(self):
        account = self.journey("unix", "cli-sock@example.com")
        self.more_over_the_socket(account)

    def test_journey_over_tls(self):
        self.journey("tls", "cli-tls@example.com")
        # The TLS peer is verified: another CA is a transport failure (3).
        other = os.path.join(self.home, "other.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=other",
                        "-keyout", os.path.join(self.home, "other.key"), "-out", other],
                       check=True, capture_output=True)
        r = subprocess.run([CLI, "--url", f"https://127.0.0.1:{self.d.port}", "--cacert", other,
                            "whoami"], capture_output=True, env=self.env("tls"), timeout=30)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn(b"TLS handshake", r.stderr)

    def more_over_the_socket(self, account):
        # An access code whose secret comes from a descriptor, and a wrong secret.
        pair = self.cli_json("access-code", "create", transport="unix")
        self.assertEqual(set(pair), {"code", "secret"})
        rfd, wfd = os.pipe()
        os.write(wfd, pair["secret"].encode() + b"\n")
        os.close(wfd)
        tid = self.cli("tokenize", "--access-code", pair["code"], "--secret-fd", str(rfd),
                       stdin=b"fd", pass_fds=(rfd,)).stdout.decode().strip()
        os.close(rfd)
        env = self.env("unix", OPENTOKEN_ACCESS_CODE=pair["code"], OPENTOKEN_SECRET=pair["secret"])
        self.assertEqual(self.cli("detokenize", tid, env=env).stdout, b"fd")
        wrong = self.env("unix", OPENTOKEN_ACCESS_CODE=pair["code"],
                         OPENTOKEN_SECRET="x" * 32)
        r = self.cli("detokenize", tid, env=wrong, expect=1)
        self.assertEqual(r.stdout, b"")
        msg = r.stderr.decode()
        self.assertIn("the server refused (401", msg)
        self.assertIn("check the access code and its secret", msg)
        self.assertNotIn("x" * 32, msg)
        r = self.cli("--format", "json", "tokenize", env=wrong, stdin=b"y", expect=1)
        self.assertEqual(json.loads(r.stdout)["error"]["status"], 401)

        # sign: headers a curl user sends; request: a signed curl.
        data = os.path.join(self.home, "data.txt")
        with open(data, "wb") as f:
            f.write(b"signed by hand\n")
        target = f"/account/{account}/token"
        r = self.cli("sign", "POST", target, "--content-type", "text/plain", "--data", "@" + data,
                     env=env)
        headers = dict(line.split(": ", 1) for line in r.stdout.decode().splitlines())
        self.assertEqual(set(headers), {"Host", "Content-Type", "X-OpenToken-Date",
                                        "Authorization"})
        sent = self.d.request("POST", target, body=b"signed by hand\n", headers=headers)
        self.assertEqual(sent.status, 201, sent.body)
        loc = sent.header("Location")
        r = self.cli("request", "GET", loc, env=env)
        self.assertEqual(r.stdout, b"signed by hand\n")
        r = self.cli("request", "GET", loc + "x", "--include", env=env, expect=1)
        self.assertTrue(r.stdout.startswith(b"HTTP/1.1 404\n"), r.stdout)

        # Revoking the code: it no longer signs.
        self.cli("access-code", "revoke", pair["code"], transport="unix")
        self.cli("detokenize", tid, env=env, expect=1)

        # Access tokens with the session, then one used as the bearer.
        t = self.cli_json("access-token", "create", "--name", "ci", "--scope", "account.read",
                          "--scope", "accessTokens.read", transport="unix")
        self.assertTrue(t["token"].startswith("otk_"))
        self.assertIn(t["id"], [i["id"] for i in
                                self.cli_json("access-token", "list", transport="unix")["items"]])
        self.assertEqual(self.cli_json("access-token", "get", t["id"], transport="unix")["name"],
                         "ci")
        upd = self.cli_json("access-token", "update", t["id"], "--name", "renamed",
                            transport="unix")
        self.assertEqual(upd["name"], "renamed")
        bearer_env = self.env("bearer-only", OPENTOKEN_BEARER=t["token"],
                              OPENTOKEN_ACCOUNT=account)
        who = self.cli_json("whoami", env=bearer_env)
        self.assertEqual(who["accountId"], account)
        self.cli("access-token", "delete", t["id"], transport="unix")
        self.cli("access-token", "get", t["id"], transport="unix", expect=1)
        self.cli("whoami", env=bearer_env, expect=1)

        # The e-mail flow: a token is mailed to the account's address.
        self.cli("access-token", "email-request", "cli-sock@example.com", transport="unix")
        deadline = time.time() + 10
        while time.time() < deadline:
            mails = [m for m in oc.read_mails(self.spool) if m[1]["To"] == "cli-sock@example.com"
                     and "otk_" in m[2]]
            if mails:
                break
            time.sleep(0.1)
        self.assertTrue(mails, "no e-mailed access token")

        # Logout: the session is gone here and on the server.
        self.cli("logout", transport="unix")
        r = self.cli("whoami", transport="unix", expect=1)
        self.assertIn(b"opentoken login", r.stderr)

    # --- exit codes and secrets on the command line --------------------------------------------
    def test_usage_transport_and_secret_arguments(self):
        for args in (["frobnicate"], ["access-code"], ["tokenize", "--nope"], ["detokenize"]):
            r = self.cli(*args, expect=2)
            self.assertTrue(r.stderr.startswith(b"opentoken"), r.stderr)
        for opt in ("--password", "--secret", "--totp", "--bearer"):
            r = self.cli("login", opt, "hunter2hunter2", expect=2)
            self.assertIn(b"never taken on the command line", r.stderr)
            self.assertNotIn(b"hunter2", r.stderr + r.stdout)
            r = self.cli("tokenize", opt + "=hunter2hunter2", expect=2)
            self.assertNotIn(b"hunter2", r.stderr + r.stdout)
        r = subprocess.run([CLI, "--socket", os.path.join(self.home, "no.sock"), "whoami",
                            "--account", "A" * 32], capture_output=True, env=self.env("x"),
                           timeout=30)
        self.assertEqual(r.returncode, 3, r.stderr)
        # A daemon that accepts and never answers: the deadline, then 3.
        silent = os.path.join(self.home, "silent.sock")
        with socket.socket(socket.AF_UNIX) as srv:
            srv.bind(silent)
            srv.listen(4)
            started = time.time()
            r = subprocess.run([CLI, "--socket", silent, "--timeout", "1", "whoami", "--account",
                                "A" * 32], capture_output=True, env=self.env("x"), timeout=30)
            self.assertEqual(r.returncode, 3, r.stderr)
            self.assertIn(b"timed out", r.stderr)
            self.assertLess(time.time() - started, 10)
        r = subprocess.run([CLI, "whoami"], capture_output=True, env=self.env("nothing"),
                           timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"--socket", r.stderr)
        # A profile of the config file (~/.config/opentoken/config.json) says where the daemon is.
        config_home = os.path.join(self.home, "cfg-home")
        os.makedirs(os.path.join(config_home, ".config", "opentoken"))
        with open(os.path.join(config_home, ".config", "opentoken", "config.json"), "w") as f:
            json.dump({"profile": "mine", "profiles": {"mine": {"socket": self.d.sock,
                                                                "timeout": 20}}}, f)
        r = subprocess.run([CLI, "whoami", "--account", "A" * 32], capture_output=True, timeout=30,
                           env={"PATH": os.environ.get("PATH", "/usr/bin"), "HOME": config_home})
        self.assertEqual(r.returncode, 1, r.stderr)  # it reached the daemon, which said 401
        self.assertIn(b"401", r.stderr)
        # No session: the server says no (1).
        r = self.cli("whoami", "--account", "A" * 32, profile="nobody", expect=1)
        self.assertIn(b"401", r.stderr)
        # A wrong password: 1 and a readable message.
        r = self.cli("login", "--account", "A" * 32, profile="nobody", expect=1,
                     env=self.env("nobody", OPENTOKEN_PASSWORD="wrong", OPENTOKEN_TOTP="000000"))
        self.assertIn(b"wrong password or TOTP code", r.stderr)

    def test_help_version_and_completions(self):
        r = self.cli("--help")
        self.assertIn(b"Exit codes: 0 ok; 1", r.stdout)
        for cmd in ("register", "confirm", "login", "logout", "whoami", "access-code",
                    "access-token", "tokenize", "detokenize", "delete", "sign", "request"):
            r = self.cli(cmd, "--help")
            self.assertIn(f"opentoken {cmd}".encode(), r.stdout)
        self.assertRegex(self.cli("--version").stdout.decode(), r"^opentoken \d+\.\d+\.\d+")
        completion = os.path.join(harness.SOURCE, "clients", "cpp", "completion")
        bash = subprocess.run(["bash", "-c", f"source {completion}/opentoken.bash && "
                               "COMP_WORDS=(opentoken access-c); COMP_CWORD=1; _opentoken && "
                               "echo ${COMPREPLY[@]}"], capture_output=True, timeout=10)
        self.assertEqual(bash.stdout.decode().split(), ["access-code"])
        with open(os.path.join(completion, "_opentoken")) as f:
            self.assertTrue(f.read().startswith("#compdef opentoken"))

    def test_prompts_do_not_echo_the_password(self):
        typed = "typed on the terminal 42"
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(CLI, [CLI, "--socket", self.d.sock, "register", "cli-pty@example.com"],
                      self.env("pty"))
        out = b""
        answers = [b"Password: ", b"(again): "]
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if answers and out.endswith(answers[0]):
                answers.pop(0)
                os.write(fd, typed.encode() + b"\n")
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, out)
        self.assertEqual(answers, [])
        self.assertIn(b"Registered cli-pty@example.com", out)
        self.assertIn("\u2588".encode(), out)  # the QR code, in half blocks
        self.assertNotIn(typed.encode(), out)

    @classmethod
    def argv_never_held_a_secret(cls):
        return all(PASSWORD not in " ".join(a) for a in cls.argv_seen)

    def test_zz_no_argv_held_the_password(self):
        self.assertTrue(self.argv_never_held_a_secret())


if __name__ == "__main__":
    unittest.main()
