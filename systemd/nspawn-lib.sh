# Sourced (not run) by systemd/runtime-test.sh and systemd/package-test.sh: a throw-away
# container with systemd as PID 1, built from the host's /usr (read-only, under an overlay whose
# upper layer the caller fills) and an otherwise empty root, no network, no debootstrap.
#
#   nspawn_require_host CMD...   skip (exit 77) unless root, a merged-/usr host, os-release,
#                                /usr/bin/python3, SoftHSM2's module and every CMD are there
#   nspawn_setup NAME            temp dir $work with $root (the container's /) and $upper (the
#                                overlay of /usr); machine name NAME-<pid>; the EXIT trap stops
#                                the container and removes everything (unless keep=1)
#   nspawn_make_root DIR...      the empty root: DIRs (relative) plus os-release, a machine-id,
#                                the merged-/usr links
#   nspawn_boot                  boots it; returns 1 (the log printed) if no systemd came up;
#                                then ct CMD... runs CMD in the container as root, ct_as USER
#                                CMD... as USER without capabilities
#   pass / fail / check NAME EXPECTED ACTUAL   count results ($passed, $failed)
#
# The caller defines skip() (prints and exits 77) before nspawn_require_host, and sets keep.
# Needs systemd-nspawn, nsenter, setpriv, systemd-id128.

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
check() { if [ "$2" = "$3" ]; then pass "$1: $3"; else fail "$1: expected '$2', got '$3'"; fi; }

nspawn_require_host() {
  [ "$(id -u)" -eq 0 ] || skip "needs root (systemd-nspawn boots a container)"
  local p l
  for p in systemd-nspawn nsenter setpriv systemd-id128 softhsm2-util openssl "$@"; do
    command -v "$p" >/dev/null 2>&1 || skip "$p not found (scripts/install-deps installs it)"
  done
  [ -x /usr/bin/python3 ] || skip "/usr/bin/python3 missing (the test client runs inside the container)"
  [ -f /usr/lib/softhsm/libsofthsm2.so ] || skip "/usr/lib/softhsm/libsofthsm2.so missing (apt-get install softhsm2)"
  [ -f /usr/lib/os-release ] || skip "/usr/lib/os-release missing"
  for l in bin lib sbin; do
    [ "$(readlink "/$l")" = "usr/$l" ] || skip "/$l is not a symlink to usr/$l (the container needs a merged-/usr host)"
  done
}

nspawn_setup() {
  started=$(date +%s)
  machine=$1-$$
  work=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  root=$work/root
  upper=$work/usr-upper
  nspawn_pid=
  leader=
  root_lock=
  pre_nspawn_dir=0
  [ -d /run/systemd/nspawn ] && pre_nspawn_dir=1
  trap nspawn_cleanup EXIT
  trap 'exit 1' INT TERM
}

nspawn_cleanup() {
  set +e
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    # systemd-nspawn turns SIGTERM into a clean halt of the container.
    if [ -z "$leader" ] || ! nsenter -t "$leader" -a -- systemctl poweroff >/dev/null 2>&1; then
      kill -TERM "$nspawn_pid"
    fi
    for _ in $(seq 60); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$nspawn_pid" 2>/dev/null; then
      echo "$machine: container did not power off, killing systemd-nspawn $nspawn_pid" >&2
      kill -KILL "$nspawn_pid"
    fi
    wait "$nspawn_pid" 2>/dev/null
  fi
  # systemd-nspawn cannot remove its propagation dir when /run is not a tmpfs, and leaves its
  # lock file for the root directory behind when it is killed.
  rm -rf "/run/systemd/nspawn/propagate/$machine"
  if [ -n "$root_lock" ]; then rm -f "/run/systemd/nspawn/locks/inode-$root_lock"; fi
  if [ "$pre_nspawn_dir" -eq 0 ]; then
    rmdir /run/systemd/nspawn/propagate /run/systemd/nspawn/locks /run/systemd/nspawn 2>/dev/null
  fi
  if [ "${keep:-0}" -eq 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}

# /etc has only os-release (nspawn checks it before mounting /usr) and a machine-id (so that it
# is not a first boot: no preset-all, no firstboot prompt).
nspawn_make_root() {
  local d l
  for d in etc run tmp proc sys dev home root usr "$@"; do mkdir -p "$root/$d"; done
  chmod 0755 "$root" "$root"/{etc,var,run,proc,sys,dev,home,usr}
  chmod 0700 "$root/root"
  chmod 1777 "$root/tmp"
  [ -d "$root/var/tmp" ] && chmod 1777 "$root/var/tmp"
  for l in bin lib lib64 sbin; do [ -L "/$l" ] && ln -s "usr/$l" "$root/$l"; done
  cp /usr/lib/os-release "$root/etc/os-release"
  root_lock=$(stat -c '%d:%i' "$root")
  systemd-id128 new >"$root/etc/machine-id"
}

# CAP_IPC_LOCK: nspawn's seccomp filter blocks mlock() in containers without it, whatever the
# rlimit; the daemon itself still has no capabilities (CapabilityBoundingSet= is empty) and locks
# its secure heap under LimitMEMLOCK=8M. --private-network gives the container CAP_NET_ADMIN, so
# that PrivateNetwork= can bring up the service's loopback. The container always gets the unified
# cgroup hierarchy (cgroup v2), as on current distributions.
nspawn_boot() {
  local nspawn_args=(-q -D "$root" --overlay="/usr:$upper:/usr" --register=no --console=passive
                     --private-network --capability=CAP_IPC_LOCK -M "$machine")
  # Without systemd as PID 1 on the host there is no manager to create a delegated scope.
  [ -d /run/systemd/system ] || nspawn_args+=(--keep-unit)
  echo "== booting systemd in systemd-nspawn ($machine, root $root)"
  SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=${SYSTEMD_NSPAWN_UNIFIED_HIERARCHY:-1} \
    nice -n 10 systemd-nspawn "${nspawn_args[@]}" -b -- \
    systemd.unit=multi-user.target systemd.firstboot=off >"$work/nspawn.log" 2>&1 &
  nspawn_pid=$!
  local c
  for _ in $(seq 100); do
    for c in $(pgrep -P "$nspawn_pid"); do
      [ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ] && leader=$c
    done
    [ -n "$leader" ] && break
    kill -0 "$nspawn_pid" 2>/dev/null || break
    sleep 0.2
  done
  if [ -z "$leader" ]; then
    fail "container did not start:"
    sed 's/^/    /' "$work/nspawn.log"
    return 1
  fi
  # PID 1 answers systemctl once its private socket exists.
  for _ in $(seq 300); do
    ct test -S /run/systemd/private && break
    kill -0 "$nspawn_pid" 2>/dev/null || break
    sleep 0.2
  done
}

# ct CMD... : in all the container's namespaces (as root, outside its seccomp filter and
# capability set, like `machinectl shell` would be), with a clean environment.
ct() { nsenter -t "$leader" -a -- env -i PATH=/usr/sbin:/usr/bin LANG=C.UTF-8 "$@"; }
# ct_as USER CMD... : as USER with its groups from /etc/group, no capabilities.
ct_as() { local u=$1; shift; ct setpriv --reuid "$u" --regid "$u" --init-groups --inh-caps=-all -- "$@"; }
