"""A throwaway PostgreSQL 15 server for black-box tests (Python stdlib only).

initdb and pg_ctl from /usr/lib/postgresql/15/bin (or $OTD_PG_BINDIR) run as the `postgres` user
(PostgreSQL refuses root) through runuser, in a fresh directory chowned to it. The server listens
on a Unix socket in that directory only (no TCP port to collide with), trust authentication.
stop()/start() stop and start the same cluster; cleanup() stops it and removes everything.
"""

import os
import pwd
import shutil
import subprocess
import tempfile

BINDIR = os.environ.get("OTD_PG_BINDIR", "/usr/lib/postgresql/15/bin")


def unavailable():
    """Why no server can be started here ("" when one can)."""
    if not os.path.exists(os.path.join(BINDIR, "initdb")):
        return f"no PostgreSQL server binaries in {BINDIR}"
    try:
        pg = pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres user"
    if os.geteuid() not in (0, pg.pw_uid):
        return "starting PostgreSQL needs root (runuser -u postgres) or the postgres user"
    return ""


class PgServer:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="otd-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = 5432
        pg = pwd.getpwnam("postgres")
        if os.geteuid() == 0:
            os.chown(self.dir, pg.pw_uid, pg.pw_gid)
        os.chmod(self.dir, 0o700)
        self._run([f"{BINDIR}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust",
                   "-E", "UTF8", "--no-sync"])
        conf = (f"listen_addresses = ''\nunix_socket_directories = '{self.dir}'\n"
                f"port = {self.port}\nmax_connections = 100\nshared_buffers = 32MB\n")
        self._run(["sh", "-c", f"cat >> {self.data}/postgresql.conf"], input_text=conf)
        self.running = False
        self.start()

    def _run(self, argv, input_text=None, check=True):
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        return subprocess.run(argv, input=input_text, text=True, capture_output=True,
                              check=check, timeout=120)

    def start(self):
        self._run([f"{BINDIR}/pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "server.log"),
                   "-w", "-t", "60", "start"])
        self.running = True

    def stop(self, mode="fast"):
        self._run([f"{BINDIR}/pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop"])
        self.running = False

    def conninfo(self, db="postgres", user="postgres"):
        return f"host={self.dir} port={self.port} user={user} dbname={db}"

    def psql(self, sql, db="postgres"):
        r = self._run([f"{BINDIR}/psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", self.dir,
                       "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql])
        return r.stdout.strip()

    def pg_dump(self, db):
        """The database's dump (bytes), as an operator's backup would hold it."""
        argv = [f"{BINDIR}/pg_dump", "-h", self.dir, "-p", str(self.port), "-U", "postgres", db]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        return subprocess.run(argv, capture_output=True, check=True, timeout=120).stdout

    def cleanup(self):
        if self.running:
            self._run([f"{BINDIR}/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"],
                      check=False)
            self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)
