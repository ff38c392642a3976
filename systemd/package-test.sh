#!/usr/bin/env bash
# The Debian packages under a real systemd: scripts/package builds opentokend and
# opentoken-client twice (version V1, then a rebuild with a higher version V2), and a
# systemd-nspawn container (systemd as PID 1) goes through the life of an installation:
#   * dpkg -i of both V1 packages: files at their places, /etc/opentokend/opentokend.json is a
#     conffile and passes `opentoken-admin check-config`, sysusers/tmpfiles applied by the
#     maintainer scripts (user, groups, directories), nothing enabled or started;
#   * the first start as README.Debian says: SoftHSM2 token, PIN as a root-only file given to
#     the service as the systemd credential "pin", `opentoken-admin init` under systemd-run,
#     `systemctl enable --now opentokend.socket`;
#   * GET /healthCheck over /run/opentokend/api.sock; the installed `opentoken` CLI, as a member
#     of opentokend-clients, registers, confirms, logs in, tokenizes and detokenizes;
#   * an edit to the conffile, then dpkg -i of V2 (stdin closed: no conffile prompt): the service
#     was restarted (new PID, new version in --version and in its start-up line), the socket kept
#     listening, the edit, the store and the token survived, the V1 token detokenizes;
#   * dpkg --purge: units, binaries, enablement and the conffile gone, the daemon stopped, the
#     socket removed; the vault (/var/lib/opentokend, /var/log/opentokend, /etc/opentokend/pin)
#     and the system user kept, as README.Debian documents.
#
# The container is built like systemd/runtime-test.sh's: the host's /usr under a writable
# overlay (dpkg unpacks into the upper layer), an otherwise empty root, no network, no
# debootstrap. Its /var/lib/dpkg is a copy of the host's, so dpkg resolves the packages'
# dependencies against the host's installed packages (the same Debian release the packages were
# built on). Everything lives in one temp dir, removed at exit; the container is always stopped.
#
# usage: systemd/package-test.sh [--out DIR] [--debs DIR1 DIR2] [--keep]
#   --out DIR         scripts/package's output and build directory, kept between runs so that
#                     the builds are incremental (default: <source>/build/package-test)
#   --debs DIR1 DIR2  use already built packages (V1 in DIR1, the higher V2 in DIR2) instead of
#                     running scripts/package twice
#   --keep            keep the temp dir
# Needs root, systemd-nspawn, nsenter, setpriv, softhsm2, openssl, python3 in /usr, a
# merged-/usr host, and the packaging tools (scripts/install-deps installs them).
# Exit 77 = skipped (prerequisite missing), 0 = all checks passed, 1 = a check failed.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=$(cd "$here/.." && pwd)
pkg_out=$source_dir/build/package-test
debs1=
debs2=
keep=0
while (($#)); do
  case "$1" in
    --out) pkg_out=$2; shift 2 ;;
    --debs) debs1=$2; debs2=$3; shift 3 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "package-test: unknown option $1" >&2; exit 64 ;;
  esac
done

skip() { echo "SKIP package test: $*"; exit 77; }
. "$here/nspawn-lib.sh"
nspawn_require_host dpkg-buildpackage dh lintian fakeroot rsync git

finish() { echo "$passed passed, $failed failed ($(($(date +%s) - started)) s)"; [ "$failed" -eq 0 ]; exit $?; }

nspawn_setup otd-pkg

# --- the packages -------------------------------------------------------------------------------
base=$(dpkg-parsechangelog -l "$source_dir/debian/changelog" -SVersion)
v1="$base"
v2="$base+rebuild1"
if [ -z "$debs1" ]; then
  # Both builds share scripts/package's build directory in $pkg_out: the second is the same tree
  # rebuilt with a higher version (only the version string and the links change).
  echo "== scripts/package: $v1 (with lintian), then $v2"
  mkdir -p "$work/v1" "$work/v2"
  t=$(date +%s)
  if ! "$source_dir/scripts/package" --out "$pkg_out" --version "$v1" >"$work/package-v1.log" 2>&1; then
    fail "scripts/package --version $v1:"; tail -n 80 "$work/package-v1.log" | sed 's/^/    /'; finish
  fi
  pass "scripts/package --version $v1: built, lintian clean ($(($(date +%s) - t)) s)"
  mv "$pkg_out"/*_"$v1"_*.deb "$work/v1/"
  t=$(date +%s)
  if ! "$source_dir/scripts/package" --out "$pkg_out" --version "$v2" --no-lintian \
       >"$work/package-v2.log" 2>&1; then
    fail "scripts/package --version $v2:"; tail -n 80 "$work/package-v2.log" | sed 's/^/    /'; finish
  fi
  pass "scripts/package --version $v2: rebuilt ($(($(date +%s) - t)) s)"
  mv "$pkg_out"/*_"$v2"_*.deb "$work/v2/"
  debs1=$work/v1
  debs2=$work/v2
fi
deb() { ls "$1"/"$2"_*.deb 2>/dev/null | head -n1; }
for d in "$debs1" "$debs2"; do
  for p in opentokend opentoken-client; do
    [ -n "$(deb "$d" $p)" ] || { fail "no ${p}_*.deb in $d"; finish; }
  done
done
got1=$(dpkg-deb -f "$(deb "$debs1" opentokend)" Version)
got2=$(dpkg-deb -f "$(deb "$debs2" opentokend)" Version)
if dpkg --compare-versions "$got2" gt "$got1"; then pass "upgrade version $got2 > $got1"
else fail "the second package ($got2) is not newer than the first ($got1)"; finish; fi

# --- the container root -------------------------------------------------------------------------
nspawn_make_root var/lib var/log var/cache var/tmp
# The host's package database: dpkg -i checks Depends against it. man-db's trigger (our man
# pages) wants its config.
cp -a /var/lib/dpkg "$root/var/lib/dpkg"
rm -f "$root"/var/lib/dpkg/lock*
# The host's stat overrides name groups that the container's /etc/group does not have.
: >"$root/var/lib/dpkg/statoverride"
[ -f /etc/manpath.config ] && cp /etc/manpath.config "$root/etc/"
mkdir -p "$upper/sbin" "$root/root/debs/v1" "$root/root/debs/v2"
# A policy-rc.d on the host (Docker images have one that exits 101) would stop the maintainer
# scripts from restarting or stopping the units: the container gets a whiteout for it, i.e.
# a Debian system without one.
[ -e /usr/sbin/policy-rc.d ] && mknod "$upper/sbin/policy-rc.d" c 0 0
cp "$(deb "$debs1" opentokend)" "$(deb "$debs1" opentoken-client)" "$root/root/debs/v1/"
cp "$(deb "$debs2" opentokend)" "$(deb "$debs2" opentoken-client)" "$root/root/debs/v2/"

# GET /healthCheck over the API socket: the status line, or CONNECT-ERROR errno.
mkdir -p "$root/srv/pkgtest" && chmod 0755 "$root/srv" "$root/srv/pkgtest"
install -m 0644 "$here/health-client.py" "$root/srv/pkgtest/health.py"
# totp.py KEYHEX: the current RFC 6238 code (what an authenticator app shows).
cat >"$root/srv/pkgtest/totp.py" <<'PY'
import hashlib, hmac, struct, sys, time
key = bytes.fromhex(sys.argv[1])
mac = hmac.new(key, struct.pack(">Q", int(time.time()) // 30), hashlib.sha1).digest()
o = mac[-1] & 0x0F
print(f"{(struct.unpack('>I', mac[o:o + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}")
PY
# mailcode.py SPOOL: the confirmation code of the newest spooled mail.
cat >"$root/srv/pkgtest/mailcode.py" <<'PY'
import email, email.policy, glob, os, re, sys, time
deadline = time.time() + 20
while time.time() < deadline:
    files = sorted(glob.glob(os.path.join(sys.argv[1], "*.eml")), key=os.path.getmtime)
    if files:
        with open(files[-1], "rb") as f:
            msg = email.message_from_binary_file(f, policy=email.policy.default)
        text = msg.get_body(preferencelist=("plain",)).get_content()
        print(re.search(r"/confirm/([A-Za-z0-9_-]+)", text).group(1))
        sys.exit(0)
    time.sleep(0.1)
sys.exit("no mail in " + sys.argv[1])
PY
chmod 0644 "$root"/srv/pkgtest/*.py

# --- boot ---------------------------------------------------------------------------------------
nspawn_boot || finish
state=$(ct timeout 120 systemctl is-system-running --wait 2>&1)
case "$state" in
  running|degraded) pass "systemd booted ($state)" ;;
  *) fail "systemd did not boot: '$state'"; sed 's/^/    /' "$work/nspawn.log"; finish ;;
esac

# --- install V1 ---------------------------------------------------------------------------------
echo "== dpkg -i $got1"
if out=$(ct sh -c 'dpkg -i /root/debs/v1/*.deb </dev/null' 2>&1); then pass "dpkg -i opentokend opentoken-client $got1"
else fail "dpkg -i:"; sed 's/^/    /' <<<"$out"; finish; fi
check "dpkg status" "install ok installed $got1|install ok installed $got1" \
  "$(ct dpkg-query -W -f='${Status} ${Version}|' opentokend opentoken-client | sed 's/|$//')"
missing=
for f in /usr/bin/opentokend /usr/bin/opentoken-admin /usr/bin/opentoken \
         /lib/systemd/system/opentokend.service /lib/systemd/system/opentokend.socket \
         /usr/lib/sysusers.d/opentokend.conf /usr/lib/tmpfiles.d/opentokend.conf \
         /usr/share/man/man8/opentokend.8.gz /usr/share/man/man8/opentoken-admin.8.gz \
         /usr/share/man/man1/opentoken.1.gz \
         /usr/share/bash-completion/completions/opentoken-admin \
         /usr/share/bash-completion/completions/opentoken \
         /usr/share/zsh/vendor-completions/_opentoken-admin /usr/share/zsh/vendor-completions/_opentoken \
         /usr/share/doc/opentokend/systemd.md /usr/share/doc/opentokend/README.Debian \
         /usr/share/doc/opentokend/examples/opentokend.example.jsonc \
         /usr/share/doc/opentokend/examples/softhsm2.conf \
         /usr/share/doc/opentokend/examples/opentokend-tls.conf \
         /usr/share/doc/opentokend/config.schema.json /etc/opentokend/opentokend.json; do
  ct test -f "$f" || missing+=" $f"
done
check "files at their places" "" "$missing"
if ct dpkg-query -W -f='${Conffiles}\n' opentokend | grep -q '^ /etc/opentokend/opentokend.json '; then
  pass "/etc/opentokend/opentokend.json is a conffile"
else fail "/etc/opentokend/opentokend.json is not a conffile"; fi
check "opentoken-admin check-config (shipped config)" "/etc/opentokend/opentokend.json: valid" \
  "$(ct opentoken-admin check-config 2>&1)"
uid=$(ct id -u opentokend 2>/dev/null)
if [ -n "$uid" ] && [ "$uid" -gt 0 ] && [ "$uid" -lt 1000 ]; then pass "system user opentokend (uid $uid)"
else fail "no system user opentokend ('$uid')"; fi
if ct getent group opentokend-clients >/dev/null; then pass "group opentokend-clients"; else fail "no group opentokend-clients"; fi
check "/etc/opentokend" "root:opentokend 750" "$(ct stat -c '%U:%G %a' /etc/opentokend 2>&1)"
check "/var/lib/opentokend" "opentokend:opentokend 700" "$(ct stat -c '%U:%G %a' /var/lib/opentokend 2>&1)"
check "/var/log/opentokend" "opentokend:opentokend 700" "$(ct stat -c '%U:%G %a' /var/log/opentokend 2>&1)"
check "enabled after install (socket, service)" "disabled disabled" \
  "$(ct systemctl is-enabled opentokend.socket opentokend.service 2>&1 | tr '\n' ' ' | sed 's/ $//')"
check "active after install (socket, service)" "inactive inactive" \
  "$(ct systemctl is-active opentokend.socket opentokend.service 2>&1 | tr '\n' ' ' | sed 's/ $//')"
check "opentokend --version names the package" "1" \
  "$(ct opentokend --version | grep -c "debian/$got1)")"

# --- first start, as README.Debian says ---------------------------------------------------------
echo "== first start (README.Debian)"
cat >"$root/srv/pkgtest/setup.sh" <<'SH'
set -eu
install -m 0640 -g opentokend /usr/share/doc/opentokend/examples/softhsm2.conf /etc/opentokend/
install -d -o opentokend -g opentokend -m 0700 /var/lib/opentokend/hsm \
  /var/lib/opentokend/data /var/lib/opentokend/mail
( umask 077; openssl rand -hex 16 | tr -d '\n' > /etc/opentokend/pin )
setpriv --reuid opentokend --regid opentokend --init-groups --inh-caps=-all \
  env SOFTHSM2_CONF=/etc/opentokend/softhsm2.conf \
  softhsm2-util --init-token --free --label opentokend \
    --so-pin "$(openssl rand -hex 16)" --pin "$(cat /etc/opentokend/pin)" >/dev/null
opentoken-admin check-config
systemd-run --quiet --pipe --wait --collect -p User=opentokend \
  -p LoadCredential=pin:/etc/opentokend/pin -p LimitMEMLOCK=8M \
  -E SOFTHSM2_CONF=/etc/opentokend/softhsm2.conf /usr/bin/opentoken-admin init
systemctl enable --now opentokend.socket
useradd --system --user-group --home-dir /home/app --shell /usr/sbin/nologin -G opentokend-clients app
install -d -o app -g app -m 0700 /home/app
( umask 077; echo 'correct horse battery staple' > /home/app/pw ); chown app:app /home/app/pw
SH
if out=$(ct bash /srv/pkgtest/setup.sh 2>&1); then pass "token, PIN credential, opentoken-admin init, enable --now opentokend.socket"
else fail "setup:"; sed 's/^/    /' <<<"$out"; finish; fi
check "socket after enable --now" "enabled active" \
  "$(ct systemctl is-enabled opentokend.socket) $(ct systemctl is-active opentokend.socket)"
check "GET /healthCheck (member of opentokend-clients)" "HTTP/1.1 200 OK" \
  "$(ct_as app python3 /srv/pkgtest/health.py 2>&1 | head -n1)"
check "opentokend.service (socket-activated)" "active" "$(ct systemctl is-active opentokend.service)"

echo "== opentoken CLI: register, confirm, login, tokenize, detokenize"
# as the client user, with its own HOME; the socket from the environment
cli() { ct_as app env HOME=/home/app OPENTOKEN_SOCKET=/run/opentokend/api.sock opentoken "$@"; }
reg=$(cli --format json register pkg@example.com --password-file /home/app/pw 2>&1)
key=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["totp"]["keyHex"])' "$reg" 2>/dev/null)
[ -n "$key" ] && pass "opentoken register" || fail "opentoken register: $reg"
code=$(ct python3 /srv/pkgtest/mailcode.py /var/lib/opentokend/mail 2>&1)
if out=$(cli confirm "$code" 2>&1); then pass "opentoken confirm (code from the spooled mail)"
else fail "opentoken confirm: $out"; fi
totp=$(ct python3 /srv/pkgtest/totp.py "$key")
if out=$(cli login --password-file /home/app/pw --totp-fd 0 <<<"$totp" 2>&1); then pass "opentoken login"
else fail "opentoken login: $out"; fi
if out=$(cli access-code create --description pkgtest --save 2>&1); then pass "opentoken access-code create --save"
else fail "opentoken access-code create: $out"; fi
ct_as app sh -c 'printf "4111 1111 1111 1111\n" > /home/app/secret.txt'
token=$(ct_as app env HOME=/home/app OPENTOKEN_SOCKET=/run/opentokend/api.sock \
        sh -c 'opentoken tokenize --content-type text/plain < /home/app/secret.txt' 2>&1)
if [[ "$token" =~ ^[A-Za-z0-9_-]{32}$ ]]; then pass "opentoken tokenize -> $token"
else fail "opentoken tokenize: $token"; fi
check "opentoken detokenize" "4111 1111 1111 1111" "$(cli detokenize "$token" 2>&1)"

# --- edit the conffile, upgrade -------------------------------------------------------------------
echo "== upgrade to $got2"
ct python3 - <<'PY'
import json
p = "/etc/opentokend/opentokend.json"
c = json.load(open(p))
c["public_url"] = "https://vault.pkgtest.example"
open(p, "w").write(json.dumps(c, indent=2) + "\n")
PY
ct systemctl restart opentokend.service
pid1=$(ct systemctl show -P MainPID opentokend.service)
check "edited config accepted (restart)" "active" "$(ct systemctl is-active opentokend.service)"
data_before=$(ct sh -c 'ls -R /var/lib/opentokend/data /var/lib/opentokend/hsm' | md5sum)
if out=$(ct sh -c 'dpkg -i /root/debs/v2/*.deb </dev/null' 2>&1); then pass "dpkg -i $got2 (no prompt)"
else fail "dpkg -i $got2:"; sed 's/^/    /' <<<"$out"; fi
check "dpkg status" "install ok installed $got2|install ok installed $got2" \
  "$(ct dpkg-query -W -f='${Status} ${Version}|' opentokend opentoken-client | sed 's/|$//')"
pid2=$(ct systemctl show -P MainPID opentokend.service)
check "service after upgrade" "active" "$(ct systemctl is-active opentokend.service)"
if [ -n "$pid2" ] && [ "$pid2" != 0 ] && [ "$pid2" != "$pid1" ]; then pass "service restarted by the upgrade (PID $pid1 -> $pid2)"
else fail "service not restarted by the upgrade (PID $pid1 -> $pid2)"; fi
if ct sh -c 'readlink /proc/$(systemctl show -P MainPID opentokend.service)/exe' | grep -q '^/usr/bin/opentokend$'; then
  pass "the running daemon is the new /usr/bin/opentokend (not a deleted file)"
else fail "the running daemon is not the installed binary"; fi
if ct journalctl -u opentokend.service -o cat | grep '"event":"starting"' | tail -n1 | grep -q "debian/$got2"; then
  pass "start-up line names $got2"
else fail "start-up line does not name debian/$got2"; fi
check "/etc/opentokend after upgrade" "root:opentokend 750" "$(ct stat -c '%U:%G %a' /etc/opentokend 2>&1)"
check "socket after upgrade" "active" "$(ct systemctl is-active opentokend.socket)"
check "GET /healthCheck after upgrade" "HTTP/1.1 200 OK" "$(ct_as app python3 /srv/pkgtest/health.py 2>&1 | head -n1)"
check "edited conffile kept" "https://vault.pkgtest.example" \
  "$(ct python3 -c 'import json; print(json.load(open("/etc/opentokend/opentokend.json")).get("public_url"))')"
check "store and token files kept" "$data_before" \
  "$(ct sh -c 'ls -R /var/lib/opentokend/data /var/lib/opentokend/hsm' | md5sum)"
check "V1 token detokenizes after the upgrade" "4111 1111 1111 1111" "$(cli detokenize "$token" 2>&1)"

# --- purge --------------------------------------------------------------------------------------
echo "== dpkg --purge"
if out=$(ct sh -c 'dpkg --purge opentokend opentoken-client </dev/null' 2>&1); then pass "dpkg --purge"
else fail "dpkg --purge:"; sed 's/^/    /' <<<"$out"; fi
if grep -q "kept /var/lib/opentokend" <<<"$out"; then pass "purge says what it kept"; else fail "purge did not say what it kept: $out"; fi
check "dpkg status" "" "$(ct dpkg-query -W -f='${Status}' opentokend opentoken-client 2>/dev/null | grep -v 'not-installed' || true)"
check "units" "not-found not-found" \
  "$(ct systemctl show -P LoadState opentokend.service) $(ct systemctl show -P LoadState opentokend.socket)"
check "daemon process" "" "$(ct pgrep -x opentokend || true)"
left=
for f in /usr/bin/opentokend /usr/bin/opentoken-admin /usr/bin/opentoken \
         /lib/systemd/system/opentokend.service /lib/systemd/system/opentokend.socket \
         /etc/systemd/system/sockets.target.wants/opentokend.socket \
         /etc/opentokend/opentokend.json /run/opentokend/api.sock; do
  ct test -e "$f" && left+=" $f"
done
check "removed by purge" "" "$left"
kept=
for f in /var/lib/opentokend/data /var/lib/opentokend/hsm /var/log/opentokend /etc/opentokend/pin; do
  ct test -e "$f" && kept+=" $f"
done
check "kept by purge (the vault)" " /var/lib/opentokend/data /var/lib/opentokend/hsm /var/log/opentokend /etc/opentokend/pin" "$kept"
if ct id -u opentokend >/dev/null 2>&1; then pass "system user opentokend kept"; else fail "user opentokend removed"; fi

finish
