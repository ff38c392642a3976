"""Issue 7 item 5: store faults -- disk full, map full, data file unwritable, filesystem read-only.

The real daemon runs with its LMDB directory on a small filesystem of the test's own (a tmpfs or a
loop-mounted ext4 image: never the shared disk), and the test breaks the store under it while a
client tokenizes. For every fault:
  * every failing write answers 503 with the vnd.error shape (code "service-unavailable", logref =
    X-Request-Id, no detail), promptly (no hang), never 500/507;
  * the log has a warn/error line from the store naming the cause, not one per request, and no
    log line carries a payload, a token id, a secret, the PIN or an e-mail address;
  * reads (detokenize of tokens created before the fault) keep answering 200 byte-exactly;
  * once the fault is removed, writes work again; where that needs a restart it is said below;
  * every token acknowledged with 201 (before, during or after the fault) detokenizes
    byte-exactly after a restart, and `opentoken-admin verify` passes (nothing half-written).

Scenarios:
  disk full    tmpfs; a ballast file on that tmpfs leaves little room; deleting it frees space
               (recovery without restart).
  map full     storage.map_size_mb = 1; deleting tokens frees pages (recovery without restart);
               a larger map_size_mb needs a restart (LMDB fixes the map size at open).
  immutable    chattr +i on data.mdb (refuses writes even to root, also through descriptors
               opened before); chattr -i recovers without restart.
  read-only    ext4 image mounted errors=remount-ro, turned read-only under the running daemon
               through /sys/fs/ext4/<dev>/trigger_fs_error (what the kernel does on a disk error).
               `mount -o remount,ro` cannot be used: the kernel refuses it (EBUSY) while the
               daemon holds data.mdb and lock.mdb open for writing. Recovery needs a restart:
               the filesystem has to be unmounted and checked (e2fsck) first.
  meta page    an LD_PRELOAD pwrite shim (built with cc at test time) fails the write of LMDB's
               meta page once, as a failing disk would. LMDB then refuses every transaction,
               reads included (MDB_PANIC), until the environment is reopened: the daemon must
               exit non-zero by itself (systemd restarts it), and nothing acknowledged is lost.
The mount-based scenarios need root (mount, loop devices, CAP_LINUX_IMMUTABLE); each skips with
the reason where the machine does not allow it.
"""

import http.client
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
import unittest

import audit_lines
from harness import Daemon
from opentoken_client import Signer, logged_in_user

EMAIL = "store-fault@example.com"
MARKER = b"OTD-STORE-FAULT-PAYLOAD-"
SLOW = 5.0  # seconds: a 503 must come at least this fast (no hang while the store is broken)


def sh(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


class ScratchFs:
    """A small filesystem of the test's own, mounted on a fresh directory."""

    def __init__(self, kind, size_mb):
        self.kind = kind
        self.base = tempfile.mkdtemp(prefix="otd-sf-")
        self.path = os.path.join(self.base, "mnt")
        self.image = os.path.join(self.base, "fs.img")
        os.mkdir(self.path, 0o700)
        self.mounted = False
        if kind == "tmpfs":
            r = sh("mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", self.path)
            self.error = r.stderr.strip()
            self.mounted = r.returncode == 0
        else:
            if shutil.which("mkfs.ext4") is None or shutil.which("e2fsck") is None:
                self.error = "mkfs.ext4/e2fsck (e2fsprogs) not installed"
                return
            sh("truncate", "-s", f"{size_mb}M", self.image)
            r = sh("mkfs.ext4", "-q", "-F", self.image)
            if r.returncode != 0:
                self.error = "mkfs.ext4: " + r.stderr.strip()
                return
            self.error = self._mount_image()

    def _mount_image(self):
        r = sh("mount", "-o", "loop,errors=remount-ro", self.image, self.path)
        self.mounted = r.returncode == 0
        return r.stderr.strip()

    def free_bytes(self):
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def options(self):
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                if fields[1] == self.path:
                    return fields[3].split(",")
        return []

    def trigger_read_only(self):
        """ext4: what the kernel does on a metadata error with errors=remount-ro."""
        dev = os.path.basename(os.readlink(
            f"/sys/dev/block/{os.major(os.stat(self.path).st_dev)}:{os.minor(os.stat(self.path).st_dev)}"))
        with open(f"/sys/fs/ext4/{dev}/trigger_fs_error", "w") as f:
            f.write("otd store fault test\n")

    def repair(self):
        """umount, e2fsck, mount: the operator's way back from an emergency read-only ext4."""
        r = sh("umount", self.path)
        if r.returncode != 0:
            raise AssertionError("umount: " + r.stderr)
        self.mounted = False
        r = sh("e2fsck", "-fy", self.image)
        if r.returncode > 1:
            raise AssertionError(f"e2fsck exit {r.returncode}: {r.stdout}{r.stderr}")
        err = self._mount_image()
        if not self.mounted:
            raise AssertionError("mount after repair: " + err)

    def cleanup(self):
        for root, _, files in os.walk(self.path):
            for name in files:
                sh("chattr", "-i", os.path.join(root, name))
        if self.mounted:
            sh("umount", "-l", self.path)
        shutil.rmtree(self.base, ignore_errors=True)


def immutable_blocks_writers(directory):
    """Whether chattr +i refuses a write through a descriptor opened before (ext4 does; tmpfs
    accepts the flag but does not check it)."""
    probe = os.path.join(directory, "immutable-probe")
    fd = os.open(probe, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        r = sh("chattr", "+i", probe)
        if r.returncode != 0:
            return "chattr +i not possible here (needs root and ext4/xfs/btrfs): " + r.stderr.strip()
        try:
            os.pwrite(fd, b"x", 0)
            return "this filesystem lets an open descriptor write to an immutable file"
        except OSError:
            return None
    finally:
        sh("chattr", "-i", probe)
        os.close(fd)
        os.unlink(probe)


# LD_PRELOAD shim for the meta-page scenario: while the trigger file exists, pwrite() into the
# first two pages of data.mdb (LMDB's meta pages; data pages come after them) fails with EIO.
META_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  static ssize_t (*real)(int, const void *, size_t, off_t);
  if (!real) real = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
  const char *trigger = getenv("OTD_TEST_FAIL_META_WRITES");
  if (trigger && off < 2 * sysconf(_SC_PAGESIZE) && access(trigger, F_OK) == 0) {
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, target, sizeof target - 1);
    if (len > 9 && memcmp(target + len - 9, "/data.mdb", 9) == 0) {
      errno = EIO;
      return -1;
    }
  }
  return real(fd, buf, n, off);
}
"""


def probe(request):
    """The status of a request, or None when the daemon is gone or closed the connection."""
    try:
        return request()
    except (OSError, http.client.HTTPException):
        return None


def build_meta_shim(directory):
    """Compiles META_SHIM; returns (path, None) or (None, why not)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None, "no C compiler to build the pwrite fault-injection shim"
    src = os.path.join(directory, "fail_meta.c")
    out = os.path.join(directory, "fail_meta.so")
    with open(src, "w") as f:
        f.write(META_SHIM)
    r = sh(cc, "-shared", "-fPIC", "-O2", "-o", out, src, "-ldl")
    if r.returncode != 0:
        return None, "cannot build the pwrite shim: " + r.stderr.strip()
    return out, None


class Session:
    """One daemon with a logged-in user and an access-code pair; tracks acknowledged tokens."""

    def __init__(self, test, storage_path=None, map_size_mb=64, env=None):
        """storage_path None: the harness's own temp dir (`<state>/data`); env: extra environment
        for the daemon and the admin tool."""
        self.test = test
        self.d = Daemon(init_keys=False)
        test.addCleanup(self.d.cleanup)
        if env:
            base = self.d.env
            self.d.env = lambda: {**base(), **env}
        # The audit trail lives off the faulted filesystem (as docs recommend): detokenize fails
        # closed when its audit entry cannot be written, so on the store's full or read-only disk
        # reads would (rightly) stop too.
        self.d.extra_config = {"storage": {"path": storage_path or os.path.join(self.d.dir, "data"),
                                           "map_size_mb": map_size_mb},
                               "audit": {"path": os.path.join(self.d.dir, "audit.log")}}
        self.d.write_config()
        self.d.admin("init", check=True)
        self.d.start()
        self.user = logged_in_user(self.d, os.path.join(self.d.dir, "mail"), EMAIL)
        r = self.user.req("POST", f"/account/{self.user.account_id}/accessCode", {})
        test.assertEqual(r.status, 201, r.body)
        self.pair = r.json()
        self.signer = Signer(self.d, self.pair["code"], self.pair["secret"])
        self.url = f"/account/{self.user.account_id}/token"
        self.acked = []  # (location, body, content type)
        self.rnd = random.Random(7)
        self.n = 0
        self.failed = 0
        self.problems = []  # failed checks reported by finish()

    def payload(self, size):
        self.n += 1
        head = MARKER + str(self.n).encode() + b"-"
        return head + self.rnd.randbytes(max(0, size - len(head)))

    def tokenize(self, size):
        """One tokenization; returns the status. A 201 is recorded as acknowledged, a 503 must
        have the error shape and come promptly; anything else fails the test."""
        body = self.payload(size)
        ctype = self.rnd.choice(["application/octet-stream", "text/plain", "image/png"])
        t0 = time.time()
        r = self.signer.request("POST", self.url, body, ctype)
        elapsed = time.time() - t0
        if r.status == 201:
            self.acked.append((r.header("Location"), body, ctype))
        else:
            self.failed += 1
            self.check_503(r, elapsed)
        return r.status

    def check_503(self, r, elapsed):
        t = self.test
        t.assertEqual(r.status, 503, f"a failing write must answer 503: {r.status} {r.body[:300]!r}")
        t.assertLess(elapsed, SLOW, "the 503 took too long (writer wedged?)")
        t.assertEqual(r.header("Content-Type"), "application/vnd.error+json")
        e = json.loads(r.body)
        t.assertEqual(set(e), {"code", "logref", "message"}, e)
        t.assertEqual(e["code"], "service-unavailable")
        t.assertEqual(e["message"], "service temporarily unavailable")
        t.assertEqual(e["logref"], r.header("X-Request-Id"))

    def fill_until_503(self, size, consecutive=5, max_attempts=2000):
        """Tokenizes until `consecutive` 503s in a row; returns the number of 503s seen."""
        run = 0
        for _ in range(max_attempts):
            if self.tokenize(size) == 503:
                run += 1
                if run >= consecutive:
                    return
            else:
                run = 0
        self.test.fail(f"no {consecutive} consecutive 503s after {max_attempts} attempts")

    def check_reads(self, when):
        bad = []
        for loc, body, ctype in self.acked:
            t0 = time.time()
            g = self.signer.request("GET", loc, b"", ctype)
            if g.status != 200 or g.body != body or g.header("Content-Type") != ctype:
                bad.append((loc.rsplit("/", 1)[-1][:6], g.status, len(body), len(g.body)))
            self.test.assertLess(time.time() - t0, SLOW, "a read hung")
        self.test.assertEqual(bad, [], f"{when}: acknowledged tokens not readable ({len(bad)}/{len(self.acked)})")

    def log_mark(self):
        return len(self.d.read_log())

    def check_fault_log(self, mark, cause):
        """A warn/error line from the store naming `cause` (a regex), not one per failed request;
        no line carries a secret."""
        lines = []
        for raw in self.d.read_log()[mark:].splitlines():
            try:
                lines.append((raw, json.loads(raw)))
            except ValueError:
                continue
        hits = [raw for raw, j in lines
                if j.get("level") in ("warn", "error") and str(j.get("event", "")).startswith("store_")
                and re.search(cause, raw)]
        self.check_no_secrets_in_log()
        # Checked at the end of the test (finish()), so that the recovery steps still run.
        if not hits:
            events = sorted({f"{j.get('level')}:{j.get('event')}" for _, j in lines})
            self.problems.append(f"no warn/error store_* log line naming /{cause}/ after the fault; "
                                 f"events logged since: {events}")
            return None
        per_event = {}
        for raw in hits:
            event = json.loads(raw)["event"]
            per_event[event] = per_event.get(event, 0) + 1
        self.test.assertLess(max(per_event.values()), max(2, self.failed),
                             f"the cause is logged once per failed request (flood): {per_event}")
        return hits[0]

    def finish(self):
        self.test.assertEqual(self.problems, [])

    def check_no_secrets_in_log(self):
        log = self.d.read_log()
        forbidden = {"payload": MARKER.decode(), "access-code secret": self.pair["secret"],
                     "PIN": self.d.pin, "e-mail": EMAIL}
        for loc, _, _ in self.acked:
            forbidden[f"token id {loc[-6:]}"] = loc.rsplit("/", 1)[-1]
        leaked = [name for name, value in forbidden.items() if value and value in log]
        self.test.assertEqual(leaked, [], "secrets in the log")

    def check_other_paths(self):
        """While every store write fails: the other writing endpoints answer 503 too, the reading
        ones (session cookie, listing) keep working."""
        u = self.user
        writes = {
            "registration": self.d.request("POST", "/registration", body=json.dumps({"email": "new@example.com"}),
                                           headers={"Content-Type": "application/json"}),
            "access code": u.req("POST", f"/account/{u.account_id}/accessCode", {}),
            "login challenge": u.req("GET", u.login_href),
        }
        for name, r in writes.items():
            with self.test.subTest(write=name):
                self.check_503(r, 0)
        for name, path in {"account": f"/account/{u.account_id}",
                           "access code list": f"/account/{u.account_id}/accessCode"}.items():
            with self.test.subTest(read=name):
                self.test.assertEqual(u.req("GET", path).status, 200)

    def check_audit(self):
        """Every tokenize answered is in the audit trail with the status that was sent (the entry
        is written after the deferred commit decided it); a failed one names no object."""
        entries = audit_lines.read(os.path.join(self.d.dir, "audit.log"))
        tok = [e for e in entries if e["event"] == "tokenize"]
        deleted = [e for e in entries if e["event"] == "token_deleted" and e["outcome"] == "ok"]
        failed = [e for e in tok if e["outcome"] == "failed"]
        # self.acked: the tokens acknowledged and not deleted since.
        self.test.assertEqual(len([e for e in tok if e["outcome"] == "ok" and e["status"] == 201]),
                              len(self.acked) + len(deleted))
        self.test.assertEqual(len(failed), self.failed)
        self.test.assertTrue(all(e["status"] == 503 and "object" not in e for e in failed), failed[:3])
        self.test.assertTrue(all(len(e["object"]) == 32 for e in tok if e["outcome"] == "ok"))

    def health(self):
        return self.d.request("GET", "/healthCheck").status

    def restart_and_verify(self, before_start=None):
        """Stops the daemon (must exit 0), runs `opentoken-admin verify`, starts it again and reads
        every acknowledged token."""
        self.test.assertEqual(self.d.stop(), 0, self.d.read_log()[-2000:])
        self.check_audit()
        if before_start:
            before_start()
        v = self.d.admin("verify")
        self.test.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        self.test.assertIn("verify: ok", v.stdout)
        self.d.start()
        self.check_reads("after restart")


class StoreFaultTest(unittest.TestCase):
    def scratch(self, kind, size_mb):
        fs = ScratchFs(kind, size_mb)
        self.addCleanup(fs.cleanup)
        if not fs.mounted:
            self.skipTest(f"cannot mount a scratch {kind} for the store here (needs root): {fs.error}")
        return fs

    def test_disk_full(self):
        fs = self.scratch("tmpfs", 16)
        s = Session(self, os.path.join(fs.path, "data"))
        for _ in range(5):
            self.assertEqual(s.tokenize(3000), 201)
        # Leave about 256 KiB: the store fills that quickly.
        ballast = os.path.join(fs.path, "ballast")
        with open(ballast, "wb") as f:
            left = fs.free_bytes() - 256 * 1024
            while left > 0:
                n = f.write(b"\0" * min(left, 1 << 20))
                left -= n
        mark = s.log_mark()
        before = len(s.acked)
        s.fill_until_503(16 * 1024)
        print(f"disk full: {len(s.acked) - before} tokens of 16 KiB acknowledged while filling, "
              f"{s.failed} answered 503, free {fs.free_bytes()} bytes, health {s.health()}", flush=True)
        s.check_reads("disk full")
        # LMDB reports a short write as EIO ("short write, filesystem full?"): then the line must
        # show that the file system has no space left.
        line = s.check_fault_log(mark, r'No space left on device|"free_bytes":0\b')
        print("disk full: log line:", line, flush=True)

        os.unlink(ballast)  # space freed: writes work again without a restart
        self.assertEqual(s.tokenize(16 * 1024), 201, "write still failing after space was freed")
        for _ in range(4):
            self.assertEqual(s.tokenize(16 * 1024), 201)
        self.assertEqual(s.health(), 200)
        s.restart_and_verify()
        s.finish()

    def test_map_full(self):
        s = Session(self, map_size_mb=1)
        for _ in range(3):
            self.assertEqual(s.tokenize(2000), 201)
        mark = s.log_mark()
        s.fill_until_503(32 * 1024)
        print(f"map full: {len(s.acked)} tokens acknowledged, {s.failed} answered 503, "
              f"health {s.health()}", flush=True)
        s.check_reads("map full")
        line = s.check_fault_log(mark, r"store_map_full")
        print("map full: log line:", line, flush=True)

        # Freeing pages: delete three big tokens; LMDB reuses pages freed two commits back.
        deleted = 0
        for loc, body, ctype in list(s.acked):
            if len(body) < 32 * 1024:
                continue
            r = s.signer.request("DELETE", loc, b"", ctype)
            self.assertEqual(r.status, 204, f"delete in a full map: {r.status} {r.body!r}")
            s.acked.remove((loc, body, ctype))
            self.assertEqual(s.signer.request("GET", loc, b"", ctype).status, 404)
            deleted += 1
            if deleted == 3:
                break
        self.assertEqual(deleted, 3)
        self.assertEqual(s.tokenize(1000), 201)
        self.assertEqual(s.tokenize(32 * 1024), 201, "a big write still fails after tokens were deleted")

        # A larger map needs a restart (the map size is fixed when LMDB opens the environment).
        def grow():
            c = s.d.config()
            c["storage"]["map_size_mb"] = 4
            s.d.write_config(c)
            s.d.extra_config = {"storage": c["storage"], "audit": c["audit"]}
        s.restart_and_verify(before_start=grow)
        for _ in range(10):
            self.assertEqual(s.tokenize(32 * 1024), 201)
        s.check_reads("after growing the map")
        s.finish()

    def test_data_file_immutable(self):
        base = tempfile.mkdtemp(prefix="otd-sf-imm-")
        self.addCleanup(shutil.rmtree, base, True)
        why = immutable_blocks_writers(base)
        if why:
            self.skipTest(why)
        data = os.path.join(base, "data")
        s = Session(self, data)
        data_file = os.path.join(data, "data.mdb")
        self.addCleanup(sh, "chattr", "-i", data_file)
        for _ in range(5):
            self.assertEqual(s.tokenize(3000), 201)
        mark = s.log_mark()
        # Only data.mdb: lock.mdb is a shared writable mapping (LMDB's reader table).
        r = sh("chattr", "+i", data_file)
        self.assertEqual(r.returncode, 0, r.stderr)
        for _ in range(5):
            self.assertEqual(s.tokenize(3000), 503)
        print(f"immutable data file: 5/5 writes answered 503, health {s.health()}", flush=True)
        s.check_reads("data file immutable")
        s.check_other_paths()
        line = s.check_fault_log(mark, r"Operation not permitted|EPERM")
        print("immutable data file: log line:", line, flush=True)

        self.assertEqual(sh("chattr", "-i", data_file).returncode, 0)
        self.assertEqual(s.tokenize(3000), 201, "write still failing once data.mdb is writable")
        self.assertEqual(s.health(), 200)
        s.restart_and_verify()
        s.finish()

    def test_filesystem_goes_read_only(self):
        fs = self.scratch("ext4", 32)
        s = Session(self, os.path.join(fs.path, "data"))
        for _ in range(5):
            self.assertEqual(s.tokenize(3000), 201)
        mark = s.log_mark()
        # The plain way is refused while the daemon has its files open for writing.
        r = sh("mount", "-o", "remount,ro", fs.path)
        remounted = r.returncode == 0
        if not remounted:
            try:
                fs.trigger_read_only()
            except OSError as e:
                self.skipTest(f"cannot turn ext4 read-only under open files here: {e}")
        opts = fs.options()
        self.assertTrue("ro" in opts or "emergency_ro" in opts, opts)
        for _ in range(5):
            self.assertEqual(s.tokenize(3000), 503)
        print(f"read-only filesystem ({'remount,ro' if remounted else 'ext4 error, emergency_ro'}): "
              f"5/5 writes answered 503, health {s.health()}", flush=True)
        s.check_reads("filesystem read-only")
        s.check_other_paths()
        self.assertIsNone(s.d.proc.poll(), "the daemon died on the read-only filesystem")
        line = s.check_fault_log(mark, r"Read-only file system|EROFS")
        print("read-only filesystem: log line:", line, flush=True)

        if remounted:
            self.assertEqual(sh("mount", "-o", "remount,rw", fs.path).returncode, 0)
            self.assertEqual(s.tokenize(3000), 201)
            s.restart_and_verify()
        else:
            # ext4 refuses remount,rw after an error; the operator stops the daemon, checks the
            # filesystem and starts it again.
            self.assertNotEqual(sh("mount", "-o", "remount,rw", fs.path).returncode, 0)
            s.restart_and_verify(before_start=fs.repair)
        self.assertEqual(s.tokenize(3000), 201)
        s.check_reads("after recovery")
        s.finish()


    def test_meta_page_write_fails(self):
        # The one write LMDB cannot take back: when the meta page write of a commit fails (a disk
        # error), LMDB marks the environment unusable (MDB_PANIC) for every later transaction,
        # reads included, until it is closed. Injected with an LD_PRELOAD pwrite shim.
        base = tempfile.mkdtemp(prefix="otd-sf-meta-")
        self.addCleanup(shutil.rmtree, base, True)
        shim, why = build_meta_shim(base)
        if shim is None:
            self.skipTest(why)
        trigger = os.path.join(base, "fail-now")
        s = Session(self, env={"LD_PRELOAD": shim, "OTD_TEST_FAIL_META_WRITES": trigger})
        for _ in range(5):
            self.assertEqual(s.tokenize(3000), 201)
        mark = s.log_mark()
        open(trigger, "w").close()
        self.assertEqual(s.tokenize(3000), 503)
        os.unlink(trigger)
        # The disk error is over; the environment is not. What the daemon answers now (if it is
        # still there: with the fix it is already stopping):
        loc, _, ctype = s.acked[0]
        after = {"tokenize": probe(lambda: s.tokenize(3000)),
                 "health": probe(s.health),
                 "detokenize": probe(lambda: s.signer.request("GET", loc, b"", ctype).status)}
        print(f"meta page write failed: then {after}", flush=True)
        line = s.check_fault_log(mark, r"store_panic|Input/output error")
        print("meta page write failed: log line:", line, flush=True)
        # Only a reopen recovers, so the daemon must not sit there answering 503 to everything:
        # it has to exit non-zero by itself (not 78), and the service manager (Restart=on-failure)
        # starts it again.
        try:
            code = s.d.proc.wait(timeout=15)
            s.d.log.close()
        except subprocess.TimeoutExpired:
            code = None
            s.problems.append(f"the daemon keeps running with a panicked store (answers {after}); "
                              "it should exit non-zero so that systemd restarts it")
            s.d.stop()
        print(f"meta page write failed: daemon exit code {code}", flush=True)
        if code is not None:
            self.assertNotIn(code, (0, 78), "a panicked store must end the daemon with a restartable failure")
        # Nothing half-written: verify passes and everything acknowledged is there after a start.
        v = s.d.admin("verify")
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        s.d.start()
        s.check_reads("after the restart")
        self.assertEqual(s.tokenize(3000), 201)
        s.finish()


if __name__ == "__main__":
    unittest.main()
