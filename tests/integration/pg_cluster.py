"""A PostgreSQL 15 cluster on one machine: a primary and N synchronous streaming standbys.

Used by the cluster tests and by `scripts/serve --cluster` (through the command line at the end
of this file), so the cluster logic exists once. Python 3 standard library only.

Topology (all under one base directory, owned by the `postgres` OS user because PostgreSQL
refuses to run as root):
  BASE/sock/           private (0700) Unix socket directory shared by the instances
  BASE/pgK/data/       data directory of instance K (pg0 is the first primary)
  BASE/pgK/log         server log of instance K
  BASE/vault.password  the daemon role's password (0600, owned by the caller; for
                       storage.postgresql.password_file)
  BASE/owner.password  the schema owner role's password (for `opentoken-admin init`)
  BASE/cluster.json    ports, names and roles: lets another process (the failover command)
                       act on a cluster started elsewhere
Each instance listens on its own free TCP port on 127.0.0.1 and on the private socket dir.

Replication: every standby is a pg_basebackup -R clone of the primary with its own physical
replication slot (named after the instance), streams over the Unix socket as `postgres` (peer
authentication, no password), and reports application_name = cluster_name = pgK.
synchronous_commit = on and synchronous_standby_names = 'ANY 1 (pg0, pg1, ...)' on every
instance: a commit returns once at least one standby has flushed it to disk (quorum). The list
names every instance, the primary's own name included (harmless: an instance is never its own
standby), so the setting is already right on whichever standby is promoted.

Why ANY 1 rather than FIRST 1: with FIRST 1 every commit waits for the first listed standby,
so that one standby's latency (or a stall) is every writer's latency until it disconnects;
with ANY 1 the faster of the standbys acknowledges. The price is the same in both modes: after
the primary dies, the acknowledged commits are on *at least one* standby, not on a known one, so
failover must promote the standby that received the most WAL (promote_best() compares
pg_last_wal_receive_lsn()). FIRST 1 does not spare that comparison either: when the first
standby drops out, the second becomes the synchronous one.

Vault access: a database owned by the role ROLE_owner (runs `opentoken-admin init`, which creates
the schema and grants the daemon role least privilege with --grant-to ROLE) and the daemon's
login role ROLE (CONNECT on the database and nothing else until init grants it), both named by
the caller (default "opentoken"); password authentication over TCP only (scram-sha-256), e.g.
conninfo():
  host=127.0.0.1,127.0.0.1,127.0.0.1 port=P0,P1,P2 target_session_attrs=read-write
  dbname=opentoken user=opentoken
"""

import argparse
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

PG_BIN = os.environ.get("OTD_PG_BINDIR", "/usr/lib/postgresql/15/bin")  # as pg_server.py
PG_USER = "postgres"
PSQL = os.path.join(PG_BIN, "psql")


def available():
    """(True, "") when a PostgreSQL 15 cluster can be started here, else (False, reason)."""
    for tool in ("initdb", "pg_ctl", "pg_basebackup", "postgres", "psql"):
        if not os.access(os.path.join(PG_BIN, tool), os.X_OK):
            return False, f"{PG_BIN}/{tool} not found (Debian package postgresql-15)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return False, f"no '{PG_USER}' OS user to run PostgreSQL as"
    return True, ""


def free_port():
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_ids():
    if os.geteuid() != 0:
        return None
    p = pwd.getpwnam(PG_USER)
    return p.pw_uid, p.pw_gid


def as_pg(argv, check=True, timeout=120, input=None, capture=True):
    """Runs argv as the postgres OS user (when we are root; as ourselves otherwise)."""
    kw = {}
    ids = _pg_ids()
    if ids:
        kw = {"user": ids[0], "group": ids[1], "extra_groups": []}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
           "PGCONNECT_TIMEOUT": "5",
           "HOME": "/tmp" if ids else os.environ.get("HOME", "/tmp")}
    r = subprocess.run(argv, env=env, cwd="/", input=input, text=True, timeout=timeout,
                       stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE if capture else None, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr}")
    return r


class Node:
    def __init__(self, cluster, name, port):
        self.cluster = cluster
        self.name = name
        self.port = port
        self.dir = os.path.join(cluster.base, name)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "log")

    def __repr__(self):
        return f"Node({self.name}, port={self.port})"

    # --- processes ---------------------------------------------------------------------------
    def postmaster_pid(self):
        """The live postmaster's pid (checked against /proc), or None."""
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                pid = int(f.readline().strip())
        except (FileNotFoundError, ValueError, PermissionError):
            return None
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return None
        if self.data.encode() not in cmd or state == "Z":
            return None
        return pid

    def pids(self):
        """The postmaster and its children."""
        pm = self.postmaster_pid()
        if pm is None:
            return []
        out = [pm]
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == pm:
                out.append(int(entry))
        return out

    def running(self):
        return self.postmaster_pid() is not None

    def start(self, wait=True):
        args = [os.path.join(PG_BIN, "pg_ctl"), "start", "-D", self.data, "-l", self.log,
                "-o", f"-p {self.port} -c cluster_name={self.name}"]
        if wait:
            args += ["-w", "-t", "60"]
        else:
            args += ["-W"]
        as_pg(args, capture=True)

    def stop(self, mode="fast"):
        if not self.running():
            return
        r = as_pg([os.path.join(PG_BIN, "pg_ctl"), "stop", "-D", self.data, "-m", mode,
                   "-w", "-t", "30"], check=False)
        if r.returncode != 0:
            self.kill()

    def kill(self):
        """kill -9 of the whole instance at once (postmaster and children): a dead machine."""
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.time() + 10
        while time.time() < deadline and any(os.path.exists(f"/proc/{p}") and
                                             not _zombie(p) for p in pids):
            time.sleep(0.02)
        if pids and all(_zombie(p) for p in pids):
            # Lock files naming the dead postmaster: PostgreSQL refuses to start while that pid
            # exists, and here it may linger as a zombie until init reaps it.
            for path in (os.path.join(self.cluster.sockdir, f".s.PGSQL.{self.port}.lock"),
                         os.path.join(self.cluster.sockdir, f".s.PGSQL.{self.port}"),
                         os.path.join(self.data, "postmaster.pid")):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    # --- SQL ---------------------------------------------------------------------------------
    def psql(self, sql, db="postgres", check=True, timeout=60, local=False):
        """Runs sql as the postgres superuser over the Unix socket; returns stdout (unaligned,
        tuples only, '|' separated). local=True: the session commits without waiting for a
        synchronous standby (setup before the standbys exist, slot bookkeeping)."""
        pre = ["-c", "set synchronous_commit = local"] if local else []
        r = as_pg([PSQL, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                   "-h", self.cluster.sockdir, "-p", str(self.port), "-U", "postgres",
                   "-d", db, *pre, "-c", sql], check=check, timeout=timeout)
        return r.stdout.strip() if r.returncode == 0 else None

    def psql_popen(self, db="postgres", **kw):
        """An interactive psql (stdin/stdout pipes) as postgres over the Unix socket."""
        ids = _pg_ids()
        if ids:
            kw.update(user=ids[0], group=ids[1], extra_groups=[])
        return subprocess.Popen(
            [PSQL, "-X", "-A", "-t", "-q", "-h", self.cluster.sockdir, "-p", str(self.port),
             "-U", "postgres", "-d", db],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            bufsize=1, cwd="/", env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}, **kw)

    def in_recovery(self):
        """True on a standby, False on a primary, None when it does not answer (starting,
        stopping, dead)."""
        v = self.psql("select pg_is_in_recovery()", check=False, timeout=10)
        return {"t": True, "f": False}.get(v)

    def receive_lsn(self):
        """Bytes of WAL this standby received and flushed (0 when it received none)."""
        v = self.psql("select coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())"
                      " - '0/0'::pg_lsn")
        return int(float(v or 0))

    def set_conf(self, **settings):
        """ALTER SYSTEM SET for each setting, then reload."""
        for k, v in settings.items():
            self.psql(f"alter system set {k} = {_lit(str(v))}")
        self.psql("select pg_reload_conf()")


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _lit(s):
    return "'" + s.replace("'", "''") + "'"


def _ident(s):
    if not s.replace("_", "").isalnum():
        raise ValueError(f"bad identifier {s!r}")
    return s


class PgCluster:
    """A primary and `standbys` synchronous standbys under `base` (a fresh temp dir by default).

    start() creates (first time) or restarts (state found in base) the instances and waits until
    the primary reports every running standby streaming with sync_state sync or quorum. Always
    call stop() (tests: in a finally / addCleanup); cleanup() also removes the directory.
    """

    def __init__(self, base=None, standbys=2, db="opentoken", role="opentoken",
                 num_sync=1, method="ANY"):
        self.own_base = base is None
        self.base = os.path.abspath(base or tempfile.mkdtemp(prefix="otd-pg-"))
        self.db = _ident(db)
        self.role = _ident(role)
        self.num_sync = num_sync
        self.method = method
        self.state_file = os.path.join(self.base, "cluster.json")
        self.password_file = os.path.join(self.base, "vault.password")
        self.owner_password_file = os.path.join(self.base, "owner.password")
        self.sockdir = os.path.join(self.base, "sock")
        if os.path.exists(self.state_file):
            with open(self.state_file) as f:
                st = json.load(f)
            self.nodes = [Node(self, n["name"], n["port"]) for n in st["nodes"]]
            self.failed = set(st.get("failed", []))
            self.num_sync, self.method = st["num_sync"], st["method"]
            self.db, self.role = st["db"], st["role"]
        else:
            self.nodes = [Node(self, f"pg{i}", free_port()) for i in range(standbys + 1)]
            self.failed = set()

    # --- state ---------------------------------------------------------------------------------
    def initialised(self):
        return os.path.exists(os.path.join(self.nodes[0].data, "PG_VERSION"))

    def _save(self):
        st = {"nodes": [{"name": n.name, "port": n.port} for n in self.nodes],
              "failed": sorted(self.failed), "num_sync": self.num_sync, "method": self.method,
              "db": self.db, "role": self.role, "sockdir": self.sockdir,
              "password_file": self.password_file, "conninfo": self.conninfo(),
              "owner": self.owner(), "owner_password_file": self.owner_password_file,
              "owner_conninfo": self.conninfo(user=self.owner())}
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f, indent=2)
        os.replace(tmp, self.state_file)

    def sync_names(self):
        names = ", ".join(n.name for n in self.nodes)
        return f"{self.method} {self.num_sync} ({names})"

    def conninfo(self, db=None, user=None):
        """libpq conninfo naming every instance; libpq picks the one that accepts writes."""
        hosts = ",".join("127.0.0.1" for _ in self.nodes)
        ports = ",".join(str(n.port) for n in self.nodes)
        return (f"host={hosts} port={ports} target_session_attrs=read-write "
                f"dbname={db or self.db} user={user or self.role}")

    def owner(self):
        return self.role + "_owner"

    def password(self):
        with open(self.password_file) as f:
            return f.read().strip()

    def live(self):
        return [n for n in self.nodes if n.name not in self.failed]

    def primary(self):
        """The running instance that is not in recovery (None when there is none)."""
        for n in self.live():
            if n.running() and n.in_recovery() is False:
                return n
        return None

    def standbys(self):
        return [n for n in self.live() if n.running() and n.in_recovery() is True]

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout=60):
        ok, why = available()
        if not ok:
            raise RuntimeError(why)
        if self.initialised():
            self._fence_stale_primaries()
            for n in self.live():
                if not n.running():
                    n.start()
            # Standbys that still follow a failed primary follow the current one.
            p = self.primary()
            if p is not None:
                for s in self.standbys():
                    self.repoint(s, p)
        else:
            self._create()
        self._save()
        self.wait_sync(timeout=timeout)
        return self

    def _fence_stale_primaries(self):
        """Before a restart: of the instances that would start as primaries (no standby.signal),
        only the one on the newest timeline may; the others (an old primary killed by hand, not
        through kill_primary()) are marked failed rather than started as a second primary."""
        prims = [n for n in self.live()
                 if not os.path.exists(os.path.join(n.data, "standby.signal"))]
        if len(prims) <= 1:
            return
        def timeline(n):
            hist = [f for f in os.listdir(os.path.join(n.data, "pg_wal")) if f.endswith(".history")]
            return max([int(f[:8], 16) for f in hist] or [1])
        prims.sort(key=timeline)
        if timeline(prims[-1]) == timeline(prims[-2]):
            raise RuntimeError("two primaries on the same timeline: "
                               + ", ".join(n.name for n in prims))
        for n in prims[:-1]:
            self.failed.add(n.name)
        self._save()

    def _create(self):
        ids = _pg_ids()
        os.makedirs(self.base, exist_ok=True)
        os.makedirs(self.sockdir, mode=0o700, exist_ok=True)
        if ids:
            # The instances must reach their directories as postgres: say so plainly rather
            # than letting initdb fail on a parent directory that only root can enter.
            r = as_pg(["test", "-w", self.base], check=False)
            if r.returncode != 0 and not os.stat(self.base).st_uid == ids[0]:
                os.chown(self.base, ids[0], ids[1])
            r = as_pg(["test", "-x", self.base], check=False)
            if r.returncode != 0:
                raise RuntimeError(f"the postgres user cannot enter {self.base}: choose a "
                                   "directory whose parents are world-executable (e.g. /tmp)")
        for n in self.nodes:
            os.makedirs(n.dir, mode=0o700, exist_ok=True)
        if ids:
            for p in [self.sockdir] + [n.dir for n in self.nodes]:
                os.chown(p, ids[0], ids[1])
        if len(os.path.join(self.sockdir, ".s.PGSQL.65535.lock")) > 107:
            raise RuntimeError(f"{self.sockdir}: too long for a Unix socket path")

        p = self.nodes[0]
        as_pg([os.path.join(PG_BIN, "initdb"), "-D", p.data, "-U", "postgres",
               "--auth-local=peer", "--auth-host=reject", "-E", "UTF8", "--locale=C.UTF-8",
               "--no-instructions"])
        self._write_conf(p)
        with open(os.path.join(p.data, "pg_hba.conf"), "w") as f:
            f.write(self._hba())
        if ids:
            os.chown(os.path.join(p.data, "pg_hba.conf"), ids[0], ids[1])
        p.start()
        self._make_vault_role(p)
        for s in self.nodes[1:]:
            self._clone(p, s)
            s.start()

    def _write_conf(self, n):
        conf = f"""# written by tests/integration/pg_cluster.py
listen_addresses = '127.0.0.1'
unix_socket_directories = '{self.sockdir}'
unix_socket_permissions = 0700
max_connections = 100
shared_buffers = 32MB
wal_level = replica
wal_log_hints = on
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
hot_standby_feedback = on
wal_receiver_status_interval = 1s
synchronous_commit = on
synchronous_standby_names = '{self.sync_names()}'
password_encryption = scram-sha-256
logging_collector = off
log_line_prefix = '%m [%p] %q%a '
log_connections = off
"""
        path = os.path.join(n.data, "postgresql.conf")
        with open(path, "a") as f:
            f.write("\n" + conf)

    def _hba(self):
        return (f"# written by tests/integration/pg_cluster.py\n"
                f"local all postgres peer\n"
                f"local replication postgres peer\n"
                f"host {self.db} {self.role},{self.owner()} 127.0.0.1/32 scram-sha-256\n")

    def _make_vault_role(self, p):
        def new_password(path):
            pw = secrets.token_urlsafe(24)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(pw + "\n")
            return pw

        owner, daemon = self.owner(), self.role
        # No standby exists yet: these commits must not wait for one.
        for name, path in ((owner, self.owner_password_file), (daemon, self.password_file)):
            p.psql(f"create role {name} login password {_lit(new_password(path))}", local=True)
        p.psql(f"create database {self.db} owner {owner}", local=True)
        p.psql(f"revoke all on database {self.db} from public", local=True)
        p.psql(f"grant connect on database {self.db} to {daemon}", local=True)

    def _clone(self, source, standby):
        """A fresh standby of `source`: base backup with -R and a replication slot on source."""
        slot = standby.name
        if source.psql(f"select 1 from pg_replication_slots where slot_name = {_lit(slot)}"):
            source.psql(f"select pg_drop_replication_slot({_lit(slot)})")
        if os.path.exists(standby.data):
            shutil.rmtree(standby.data)
        as_pg([os.path.join(PG_BIN, "pg_basebackup"), "-D", standby.data, "-h", self.sockdir,
               "-p", str(source.port), "-U", "postgres", "-X", "stream", "-R", "-C",
               "-S", slot, "--checkpoint=fast"])

    def wait_sync(self, expected=None, timeout=60):
        """Waits until the primary shows every running standby (or the `expected` names)
        streaming with sync_state sync or quorum; returns the rows."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            p = self.primary()
            if p is not None:
                want = set(expected or (s.name for s in self.standbys()))
                out = p.psql("select application_name, state, sync_state "
                             "from pg_stat_replication", check=False) or ""
                rows = [r.split("|") for r in out.splitlines() if r]
                last = rows
                good = {r[0] for r in rows if r[1] == "streaming" and
                        r[2] in ("sync", "quorum")}
                if want and want <= good:
                    return rows
            time.sleep(0.1)
        raise TimeoutError(f"standbys not streaming synchronously: {last}")

    # --- failover ------------------------------------------------------------------------------
    def kill_primary(self):
        """kill -9 of the current primary (and its children); it is marked failed so that a
        restart of the cluster never brings it back as a second primary."""
        p = self.primary()
        if p is None:
            raise RuntimeError("no primary")
        p.kill()
        self.failed.add(p.name)
        self._save()
        return p

    def best_standby(self):
        """The running standby that received the most WAL: with ANY 1 (or FIRST 1 after a
        standby dropped out) it is the one that holds every acknowledged commit."""
        cands = self.standbys()
        if not cands:
            raise RuntimeError("no standby to promote")
        return max(cands, key=lambda n: n.receive_lsn())

    def promote(self, node=None, timeout=30):
        node = node or self.best_standby()
        node.psql(f"select pg_promote(true, {int(timeout)})")
        deadline = time.time() + timeout
        while node.in_recovery() is not False:
            if time.time() > deadline:
                raise TimeoutError(f"{node.name} not promoted")
            time.sleep(0.05)
        # The setting names every instance, so it is already right; set it again in case an
        # operator changed it on the old primary only.
        node.set_conf(synchronous_standby_names=self.sync_names())
        return node

    def repoint(self, standby, primary):
        """Makes `standby` stream from `primary` (slot created there; reload, no restart: the
        walreceiver restarts on a primary_conninfo change and follows the new timeline)."""
        slot = standby.name
        if not primary.psql(f"select 1 from pg_replication_slots where slot_name = {_lit(slot)}"):
            primary.psql(f"select pg_create_physical_replication_slot({_lit(slot)}, true)")
        standby.set_conf(
            primary_conninfo=f"host={self.sockdir} port={primary.port} user=postgres "
                             f"application_name={standby.name}",
            primary_slot_name=slot)

    def failover(self, wait=True, timeout=60):
        """kill -9 the primary, promote the most advanced standby, re-point the others at it.
        Returns (old, new)."""
        old = self.kill_primary()
        new = self.promote()
        for s in self.standbys():
            self.repoint(s, new)
        self._save()
        if wait:
            self.wait_sync(timeout=timeout)
        return old, new

    def rejoin(self, node, timeout=60):
        """Brings a failed instance back as a standby of the current primary (a fresh clone)."""
        p = self.primary()
        if p is None:
            raise RuntimeError("no primary")
        node.kill()
        self._clone(p, node)
        node.start()
        self.failed.discard(node.name)
        self._save()
        self.wait_sync(timeout=timeout)

    def stop(self):
        """Stops every instance (fast shutdown, then kill -9 what remains), standbys first."""
        order = sorted(self.nodes, key=lambda n: 0 if n.running() and n.in_recovery() else 1)
        for n in order:
            n.stop()
        for n in self.nodes:
            n.kill()

    def cleanup(self):
        self.stop()
        if self.own_base:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


# --- command line: used by scripts/serve --cluster ------------------------------------------------
def reachable_base(path):
    """`path`, or when running as root and the postgres user cannot enter path's parent (a state
    dir under /root, or made with umask 077), a directory in the postgres user's home that
    `path` becomes a symbolic link to. Returns the real directory to use."""
    path = os.path.abspath(path)
    ids = _pg_ids()
    if os.path.islink(path):
        return os.path.realpath(path)
    if ids is None or os.path.isdir(path):
        return path
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    if as_pg(["test", "-x", parent], check=False).returncode == 0:
        return path
    grand = os.path.dirname(parent)
    if (as_pg(["test", "-x", grand], check=False).returncode == 0 and
            os.stat(parent).st_uid == os.geteuid()):
        # A state dir made with umask 077: let others traverse it (search only, no listing;
        # what it holds keeps its own 0700/0600 modes) so that postgres reaches its subdir.
        os.chmod(parent, os.stat(parent).st_mode | 0o001)
        print(f"pg_cluster: {parent} made traversable (o+x) for the postgres user", flush=True)
        return path
    import hashlib
    home = pwd.getpwnam(PG_USER).pw_dir
    target = os.path.join(home, "otd-cluster-" +
                          hashlib.sha256(path.encode()).hexdigest()[:12])
    os.makedirs(target, mode=0o700, exist_ok=True)
    os.chown(target, ids[0], ids[1])
    os.symlink(target, path)
    print(f"pg_cluster: the postgres user cannot enter {parent}; the cluster lives in "
          f"{target} ({path} links to it)", flush=True)
    return target


def _cmd_serve(a):
    c = PgCluster(base=reachable_base(a.dir), standbys=a.standbys, db=a.db, role=a.role)
    stopping = threading.Event()

    def on_signal(signum, frame):
        stopping.set()

    # Started in the background by a script, SIGINT is ignored: the script stops the daemons
    # first and then sends SIGTERM here. Run by hand, Ctrl-C stops the cluster.
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        c.start()
        if a.ready_file:
            with open(a.ready_file + ".tmp", "w") as f:
                json.dump({"conninfo": c.conninfo(), "password_file": c.password_file,
                           "role": c.role, "owner_conninfo": c.conninfo(user=c.owner()),
                           "owner_password_file": c.owner_password_file}, f)
            os.replace(a.ready_file + ".tmp", a.ready_file)
        p = c.primary()
        print(f"pg_cluster: primary {p.name} on port {p.port}; standbys "
              + ", ".join(f"{s.name} on port {s.port}" for s in c.standbys())
              + f"; synchronous_standby_names = '{c.sync_names()}'", flush=True)
        while not stopping.wait(1):
            pass
    finally:
        c.stop()
        print("pg_cluster: stopped", flush=True)
    return 0


def _cmd_status(a):
    c = PgCluster(base=a.dir)
    p = c.primary()
    for n in c.nodes:
        if n.name in c.failed:
            state = "failed (kill -9'd; bring back with: rejoin " + n.name + ")"
        elif not n.running():
            state = "stopped"
        else:
            state = {True: "standby", False: "primary"}.get(n.in_recovery(), "not answering")
        print(f"{n.name}  port {n.port}  {state}")
    if p is not None:
        print(p.psql("select application_name, state, sync_state from pg_stat_replication"))
    return 0


def _cmd_failover(a):
    c = PgCluster(base=a.dir)
    t0 = time.time()
    old, new = c.failover()
    print(f"pg_cluster: killed {old.name} (kill -9), promoted {new.name} in "
          f"{time.time() - t0:.1f} s; standbys streaming again: "
          + ", ".join(s.name for s in c.standbys()))
    return 0


def _cmd_rejoin(a):
    c = PgCluster(base=a.dir)
    c.rejoin(c.node(a.node))
    print(f"pg_cluster: {a.node} is a standby of {c.primary().name} again")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="pg_cluster.py", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="start (or restart) the cluster in DIR; stop on SIGINT")
    s.add_argument("--dir", required=True)
    s.add_argument("--standbys", type=int, default=2)
    s.add_argument("--db", default="opentoken")
    s.add_argument("--role", default="opentoken")
    s.add_argument("--ready-file", help="written (JSON) once the standbys are synchronous")
    for name, help_ in (("status", "roles and replication state"),
                        ("failover", "kill -9 the primary, promote the best standby, re-point")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--dir", required=True)
    r = sub.add_parser("rejoin", help="re-clone a failed instance as a standby")
    r.add_argument("--dir", required=True)
    r.add_argument("node")
    a = ap.parse_args(argv)
    return {"serve": _cmd_serve, "status": _cmd_status, "failover": _cmd_failover,
            "rejoin": _cmd_rejoin}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
