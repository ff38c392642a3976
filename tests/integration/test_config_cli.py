"""Issue 18 parts 3 and 4: --version on every binary; where the config comes from (--config FILE,
--config=FILE, OPENTOKEND_CONFIG, /etc/opentokend/opentokend.json); `opentoken-admin check-config`
(0 valid, 78 invalid, the message naming the key, duplicate keys included); schema/config.json
accepts the configs scripts/init-state (scripts/serve) and the test harness write."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import BIN, Daemon

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")
ADMIN = os.path.join(BIN, "opentoken-admin")
DAEMON = os.path.join(BIN, "opentokend")
DEFAULT_CONFIG = "/etc/opentokend/opentokend.json"


def project_version():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        return re.search(r"project\(opentokend VERSION (\S+)", f.read()).group(1)


def run(argv, env=None, timeout=60):
    e = dict(os.environ)
    e.pop("OPENTOKEND_CONFIG", None)
    e.update(env or {})
    return subprocess.run(argv, env=e, capture_output=True, text=True, timeout=timeout)


# A stdlib-only validator for the draft-7 keywords schema/config.json uses: an independent
# reading of the schema file as an editor sees it (the daemon checks it with valijson).
def validate(schema, doc, where="config"):
    t = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool}
    if t == "integer":
        if not isinstance(doc, int) or isinstance(doc, bool):
            return f"{where}: not an integer"
    elif t in types and not isinstance(doc, types[t]):
        return f"{where}: not a {t}"
    if "enum" in schema and doc not in schema["enum"]:
        return f"{where}: not one of {schema['enum']}"
    if t == "integer" and not schema.get("minimum", doc) <= doc <= schema.get("maximum", doc):
        return f"{where}: out of range"
    if t == "string":
        if len(doc) < schema.get("minLength", 0) or len(doc) > schema.get("maxLength", len(doc)):
            return f"{where}: bad length"
        if "pattern" in schema and not re.search(schema["pattern"], doc):
            return f"{where}: does not match {schema['pattern']}"
    if t == "object":
        props = schema.get("properties", {})
        for k in schema.get("required", []):
            if k not in doc:
                return f"{where}.{k}: required"
        if len(doc) < schema.get("minProperties", 0):
            return f"{where}: too few members"
        for k, v in doc.items():
            if k not in props:
                if schema.get("additionalProperties", True) is False:
                    return f"{where}.{k}: unknown"
                continue
            err = validate(props[k], v, f"{where}.{k}" if where != "config" else k)
            if err:
                return err
    if t == "array":
        if len(doc) < schema.get("minItems", 0):
            return f"{where}: too few items"
        if schema.get("uniqueItems") and len(set(map(json.dumps, doc))) != len(doc):
            return f"{where}: items not unique"
        for i, v in enumerate(doc):
            err = validate(schema.get("items", {}), v, f"{where}[{i}]")
            if err:
                return err
    return None


def load_schema():
    with open(os.path.join(ROOT, "schema/config.json")) as f:
        return json.load(f)


class VersionTest(unittest.TestCase):
    def test_every_binary_prints_version_and_build(self):
        version = project_version()
        tools = [("opentokend", DAEMON), ("opentoken-admin", ADMIN)]
        loadgen = os.path.join(BIN, "otd-loadgen")
        if os.path.exists(loadgen):
            tools.append(("otd-loadgen", loadgen))
        for name, path in tools:
            with self.subTest(name):
                r = run([path, "--version"])
                self.assertEqual(r.returncode, 0, r.stderr)
                lines = r.stdout.splitlines()
                self.assertRegex(lines[0], r"^" + re.escape(f"{name} {version} (git ") + r"\S+\)$")
                self.assertRegex(lines[1], r"^build: \w+.*, (GNU|Clang) \d+")
                for lib in ("openssl", "lmdb", "libpq", "p11-kit"):
                    self.assertRegex(lines[2], rf"\b{lib} \d+\.\d+")
                self.assertEqual(r.stderr, "")

    def test_startup_log_line_names_the_version(self):
        d = Daemon(init_keys=True)
        try:
            d.start()
            starting = [json.loads(l) for l in d.read_log().splitlines()
                        if '"event":"starting"' in l]
            self.assertEqual(len(starting), 1, d.read_log())
            self.assertEqual(starting[0]["version"], project_version())
            self.assertTrue(starting[0]["git"])
            self.assertTrue(starting[0]["build_type"])
            self.assertEqual(d.stop(), 0)
        finally:
            d.cleanup()


    def test_backup_manifest_names_the_version(self):
        d = Daemon()
        try:
            out = os.path.join(d.dir, "backup")
            d.admin("backup", out, check=True)
            with open(os.path.join(out, "manifest.json")) as f:
                manifest = json.load(f)
            self.assertEqual(manifest["opentokend_version"], project_version())
            self.assertTrue(manifest["opentokend_git"])
        finally:
            d.cleanup()


class ConfigPathTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def setUp(self):
        self.d.kill()

    def bad_config(self):
        path = os.path.join(self.d.dir, "bad.json")
        with open(path, "w") as f:
            f.write('{"listen": {}}')
        return path

    def start_with(self, argv, env):
        """Starts opentokend with argv/env (no --config from the harness); True when ready."""
        self.d.argv = lambda: [DAEMON, *argv] + (["--allow-root"] if os.geteuid() == 0 else [])
        e = {k: v for k, v in self.d.env().items() if k != "OPENTOKEND_CONFIG"}
        e.update(env)
        real_env = self.d.env
        self.d.env = lambda: e
        try:
            self.d.start()
        finally:
            self.d.env = real_env
        self.assertEqual(self.d.stop(), 0)

    def test_config_equals_file(self):
        r = run([ADMIN, "check-config", "--config=" + self.d.config_path], self.d.env())
        self.assertEqual((r.returncode, r.stdout.strip()), (0, self.d.config_path + ": valid"),
                         r.stderr)
        self.start_with(["--config=" + self.d.config_path], {})

    def test_environment_variable_and_precedence(self):
        r = run([ADMIN, "check-config"], {"OPENTOKEND_CONFIG": self.d.config_path})
        self.assertEqual((r.returncode, r.stdout.strip()), (0, self.d.config_path + ": valid"),
                         r.stderr)
        self.start_with([], {"OPENTOKEND_CONFIG": self.d.config_path})
        # --config wins over the environment, in both binaries.
        bad = self.bad_config()
        r = run([ADMIN, "check-config", "--config", self.d.config_path],
                {"OPENTOKEND_CONFIG": bad})
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run([ADMIN, "check-config", "--config", bad],
                {"OPENTOKEND_CONFIG": self.d.config_path})
        self.assertEqual(r.returncode, 78, r.stderr)
        self.start_with(["--config", self.d.config_path], {"OPENTOKEND_CONFIG": bad})
        r = run([DAEMON], {"OPENTOKEND_CONFIG": bad})
        self.assertEqual(r.returncode, 78, r.stdout + r.stderr)
        self.assertIn("listen:", r.stderr)

    def test_default_path(self):
        if os.path.exists(DEFAULT_CONFIG):
            self.skipTest(DEFAULT_CONFIG + " exists on this machine")
        for argv in ([ADMIN, "check-config"], [DAEMON]):
            r = run(argv)
            self.assertEqual(r.returncode, 78, r.stdout + r.stderr)
            self.assertIn("cannot read " + DEFAULT_CONFIG, r.stderr)
        # An empty OPENTOKEND_CONFIG counts as unset.
        r = run([ADMIN, "check-config"], {"OPENTOKEND_CONFIG": ""})
        self.assertIn("cannot read " + DEFAULT_CONFIG, r.stderr)


class CheckConfigTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="otd-cfg-")
        self.good = {
            "listen": {"unix": {"path": os.path.join(self.dir, "s.sock")}},
            "storage": {"path": os.path.join(self.dir, "data")},
            "hsm": {"module": "/usr/lib/softhsm/libsofthsm2.so", "token_label": "x",
                    "pin_file": "/nonexistent/pin"},
            "mail": {"spool_dir": os.path.join(self.dir, "mail")},
        }

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def check(self, text):
        path = os.path.join(self.dir, "c.json")
        with open(path, "w") as f:
            f.write(text)
        return run([ADMIN, "check-config", "--config", path])

    def test_valid_config_without_token_or_store(self):
        r = self.check(json.dumps(self.good))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "data")))  # nothing opened

    def test_invalid_configs_name_the_key(self):
        port = dict(self.good, listen={"tls": {"port": 70000, "certificate": "/c",
                                               "private_key": "/k"}})
        unknown = dict(self.good, limits={"max_conections": 3})
        cases = [
            (json.dumps(port), "listen.tls.port: must be an integer between 1 and 65535"),
            (json.dumps(unknown), "limits.max_conections: unknown configuration key"),
            (json.dumps(self.good)[:-1] + ', "workers": 1, "workers": 2}',
             "duplicate key: workers"),
            (json.dumps(self.good).replace('"token_label": "x"',
                                           '"token_label": "x", "token_label": "y"'),
             "duplicate key: hsm.token_label"),
            ('{"listen": ', "malformed JSON"),
        ]
        for text, message in cases:
            with self.subTest(message):
                r = self.check(text)
                self.assertEqual(r.returncode, 78, r.stdout + r.stderr)
                self.assertIn(message, r.stderr)
                self.assertEqual(r.stdout, "")

    def test_daemon_refuses_a_duplicate_key_with_78(self):
        text = json.dumps(self.good).replace('"token_label": "x"',
                                             '"token_label": "x", "token_label": "y"')
        path = os.path.join(self.dir, "c.json")
        with open(path, "w") as f:
            f.write(text)
        r = run([DAEMON, "--config", path])
        self.assertEqual(r.returncode, 78, r.stdout + r.stderr)
        self.assertIn("duplicate key: hsm.token_label", r.stderr)


class SchemaTest(unittest.TestCase):
    def test_schema_accepts_the_harness_and_serve_configs(self):
        schema = load_schema()
        self.assertEqual(schema["$schema"], "http://json-schema.org/draft-07/schema#")
        d = Daemon(init_keys=False)
        state = tempfile.mkdtemp(prefix="otd-serve-")
        try:
            # scripts/init-state writes the config scripts/serve runs with.
            subprocess.run([os.path.join(ROOT, "scripts/init-state"), state, "8443"], check=True,
                           capture_output=True, timeout=120,
                           env=dict(os.environ, OTD_BUILD_DIR=os.path.dirname(BIN)))
            with open(os.path.join(state, "opentokend.json")) as f:
                served = json.load(f)
            configs = {"harness": d.config(),
                       "harness+metrics": dict(d.config(), metrics={"enabled": True}),
                       "init-state": served}
            for name, c in configs.items():
                with self.subTest(name):
                    self.assertIsNone(validate(schema, c))
            r = run([ADMIN, "check-config", "--config", os.path.join(state, "opentokend.json")])
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            d.cleanup()
            shutil.rmtree(state, ignore_errors=True)

    def test_schema_rejects_what_the_loader_rejects(self):
        schema = load_schema()
        base = Daemon(init_keys=False)
        try:
            good = base.config()
        finally:
            base.cleanup()
        self.assertIsNone(validate(schema, good))
        bad = [
            ("listen.tls.port", lambda c: c["listen"]["tls"].update(port=0)),
            ("limits.max_conections", lambda c: c.update(limits={"max_conections": 1})),
            ("log_level", lambda c: c.update(log_level="loud")),
            ("hsm.module", lambda c: c["hsm"].pop("module")),
            ("listen.unix.mode", lambda c: c["listen"]["unix"].update(mode="rw")),
        ]
        for key, mutate in bad:
            with self.subTest(key):
                c = json.loads(json.dumps(good))
                mutate(c)
                err = validate(schema, c)
                self.assertIsNotNone(err)
                self.assertTrue(err.startswith(key), err)


if __name__ == "__main__":
    unittest.main()
