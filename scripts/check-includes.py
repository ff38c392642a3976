#!/usr/bin/env python3
"""The layering of DESIGN §3, checked on the includes (scripts/lint runs it):

  daemon -> api -> service -> {hsm, crypto, store, mail} -> common

A module's files may include only its own headers and those of the modules it may depend on
(the table below, which is also what its CMake target links: the per-module include roots make
a missing link a compile error; this check also catches headers reached through another module's
PUBLIC dependencies, e.g. api including hsm/ because service links it publicly). Nobody includes
another module's internal/ headers, and testing/ headers (fakes, matchers) are for tests only.

Usage: scripts/check-includes.py [ROOT]   exit 1 and one line per violation when any.
"""

import os
import re
import sys

ALLOWED = {
    "common": {"common"},
    "crypto": {"crypto", "common"},
    "hsm": {"hsm", "common"},
    "store": {"store", "common"},
    "mail": {"mail", "common"},
    "service": {"service", "hsm", "crypto", "store", "mail", "common"},
    "api": {"api", "service", "crypto", "common"},
    "daemon": {"daemon", "api", "service", "hsm", "store", "mail", "crypto", "common"},
}
MODULES = set(ALLOWED)
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def is_test(path):
    name = os.path.basename(path)
    return name.endswith(("_test.cc", "_test.h")) or "/testing/" in path


def check(root):
    problems = []
    for module in sorted(MODULES):
        base = os.path.join(root, module)
        for dirpath, _, files in os.walk(base):
            for f in files:
                if not f.endswith((".h", ".cc")):
                    continue
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, root)
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
                for m in INCLUDE.finditer(text):
                    inc = m.group(1)
                    target = inc.split("/", 1)[0]
                    line = text.count("\n", 0, m.start()) + 1
                    where = f"{rel}:{line}: #include \"{inc}\""
                    if target == "tests":
                        if not is_test(rel):
                            problems.append(f"{where}: test support outside a test")
                        continue
                    if target not in MODULES:
                        continue  # generated or third-party
                    if "/internal/" in inc and target != module:
                        problems.append(f"{where}: another module's internal header")
                    if "/testing/" in inc and not is_test(rel):
                        problems.append(f"{where}: a testing header outside a test")
                    if target not in ALLOWED[module] and not is_test(rel):
                        problems.append(
                            f"{where}: {module}/ may include only "
                            f"{', '.join(sorted(ALLOWED[module]))} (DESIGN §3)")
    return problems


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    problems = check(os.path.abspath(root))
    for p in problems:
        print(p)
    if problems:
        print(f"check-includes: {len(problems)} layering violation(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
