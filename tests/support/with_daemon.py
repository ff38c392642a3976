#!/usr/bin/env python3
"""Runs one command against a real opentokend started for it (used by the client libraries'
tests in clients/<lang>/, registered in ctest by clients/CMakeLists.txt).

    with_daemon.py [--config-json JSON] -- COMMAND [ARG...]

Starts the daemon of the build (OTD_BIN_DIR, as the black-box tests do) on a fresh SoftHSM2 token
and LMDB directory, exports where to reach it, runs COMMAND, stops the daemon, and exits with
COMMAND's exit code (the daemon's log is printed when COMMAND fails):

    OPENTOKEN_TEST_SOCKET   the daemon's Unix socket
    OPENTOKEN_TEST_URL      https://127.0.0.1:PORT (the TLS listener)
    OPENTOKEN_TEST_CACERT   the PEM certificate that listener presents (a self-signed test pair)
    OPENTOKEN_TEST_MAIL_DIR the mail spool: one RFC 5322 *.eml file per mail sent
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config-json", default="{}", help="extra top-level config keys (JSON)")
    p.add_argument("--cwd", default=None, help="directory to run COMMAND in")
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args()
    cmd = a.command[1:] if a.command and a.command[0] == "--" else a.command
    if not cmd:
        p.error("no command")
    d = harness.Daemon(extra_config=json.loads(a.config_json))
    try:
        d.start()
        env = dict(os.environ)
        env.update({
            "OPENTOKEN_TEST_SOCKET": d.sock,
            "OPENTOKEN_TEST_URL": f"https://127.0.0.1:{d.port}",
            "OPENTOKEN_TEST_CACERT": d.cert,
            "OPENTOKEN_TEST_MAIL_DIR": os.path.join(d.dir, "mail"),
        })
        code = subprocess.run(cmd, env=env, cwd=a.cwd).returncode
        if code != 0:
            sys.stderr.write("---- daemon log ----\n" + d.read_log()[-20000:])
        return code
    finally:
        d.stop()
        d.cleanup()


if __name__ == "__main__":
    sys.exit(main())
