#!/usr/bin/env bash
# Installs a built .deb on this machine and checks it as an operator would: files, owners and
# modes, the unit's systemd exposure, then the installed binary run as the service user with the
# unit's own command line against the installed config (health, the login page, one API call),
# then remove (data kept) and purge (data, settings and user gone). Prints install-to-ready time.
#
#   packaging/smoke-test.sh target/debian/openframe_<version>_amd64.deb
#
# Needs root, and changes this machine: run it on CI's throwaway machine or a VM, not beside a
# real installation (it refuses to run where one exists). Without a running systemd, the
# package's start of the unit is skipped by deb-systemd-invoke, as on any container.
set -euo pipefail

deb=${1:?usage: packaging/smoke-test.sh FILE.deb}
fail() { echo "smoke test: FAILED: $*" >&2; exit 1; }
say() { echo "smoke test: $*"; }
[ "$(id -u)" = 0 ] || fail "run it as root"
[ -f "$deb" ] || fail "no such package: $deb"
if getent passwd openframe >/dev/null || [ -e /var/lib/openframe ] || [ -e /etc/openframe ]; then
    fail "an openframe installation is on this machine already; this test will not touch it"
fi
for tool in curl python3 systemd-analyze; do
    command -v "$tool" >/dev/null || fail "needs $tool"
done

unit=/usr/lib/systemd/system/openframe.service
served=""
cleanup() {
    # Stopped and reaped first: a user with a running process cannot be deleted by the purge.
    if [ -n "$served" ]; then
        kill -TERM "$served" 2>/dev/null || true
        wait "$served" 2>/dev/null || true
    fi
    dpkg -P openframe >/dev/null 2>&1 || true
}
trap cleanup EXIT

started=$(date +%s%N)
output=$(dpkg -i "$deb" 2>&1) || fail "dpkg -i: $output"
grep -q "Sign in:" <<<"$output" || fail "the installation did not print where to sign in: $output"
say "installed $(dpkg-query -W -f '${Package} ${Version}' openframe)"

# Files, owners, modes.
[ "$(stat -c '%a %U %G' /etc/openframe/config.toml)" = "640 root openframe" ] \
    || fail "/etc/openframe/config.toml is $(stat -c '%a %U %G' /etc/openframe/config.toml)"
[ "$(stat -c '%a %U %G' /var/lib/openframe)" = "700 openframe openframe" ] \
    || fail "/var/lib/openframe is $(stat -c '%a %U %G' /var/lib/openframe)"
[ "$(getent passwd openframe | cut -d: -f7)" = "/usr/sbin/nologin" ] || fail "openframe may log in"
[ -x /usr/bin/openframe ] && [ -f "$unit" ] || fail "the binary or the unit is missing"
dpkg-query -W -f '${Conffiles}' openframe | grep -q /etc/openframe/config.toml \
    || fail "the config is not a conffile"
grep -q '^Type=notify' "$unit" || fail "the unit is not Type=notify"

# The unit's exposure as systemd rates it (0 best, 10 worst); the target is 2.0 or less.
exposure=$(systemd-analyze security --offline=true "$unit" 2>/dev/null \
    | sed -n 's/.*Overall exposure level for openframe.service: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || fail "systemd-analyze gave no exposure"
python3 -c "import sys; sys.exit(0 if float('$exposure') <= 2.0 else 1)" \
    || fail "exposure $exposure is above 2.0"
say "systemd-analyze security exposure: $exposure"

# The unit's command line, run as its user (systemd would add the sandbox around it).
execstart=$(sed -n 's/^ExecStart=//p' "$unit")
[ -n "$execstart" ] || fail "no ExecStart in the unit"
log=$(mktemp)
# shellcheck disable=SC2086 # the unit's command line is split as systemd splits it
# setpriv execs the command itself (runuser would stay as its parent and take the signals).
setpriv --reuid=openframe --regid=openframe --init-groups -- $execstart >"$log" 2>&1 &
served=$!
ready=""
for _ in $(seq 1 1200); do
    if /usr/bin/openframe healthcheck --url http://127.0.0.1:9090/health/ready >/dev/null 2>&1; then
        ready=$(date +%s%N)
        break
    fi
    kill -0 "$served" 2>/dev/null || fail "openframe exited: $(tail -5 "$log")"
    sleep 0.1
done
[ -n "$ready" ] || fail "not ready within 120 s: $(tail -5 "$log")"
say "install to ready: $(( (ready - started) / 1000000 )) ms"

# Health, the login page, one API call.
ca=/var/lib/openframe/tls/cert.pem
# The console's front page sends a visitor without a session to its sign-in page.
page=$(curl -sS --fail -L --cacert "$ca" https://localhost:8443/) || fail "the front page"
grep -q 'id="login-form"' <<<"$page" || fail "the front page did not lead to the console's sign-in: $page"
curl -sS --fail --cacert "$ca" -o /dev/null https://localhost:8443/assets/app.js || fail "the console's script"
login=$(curl -sS --fail --cacert "$ca" https://localhost:8443/sas/default/login) || fail "the login page"
grep -q "<form" <<<"$login" || fail "the login page has no form"
[ -s /var/lib/openframe/initial-admin-password ] || fail "no initial admin password was kept"
key=$(runuser -u openframe -- /usr/bin/openframe apikey create --config /etc/openframe/config.toml \
    --data-dir /var/lib/openframe --tenant default --name smoke --json \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["fullKey"])') || fail "apikey create"
# A key made by another process is read by the server within 10 s of its first use.
me=""
for _ in $(seq 1 30); do
    if me=$(curl -sS --fail --cacert "$ca" -H "X-API-Key: $key" \
        https://localhost:8443/external-api/api/v1/me 2>/dev/null); then
        break
    fi
    me=""
    sleep 1
done
[ -n "$me" ] || fail "the API call was refused for 30 s"
python3 -c 'import json, sys; assert json.loads(sys.argv[1])["tenantId"] == "default", sys.argv[1]' "$me" \
    || fail "/me answered $me"
say "health, login page and /external-api/api/v1/me answer"
say "binary $(stat -c %s /usr/bin/openframe) bytes, package $(stat -c %s "$deb") bytes"

# A clean stop.
kill -TERM "$served"
status=0
wait "$served" || status=$?
served=""
[ "$status" = 0 ] || fail "openframe stopped with status $status: $(tail -5 "$log")"
grep -q "stopped cleanly" "$log" || fail "no clean stop in the log"

# Remove keeps data and settings; purge deletes them and the user.
dpkg -r openframe >/dev/null
[ ! -e /usr/bin/openframe ] || fail "remove left the binary"
[ -s /var/lib/openframe/tenancy.sqlite ] || fail "remove lost the data"
[ -f /etc/openframe/config.toml ] || fail "remove lost the settings"
dpkg -P openframe >/dev/null
[ ! -e /var/lib/openframe ] && [ ! -e /etc/openframe ] || fail "purge left data or settings"
! getent passwd openframe >/dev/null || fail "purge left the user"
rm -f "$log"
say "remove kept the data, purge removed it; all passed"
