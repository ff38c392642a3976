#!/usr/bin/env bash
# Runs the units in this directory under a real systemd (PID 1 of a systemd-nspawn container) and
# checks what the unit promises at run time:
#   * systemd-sysusers / systemd-tmpfiles apply opentokend.sysusers / opentokend.tmpfiles at boot;
#   * `systemctl start opentokend.socket` creates /run/opentokend/api.sock
#     opentokend:opentokend-clients 0660 in /run/opentokend (opentokend:opentokend 0751), and the
#     service is not started before the first connection (socket activation);
#   * a member of opentokend-clients gets 200 from GET /healthCheck; a non-member gets EACCES;
#   * the daemon runs as opentokend:opentokend (no supplementary groups, no capabilities,
#     NoNewPrivs, seccomp, RLIMIT_CORE 0, RLIMIT_MEMLOCK 8M), in its own user and network
#     namespace, with the PIN as a credential; /var/lib/opentokend is 0700;
#   * Type=notify: the unit is active (running) only after READY=1;
#   * `systemctl reload opentokend.service` (ExecReload= SIGHUP) keeps the same main PID, logs
#     reloaded, and reopens a rotated audit trail (a new audit.log, opentokend 0600);
#   * `systemctl stop opentokend.service` ends it with status 0 (SIGTERM drain, not killed); the
#     socket keeps listening and re-activates it; stopping the socket removes api.sock.
#
# The container is the host's own /usr (read-only, with an overlay holding the built binaries
# and the units at their installed paths) plus an empty root in a temp dir: no debootstrap, no
# network. Everything is in one temp dir, removed at exit.
#
# usage: systemd/runtime-test.sh [--bin-dir DIR] [--units DIR] [--keep]
#   --bin-dir DIR  opentokend and opentoken-admin (default: OTD_BIN_DIR or <source>/build/bin)
#   --units DIR    take opentokend.{service,socket,sysusers,tmpfiles} from DIR instead of this
#                  directory (negative controls: a copy with a directive removed must fail)
#   --keep         keep the temp dir (the container is always stopped)
# Needs root, systemd-nspawn (apt-get install systemd-container), nsenter, setpriv, softhsm2,
# openssl, python3 in /usr, and a merged-/usr host (/bin -> usr/bin). Exit 77 = skipped
# (prerequisite missing), 0 = all checks passed, 1 = a check failed.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin_dir=${OTD_BIN_DIR:-$here/../build/bin}
units=$here
keep=0
while (($#)); do
  case "$1" in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --units) units=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "runtime-test: unknown option $1" >&2; exit 64 ;;
  esac
done

skip() { echo "SKIP systemd runtime test: $*"; exit 77; }
. "$here/nspawn-lib.sh"
nspawn_require_host
for b in opentokend opentoken-admin; do
  [ -x "$bin_dir/$b" ] || skip "$bin_dir/$b not built"
done
for f in opentokend.service opentokend.socket opentokend.sysusers opentokend.tmpfiles; do
  [ -f "$units/$f" ] || { echo "FAIL missing $units/$f"; exit 1; }
done

nspawn_setup otd-rt

# --- the container root -----------------------------------------------------------------------
nspawn_make_root var

# The overlay upper layer of /usr: the files at the paths `cmake --install --prefix /usr` uses.
install -d -m 0755 "$upper/bin" "$upper/lib/systemd/system" "$upper/lib/sysusers.d" \
  "$upper/lib/tmpfiles.d" "$upper/lib/opentokend-test"
install -m 0755 "$bin_dir/opentokend" "$bin_dir/opentoken-admin" "$upper/bin/"
install -m 0644 "$units/opentokend.service" "$units/opentokend.socket" "$upper/lib/systemd/system/"
install -m 0644 "$units/opentokend.sysusers" "$upper/lib/sysusers.d/opentokend.conf"
install -m 0644 "$units/opentokend.tmpfiles" "$upper/lib/tmpfiles.d/opentokend.conf"

# Client: connect to the API socket and print the status line, or CONNECT-ERROR errno.
install -m 0644 "$here/health-client.py" "$upper/lib/opentokend-test/client.py"

# Installation steps 2-4 of docs/systemd.md, run inside the container after boot (setpriv stands
# in for runuser: the container has no PAM configuration).
cat >"$work/setup.sh" <<'EOF'
set -eu
cat > /etc/opentokend/softhsm2.conf <<'X'
directories.tokendir = /var/lib/opentokend/hsm/
objectstore.backend = file
log.level = ERROR
slots.removable = false
X
chown root:opentokend /etc/opentokend/softhsm2.conf && chmod 0640 /etc/opentokend/softhsm2.conf
install -d -o opentokend -g opentokend -m 0700 /var/lib/opentokend/hsm /var/lib/opentokend/data /var/lib/opentokend/mail
( umask 077; openssl rand -hex 16 | tr -d '\n' > /etc/opentokend/pin )
setpriv --reuid opentokend --regid opentokend --init-groups --inh-caps=-all \
  env SOFTHSM2_CONF=/etc/opentokend/softhsm2.conf \
  softhsm2-util --init-token --free --label opentokend \
    --so-pin "$(openssl rand -hex 16)" --pin "$(cat /etc/opentokend/pin)" >/dev/null
cat > /etc/opentokend/opentokend.json <<'X'
{
  "listen": { "unix": { "path": "/run/opentokend/api.sock", "mode": "0660" } },
  "storage": { "path": "/var/lib/opentokend/data" },
  "hsm": { "module": "/usr/lib/softhsm/libsofthsm2.so", "token_label": "opentokend" },
  "mail": { "spool_dir": "/var/lib/opentokend/mail" },
  "public_url": "https://vault.example.com"
}
X
chown root:opentokend /etc/opentokend/opentokend.json && chmod 0640 /etc/opentokend/opentokend.json
systemd-run --quiet --pipe --wait --collect -p User=opentokend -p LimitMEMLOCK=8M \
  -p LoadCredential=pin:/etc/opentokend/pin \
  -E SOFTHSM2_CONF=/etc/opentokend/softhsm2.conf \
  /usr/bin/opentoken-admin init --config /etc/opentokend/opentokend.json >/dev/null
# Two client users: a member of opentokend-clients and a stranger.
useradd --system --user-group --no-create-home --shell /usr/sbin/nologin -G opentokend-clients otd-member
useradd --system --user-group --no-create-home --shell /usr/sbin/nologin otd-stranger
EOF

# --- boot ---------------------------------------------------------------------------------------
nspawn_boot || { echo "$passed passed, $failed failed"; exit 1; }
state=$(ct timeout 120 systemctl is-system-running --wait 2>&1)
case "$state" in
  running) pass "systemd booted as PID 1 of the container: $(ct systemctl --version | head -n1)" ;;
  degraded) pass "systemd booted (degraded: $(ct systemctl --failed --plain --no-legend | awk '{print $1}' | tr '\n' ' '))" ;;
  *) fail "systemd did not boot: '$state'"; sed 's/^/    /' "$work/nspawn.log"
     echo "$passed passed, $failed failed"; exit 1 ;;
esac
echo "  booted in $(($(date +%s) - started)) s"

# --- sysusers / tmpfiles at boot ----------------------------------------------------------------
echo "== sysusers.d / tmpfiles.d applied at boot"
uid=$(ct id -u opentokend 2>/dev/null)
gid=$(ct id -g opentokend 2>/dev/null)
if [ -n "$uid" ] && [ "$uid" -ne 0 ] && [ "$uid" -lt 1000 ]; then pass "system user opentokend (uid $uid, gid $gid)"
else fail "no system user opentokend (uid '$uid')"; fi
if ct getent group opentokend-clients >/dev/null; then pass "group opentokend-clients"; else fail "no group opentokend-clients"; fi
check "/run/opentokend" "opentokend:opentokend 751 directory" "$(ct stat -c '%U:%G %a %F' /run/opentokend 2>&1)"
check "/var/lib/opentokend" "opentokend:opentokend 700 directory" "$(ct stat -c '%U:%G %a %F' /var/lib/opentokend 2>&1)"
check "/etc/opentokend" "root:opentokend 750 directory" "$(ct stat -c '%U:%G %a %F' /etc/opentokend 2>&1)"

echo "== token, config and keys (docs/systemd.md steps 2-4)"
if out=$(ct bash -s <"$work/setup.sh" 2>&1); then pass "SoftHSM2 token, config, opentoken-admin init (systemd-run with LoadCredential=)"
else fail "setup inside the container:"; sed 's/^/    /' <<<"$out"; fi

# --- the socket ---------------------------------------------------------------------------------
echo "== opentokend.socket"
if out=$(ct systemctl start opentokend.socket 2>&1); then pass "systemctl start opentokend.socket"
else fail "systemctl start opentokend.socket: $out"; fi
check "opentokend.socket" "active listening" "$(ct systemctl show -P ActiveState opentokend.socket) $(ct systemctl show -P SubState opentokend.socket)"
check "opentokend.service before the first connection" "inactive" "$(ct systemctl show -P ActiveState opentokend.service)"
check "/run/opentokend/api.sock" "opentokend:opentokend-clients 660 socket" "$(ct stat -c '%U:%G %a %F' /run/opentokend/api.sock 2>&1)"

echo "== clients"
out=$(ct_as otd-member /usr/bin/python3 /usr/lib/opentokend-test/client.py 2>&1)
if grep -q '^HTTP/1.1 200 ' <<<"$out" && grep -q '"status":"healthy"' <<<"$out"; then
  pass "member of opentokend-clients: GET /healthCheck -> $(head -n1 <<<"$out")"
else
  fail "member of opentokend-clients: GET /healthCheck:"; sed 's/^/    /' <<<"$out"
fi
out=$(ct_as otd-stranger /usr/bin/python3 /usr/lib/opentokend-test/client.py 2>&1)
check "non-member: connect" "CONNECT-ERROR 13 Permission denied" "$(head -n1 <<<"$out")"

# --- the service --------------------------------------------------------------------------------
echo "== opentokend.service"
check "opentokend.service after the first connection" "active running" "$(ct systemctl show -P ActiveState opentokend.service) $(ct systemctl show -P SubState opentokend.service)"
# Type=notify: systemd leaves the unit "activating" until READY=1 (up to TimeoutStartSec=).
check "Type" "notify" "$(ct systemctl show -P Type opentokend.service)"
if ct journalctl -b -u opentokend.service -o cat | grep -q '"event":"ready"'; then pass "daemon logged ready (to the journal)"
else fail "no ready event in the journal"; fi
pid=$(ct systemctl show -P MainPID opentokend.service)
if [ -n "$pid" ] && [ "$pid" -gt 0 ] && st=$(ct cat "/proc/$pid/status"); then
  field() { awk -v k="$1:" '$1 == k { $1 = ""; sub(/^[ \t]+/, ""); print }' <<<"$st"; }
  check "daemon comm" "opentokend" "$(field Name)"
  check "daemon user (ps)" "opentokend opentokend" "$(ct ps -o user:32=,group:32= -p "$pid" | tr -s ' ' | sed 's/ $//')"
  check "daemon Uid (real, effective, saved, fs)" "$uid $uid $uid $uid" "$(field Uid | tr -s '\t ' ' ')"
  check "daemon Gid (real, effective, saved, fs)" "$gid $gid $gid $gid" "$(field Gid | tr -s '\t ' ' ')"
  check "daemon supplementary groups" "$gid" "$(field Groups | tr -s ' ' | sed 's/ $//')"
  check "daemon CapEff" "0000000000000000" "$(field CapEff)"
  check "daemon CapBnd" "0000000000000000" "$(field CapBnd)"
  check "daemon NoNewPrivs" "1" "$(field NoNewPrivs)"
  check "daemon Seccomp (filter mode)" "2" "$(field Seccomp)"
  lim=$(ct cat "/proc/$pid/limits")
  check "daemon RLIMIT_CORE" "0 0" "$(awk '/^Max core file size/ { print $5, $6 }' <<<"$lim")"
  check "daemon RLIMIT_MEMLOCK" "8388608 8388608" "$(awk '/^Max locked memory/ { print $4, $5 }' <<<"$lim")"
  [ "$(ct readlink "/proc/$pid/ns/user")" != "$(ct readlink /proc/1/ns/user)" ] &&
    pass "daemon in its own user namespace (PrivateUsers=yes)" || fail "daemon shares PID 1's user namespace"
  [ "$(ct readlink "/proc/$pid/ns/net")" != "$(ct readlink /proc/1/ns/net)" ] &&
    pass "daemon in its own network namespace (PrivateNetwork=yes)" || fail "daemon shares PID 1's network namespace"
  check "daemon CREDENTIALS_DIRECTORY" "CREDENTIALS_DIRECTORY=/run/credentials/opentokend.service" \
    "$(ct cat "/proc/$pid/environ" | tr '\0' '\n' | grep '^CREDENTIALS_DIRECTORY=')"
  cred=$(ct stat -c '%U %a' /run/credentials/opentokend.service/pin 2>&1)
  case "$cred" in
    "opentokend 400"|"opentokend 440") pass "PIN credential: $cred" ;;
    *) fail "PIN credential: '$cred'" ;;
  esac
  # ProtectSystem=strict + StateDirectory=: / is read-only to the daemon, its state dir is not.
  check "daemon's view of / (ProtectSystem=strict)" "ro" \
    "$(ct nsenter -t "$pid" -m -- findmnt -no OPTIONS --target / | cut -d, -f1)"
  check "daemon's view of /var/lib/opentokend" "rw" \
    "$(ct nsenter -t "$pid" -m -- findmnt -no OPTIONS --target /var/lib/opentokend | cut -d, -f1)"
  # MemorySwapMax=0 needs the memory controller of cgroup v2 delegated to the container.
  swap=/sys/fs/cgroup/system.slice/opentokend.service/memory.swap.max
  if ct test -f "$swap"; then check "memory.swap.max (MemorySwapMax=0)" "0" "$(ct cat "$swap")"
  else echo "NOT CHECKED MemorySwapMax=0: no memory controller in the container's cgroup (host: $(stat -fc %T /sys/fs/cgroup))"; fi
  check "metrics socket" "opentokend:opentokend 600 socket" "$(ct stat -c '%U:%G %a %F' /run/opentokend/opentokend-metrics.sock 2>&1)"
else
  fail "no main PID for opentokend.service ('$pid')"
fi
warn=$(ct journalctl -b _PID=1 -p warning -o cat | grep -i opentokend)
if [ -z "$warn" ]; then pass "no warnings from systemd about the units"
else fail "systemd warned about the units:"; sed 's/^/    /' <<<"$warn"; fi

# --- reload -------------------------------------------------------------------------------------
echo "== reload (ExecReload= SIGHUP)"
pid_before=$(ct systemctl show -P MainPID opentokend.service)
audit=/var/lib/opentokend/data/audit.log
ct mv "$audit" "$audit.1"
if out=$(ct timeout 60 systemctl reload opentokend.service 2>&1); then pass "systemctl reload opentokend.service"
else fail "systemctl reload opentokend.service: $out"; fi
for _ in $(seq 100); do
  ct journalctl -b -u opentokend.service -o cat | grep -q '"event":"reloaded"' && break
  sleep 0.1
done
reloaded=$(ct journalctl -b -u opentokend.service -o cat | grep '"event":"reloaded"' | tail -n1)
if grep -q '"audit":"reopened"' <<<"$reloaded"; then pass "daemon logged reloaded, audit trail reopened"
else fail "no reloaded event with the audit trail reopened: '$reloaded'"; fi
check "MainPID after reload" "$pid_before" "$(ct systemctl show -P MainPID opentokend.service)"
check "opentokend.service after reload" "active running" "$(ct systemctl show -P ActiveState opentokend.service) $(ct systemctl show -P SubState opentokend.service)"
check "new audit.log after reload" "opentokend 600" "$(ct stat -c '%U %a' "$audit" 2>&1)"
out=$(ct_as otd-member /usr/bin/python3 /usr/lib/opentokend-test/client.py 2>&1)
if grep -q '^HTTP/1.1 200 ' <<<"$out"; then pass "serving after reload: $(head -n1 <<<"$out")"
else fail "not serving after reload:"; sed 's/^/    /' <<<"$out"; fi

# --- stop and re-activation ---------------------------------------------------------------------
echo "== stop"
if out=$(ct timeout 60 systemctl stop opentokend.service 2>&1); then pass "systemctl stop opentokend.service"
else fail "systemctl stop opentokend.service: $out"; fi
check "service after stop (Result, exit status)" "success 0 inactive" \
  "$(ct systemctl show -P Result opentokend.service) $(ct systemctl show -P ExecMainStatus opentokend.service) $(ct systemctl show -P ActiveState opentokend.service)"
jl=$(ct journalctl -b -u opentokend.service -o cat)
if grep -q '"event":"stopping".*"signal":"SIGTERM"' <<<"$jl" && grep -q '"event":"stopped"' <<<"$jl"; then
  pass "daemon logged stopping (SIGTERM) and stopped"
else
  fail "no stopping/stopped events in the journal"
fi
check "api.sock kept while the socket unit listens" "opentokend:opentokend-clients 660 socket" "$(ct stat -c '%U:%G %a %F' /run/opentokend/api.sock 2>&1)"
out=$(ct_as otd-member /usr/bin/python3 /usr/lib/opentokend-test/client.py 2>&1)
if grep -q '^HTTP/1.1 200 ' <<<"$out"; then pass "re-activated by the next connection: $(head -n1 <<<"$out")"
else fail "no re-activation after stop:"; sed 's/^/    /' <<<"$out"; fi
if ct timeout 60 systemctl stop opentokend.service opentokend.socket; then pass "systemctl stop opentokend.service opentokend.socket"
else fail "systemctl stop opentokend.service opentokend.socket"; fi
check "service after the second stop" "success 0" "$(ct systemctl show -P Result opentokend.service) $(ct systemctl show -P ExecMainStatus opentokend.service)"
if ct test -e /run/opentokend/api.sock; then fail "api.sock left after stopping the socket (RemoveOnStop=yes)"
else pass "api.sock removed with the socket unit"; fi
check "/run/opentokend preserved" "opentokend:opentokend 751 directory" "$(ct stat -c '%U:%G %a %F' /run/opentokend 2>&1)"

# --- a store that is not there at start: restarted until it is (exit 69, Restart=on-failure) ---
echo "== exit 69 at start is retried until the store is back"
ct chmod 000 /var/lib/opentokend/data
ct systemctl reset-failed opentokend.service >/dev/null 2>&1 || true
if out=$(ct systemctl start --no-block opentokend.service 2>&1); then pass "systemctl start --no-block opentokend.service (store unreadable)"
else fail "systemctl start --no-block: $out"; fi
sleep 13  # past the default start-limit window (5 starts in 10 s)
restarts=$(ct systemctl show -P NRestarts opentokend.service)
if [ "${restarts:-0}" -ge 4 ]; then pass "restarted $restarts times in 13 s"; else fail "NRestarts $restarts after 13 s"; fi
check "exit status of the failed starts" "69" "$(ct systemctl show -P ExecMainStatus opentokend.service)"
state="$(ct systemctl show -P ActiveState opentokend.service)"
if [ "$state" != failed ]; then pass "not given up ($state)"; else fail "unit failed for good: $(ct systemctl show -P Result opentokend.service)"; fi
ct chmod 700 /var/lib/opentokend/data
for _ in $(seq 1 30); do
  [ "$(ct systemctl show -P ActiveState opentokend.service)" = active ] && break
  sleep 0.5
done
check "opentokend.service once the store is back" "active running" "$(ct systemctl show -P ActiveState opentokend.service) $(ct systemctl show -P SubState opentokend.service)"
out=$(ct_as otd-member /usr/bin/python3 /usr/lib/opentokend-test/client.py 2>&1)
if grep -q '^HTTP/1.1 200 ' <<<"$out"; then pass "serving after the store came back: $(head -n1 <<<"$out")"
else fail "not serving after the store came back:"; sed 's/^/    /' <<<"$out"; fi
ct timeout 60 systemctl stop opentokend.service opentokend.socket || fail "stop after the retry test"

echo "== journal of opentokend.service"
ct journalctl -b -u opentokend.service -u opentokend.socket -o short-monotonic --no-pager | sed 's/^/    /' | tail -n 30

echo "runtime: $(($(date +%s) - started)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
