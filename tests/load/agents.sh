#!/usr/bin/env bash
# Holds AGENTS simulated agents (examples/agent_swarm.rs) heartbeating every INTERVAL seconds
# over wss://…/ws/nats for SECONDS, and reports what the appliance spends on them: resident
# memory (idle, with every agent connected, peak) and CPU, plus the supervised nats-server's.
# Each agent registers and authenticates over HTTP first, as OpenFrame's agent does.
#
#   tests/load/agents.sh [BINARY] [SWARM]
#     BINARY default: /var/tmp/openframe-release/release/openframe
#     SWARM  default: the agent_swarm example next to it (…/release/examples/agent_swarm)
#
# Knobs (environment): AGENTS (10000), INTERVAL (6 s: OpenFrame's 60 s scaled up ten times),
# SECONDS_HELD (120, after the last agent connected), CONNECTS (500 per second),
# NATS_SERVER (a nats-server binary; default: the one on PATH), KEEP=1 keeps the data dir.
# Build both with: cargo build --release --bin openframe --example agent_swarm
# The run is valid only if every agent registered and stayed connected with no error; it exits
# 1 otherwise.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:-/var/tmp/openframe-release/release/openframe}
swarm=${2:-$(dirname "$binary")/examples/agent_swarm}
agents=${AGENTS:-10000}
interval=${INTERVAL:-6}
held=${SECONDS_HELD:-120}
connects=${CONNECTS:-500}
threads=1 duration=0 results=/dev/null # lib.sh's wrk settings, unused here
tenant=bench

source "$here/lib.sh"
[ -x "$swarm" ] || { echo "no agent_swarm at $swarm" >&2; exit 1; }
# Ten thousand agents need ten thousand descriptors in the appliance and in the swarm.
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((agents + 1000)) ] || { echo "ulimit -n $(ulimit -n) is too low for $agents agents" >&2; exit 1; }

"$binary" init --data-dir "$data" --tenant "$tenant" --admin-email owner@bench.example \
  --admin-password 'Bench-pass1!' --json >"$work/init.json"
"$binary" org create --data-dir "$data" --tenant "$tenant" --id org-swarm --name Swarm --json >/dev/null
"$binary" tenant agent-secret --data-dir "$data" --tenant "$tenant" --json >"$work/secret.json"
secret=$(json_field "$work/secret.json" secret)

https_port=$(free_port)
admin_port=$(free_port)
# One client address registers every agent: the per-address limit is off for the run.
env RUST_LOG=warn OPENFRAME_GATEWAY__PER_IP_REQUESTS_PER_SECOND=0 \
  ${NATS_SERVER:+OPENFRAME_NATS__SERVER_PATH=$NATS_SERVER} \
  "$binary" serve --data-dir "$data" --listen "127.0.0.1:$https_port" \
  --admin-listen "127.0.0.1:$admin_port" --log-format json >>"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 300); do
  body=$(curl -fs "http://127.0.0.1:$admin_port/health/ready" 2>/dev/null || true)
  case "$body" in *'"nats":{"engine"'*'"status":"up"'*) break ;; esac
  kill -0 "$server" 2>/dev/null || { echo "serve exited:" >&2; cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done
case "$body" in *'"status":"up"'*) ;; *) echo "serve or its nats-server never became ready: $body" >&2; exit 1 ;; esac
nats_pid=$(pgrep -P "$server" nats-server || true)
[ -n "$nats_pid" ] || { echo "no supervised nats-server under $server" >&2; exit 1; }
nats_rss_mib() { awk '/^VmRSS/ {printf "%d", $2/1024}' "/proc/$nats_pid/status"; }
nats_ticks() { awk '{print $14+$15}' "/proc/$nats_pid/stat"; }
metric() { curl -fs "http://127.0.0.1:$admin_port/metrics" | awk -v name="$1" '$1 == name {print $2}'; }

sleep 3
idle_rss=$(server_rss_mib)
echo "binary:   $binary"
echo "machine:  $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg) before the run"
echo "agents:   $agents, a heartbeat every ${interval}s, held ${held}s after the last connects (${connects}/s)"
echo "idle:     appliance ${idle_rss} MiB, nats-server $(nats_rss_mib) MiB"

ramp=$(( (agents + connects - 1) / connects ))
"$swarm" "https://127.0.0.1:$https_port" "$data/tls/cert.pem" "$secret" org-swarm "$agents" \
  "$interval" $((ramp + held)) "$connects" >"$work/swarm.out" 2>"$work/swarm.err" &
swarm_pid=$!

# Registration comes first: the memory it leaves behind, before any session opens.
peak=0 sessions=0 online=0 registered_rss=0
until grep -q '^registered' "$work/swarm.err" 2>/dev/null; do
  kill -0 "$swarm_pid" 2>/dev/null || break
  rss=$(server_rss_mib); [ "$rss" -gt "$peak" ] && peak=$rss
  sleep 1
done
registered_rss=$(server_rss_mib)
echo "registered: $(grep '^registered' "$work/swarm.err"); appliance ${registered_rss} MiB"
# Wait for every agent to connect, then measure the held period.
while kill -0 "$swarm_pid" 2>/dev/null; do
  sessions=$(metric openframe_agent_sessions || echo 0)
  rss=$(server_rss_mib); [ "$rss" -gt "$peak" ] && peak=$rss
  [ "${sessions:-0}" -ge "$agents" ] && break
  sleep 1
done
echo "connected: ${sessions:-0} sessions; $(tail -n 1 "$work/swarm.err")"
before_server=$(server_ticks); before_nats=$(nats_ticks); before_machine=$(machine_ticks)
start=$(date +%s)
samples=$work/rss
: >"$samples"
while kill -0 "$swarm_pid" 2>/dev/null; do
  rss=$(server_rss_mib); echo "$rss" >>"$samples"; [ "$rss" -gt "$peak" ] && peak=$rss
  online=$(metric openframe_agents_online || echo 0)
  sessions=$(metric openframe_agent_sessions || echo 0)
  sleep 5
done
wait "$swarm_pid" || true
after_server=$(server_ticks); after_nats=$(nats_ticks); after_machine=$(machine_ticks)
wall=$(( $(date +%s) - start ))
held_rss=$(sort -n "$samples" | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
cpu() { echo "$1 $2 $wall" | awk -v hz="$ticks_per_second" '{printf "%.0f", ($2 - $1) / hz / $3 * 100}'; }
summary=$(cat "$work/swarm.out")
echo
echo "| agents | interval | held s | heartbeats/s | online (last) | appliance RSS idle / registered / held p50 / peak MiB | appliance CPU | nats-server RSS MiB | nats-server CPU | machine CPU |"
echo "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"
echo "$summary" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(s["heartbeats"])' >"$work/heartbeats"
printf '| %d | %ss | %d | %.0f | %s | %s / %s / %s / %s | %s%% | %s | %s%% | %s%% |\n' \
  "$agents" "$interval" "$wall" "$(echo "$(cat "$work/heartbeats") / ($wall + $ramp)" | bc -l)" "$online" \
  "$idle_rss" "$registered_rss" "$held_rss" "$peak" "$(cpu "$before_server" "$after_server")" "$(nats_rss_mib)" \
  "$(cpu "$before_nats" "$after_nats")" \
  "$(echo "$before_machine $after_machine" | awk -v cores="$cores" -v wall="$wall" -v hz="$ticks_per_second" '{printf "%.0f", ($3 - $1) / hz / wall * 100}')"
echo "(CPU in percent of one core over the held period; the machine has $cores. heartbeats/s over the"
echo " whole swarm run, ramp included.)"
echo "swarm: $summary"
python3 - "$agents" <<EOF
import json, sys
s = json.loads('''$summary''')
agents = int(sys.argv[1])
problems = [k for k in ("errors", "dropped") if s[k]] + (["registered"] if s["registered"] != agents else [])
if problems:
    print("INVALID RUN:", ", ".join(problems), file=sys.stderr)
    sys.exit(1)
EOF
print_summary | sed -n '/^server log/,$p'
