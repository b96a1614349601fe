#!/usr/bin/env bash
# The endpoint agent at rest: starts the appliance, registers one `openframe agent run` with it
# (heartbeat every 60 s, as OpenFrame's), lets it settle, then samples the agent's resident
# memory and CPU over SECONDS_HELD (120). The target is under 15 MB RSS and under 0.1% of a core.
#
#   tests/load/agent-idle.sh [BINARY [AGENT]]
#     BINARY default: /var/tmp/openframe-release/release/openframe (the appliance)
#     AGENT  default: openframe-agent next to it; `BINARY agent` when there is none
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:-/var/tmp/openframe-release/release/openframe}
held=${SECONDS_HELD:-120}
agent_binary=${2:-$(dirname "$binary")/openframe-agent}
if [ -x "$agent_binary" ]; then agent_command=("$agent_binary"); else agent_command=("$binary" agent); fi
threads=1 duration=0 results=/dev/null # lib.sh's wrk settings, unused here
source "$here/lib.sh"

"$binary" init --data-dir "$data" --tenant idle --admin-email owner@idle.example \
  --admin-password 'Idle-pass1!' --json >"$work/init.json"
"$binary" org create --data-dir "$data" --tenant idle --id org-idle --name Idle --json >/dev/null
"$binary" tenant agent-secret --data-dir "$data" --tenant idle --json >"$work/secret.json"
secret=$(json_field "$work/secret.json" secret)
https_port=$(free_port)
admin_port=$(free_port)
env RUST_LOG=warn "$binary" serve --data-dir "$data" --listen "127.0.0.1:$https_port" \
  --admin-listen "127.0.0.1:$admin_port" >>"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 300); do
  body=$(curl -fs "http://127.0.0.1:$admin_port/health/ready" 2>/dev/null || true)
  case "$body" in *'"nats":{"engine"'*'"status":"up"'*) break ;; esac
  sleep 0.1
done
env RUST_LOG=warn "${agent_command[@]}" run --server "https://localhost:$https_port" --initial-key "$secret" \
  --org org-idle --state-dir "$work/agent" --ca-file "$data/tls/cert.pem" >>"$work/agent.log" 2>&1 &
agent=$!
trap 'kill "$agent" 2>/dev/null || true; cleanup' EXIT
sleep 15
kill -0 "$agent" 2>/dev/null || { echo "the agent exited:" >&2; cat "$work/agent.log" >&2; exit 1; }
agent_ticks() { awk '{print $14+$15}' "/proc/$agent/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$agent/status"; }
before=$(agent_ticks)
peak=0
for _ in $(seq "$held"); do
  rss=$(rss_kib); [ "$rss" -gt "$peak" ] && peak=$rss
  sleep 1
done
after=$(agent_ticks)
echo "agent: ${agent_command[*]} ($(du -h "${agent_command[0]}" | cut -f1) on disk)"
echo "| agent RSS after settling / peak over ${held}s | agent CPU (percent of one core) |"
echo "|---|---:|"
awk -v now="$(rss_kib)" -v peak="$peak" -v ticks=$((after - before)) -v hz="$ticks_per_second" -v s="$held" \
  'BEGIN {printf "| %.1f / %.1f MiB | %.3f%% |\n", now/1024, peak/1024, ticks/hz/s*100}'
