#!/usr/bin/env bash
# Throughput of the identity provider's hot paths, measured with wrk over HTTPS on loopback:
#   - client_credentials grants/s (one RS256 signature per request),
#   - refresh_token grants/s (one signature, plus a durable write that spends the old token and
#     one that stores the new one),
#   - password sign-ins/s through the login form (one argon2id verification per request).
#
#   tests/load/identity.sh [BINARY]     # default: /var/tmp/openframe-release/release/openframe
#
# Knobs (environment): DURATION (seconds per benchmark, 15), THREADS (wrk threads, 2),
# CONNECTIONS (token benchmarks, 32), LOGIN_CONNECTIONS (8), REFRESH_TOKENS (default: sized from
# the client_credentials rate, see below), QUIET_TIMEOUT (seconds to wait for an idle machine
# before each benchmark, 600), KEEP=1 keeps the data dir and logs.
#
# It bootstraps a fresh data dir (tenant "bench", an owner, one confidential client), starts
# `openframe serve` on free loopback ports, runs the three benchmarks, prints a table and stops
# the server. A run is valid only if every answer was a 200 and no socket error occurred; the
# script exits 1 otherwise.
#
# wrk runs on the same machine as the server and takes part of its CPU; the table shows how the
# CPU was shared (server, wrk, and everything else on the machine, which should be near zero).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:-/var/tmp/openframe-release/release/openframe}
duration=${DURATION:-15}
threads=${THREADS:-2}
connections=${CONNECTIONS:-32}
login_connections=${LOGIN_CONNECTIONS:-8}
refresh_tokens=${REFRESH_TOKENS:-}
tenant=bench
email=owner@bench.example
password='Bench-pass1!'

source "$here/lib.sh"

# --- Set up: tenant + owner, a confidential client with the three grants, and the server. ---
"$binary" init --data-dir "$data" --tenant "$tenant" --admin-email "$email" \
  --admin-password "$password" --json >"$work/init.json"
"$binary" client create --data-dir "$data" --tenant "$tenant" --name load \
  --redirect-uri https://bench.example/cb --grant authorization_code --grant refresh_token \
  --grant client_credentials --json >"$work/client.json"
client_id=$(json_field "$work/client.json" client_id)
client_secret=$(json_field "$work/client.json" client_secret)
# RFC 6749 §2.3.1: id and secret are form-urlencoded, then joined and base64-encoded.
basic=$(python3 -c 'import base64,sys,urllib.parse as u; q=lambda s: u.quote(s, safe="")
print(base64.b64encode(f"{q(sys.argv[1])}:{q(sys.argv[2])}".encode()).decode())' "$client_id" "$client_secret")

https_port=$(free_port)
admin_port=$(free_port)
# JSON logs so the warnings can be counted by message at the end.
# Sign-ins and grants from one address, thousands a second: the per-address limit would refuse them.
OPENFRAME_GATEWAY__PER_IP_REQUESTS_PER_SECOND=0 RUST_LOG=warn "$binary" serve --data-dir "$data" --listen "127.0.0.1:$https_port" \
  --admin-listen "127.0.0.1:$admin_port" --log-format json >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 300); do
  curl -fs "http://127.0.0.1:$admin_port/health/ready" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { echo "serve exited:" >&2; cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done
curl -fs "http://127.0.0.1:$admin_port/health/ready" >/dev/null || { echo "serve never became ready" >&2; exit 1; }
base="https://127.0.0.1:$https_port"
token_url="$base/sas/$tenant/oauth2/token"
login_url="$base/sas/$tenant/login"

echo "binary:   $binary"
echo "data dir: $data ($(df -T "$work" | awk 'NR==2 {print $2}'), synchronous=FULL SQLite: writes wait for fsync)"
echo "machine:  $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) before the run"
echo "wrk:      -t$threads, ${duration}s per benchmark, --timeout 10s"

results=$work/results
: >"$results"

# --- 1. client_credentials ---
echo
echo "== client_credentials (-c$connections)"
status=$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Basic $basic" \
  -d grant_type=client_credentials "$token_url")
[ "$status" = 200 ] || { echo "client_credentials answered $status; not benchmarking" >&2; exit 1; }
bench client_credentials "$connections" identity-client-credentials.lua "$token_url" "$basic"

# --- 2. refresh_token ---
# Each request spends one never-used token. A refresh does everything a client_credentials grant
# does (one signature, same lookups) plus two durable writes, so it cannot outrun it: 1.3 times
# what client_credentials achieved over the same duration is enough, and running out shows up
# as non-200 answers (the run is then invalid).
cc_rate=$(awk '$2 == "client_credentials" {print $3}' "$results")
if [ -z "$refresh_tokens" ]; then
  refresh_tokens=$(awk -v rate="$cc_rate" -v d="$duration" 'BEGIN {printf "%d", rate * d * 1.3 + 1000}')
fi
echo
echo "== refresh_token (-c$connections): minting $refresh_tokens refresh tokens first"
python3 "$here/identity-tokens.py" --base "$base" --tenant "$tenant" --client-id "$client_id" \
  --client-secret "$client_secret" --email "$email" --password "$password" \
  --count "$refresh_tokens" --out "$work/refresh-tokens.txt"
bench refresh "$connections" identity-refresh.lua "$token_url" "$basic" \
  "$work/refresh-tokens.txt" "$threads"
# The file is now spent: presenting any of its tokens again would revoke its family.
rm -f "$work/refresh-tokens.txt"

# --- 3. password sign-ins ---
# One CSRF pair (form token + of_csrf cookie) serves every POST. One sign-in is checked by hand
# first: a wrong one would count towards the per-account throttle.
echo
echo "== login (-c$login_connections)"
form=$(curl -sk -c "$work/cookies" "$login_url")
csrf=$(printf '%s' "$form" | sed -n 's/.*name="_csrf" value="\([^"]*\)".*/\1/p')
csrf_cookie=$(awk '$6 == "of_csrf" {print $7}' "$work/cookies")
[ -n "$csrf" ] && [ -n "$csrf_cookie" ] || { echo "no CSRF pair in the login form" >&2; exit 1; }
status=$(curl -sk -o /dev/null -w '%{http_code}' -b "of_csrf=$csrf_cookie" \
  --data-urlencode "username=$email" --data-urlencode "password=$password" \
  --data-urlencode "_csrf=$csrf" "$login_url")
[ "$status" = 200 ] || { echo "sign-in answered $status; not benchmarking" >&2; exit 1; }
bench login "$login_connections" identity-login.lua "$login_url" "$email" "$password" "$csrf" "$csrf_cookie"

# --- Summary ---
print_summary

invalid=$(awk '$6 != 0 || $7 != 0 || $9 != 0 {print $2}' "$results")
if [ -n "$invalid" ]; then
  echo "INVALID run: non-200 answers, socket errors or spent tokens in: $invalid" >&2
  exit 1
fi
echo "valid run: every answer was a 200"
