#!/usr/bin/env bash
# Measures how long `openframe serve` takes from exec to a 200 from /health/ready, and its resident
# memory once idle, over several runs on fresh data dirs (first start, which generates the
# certificate and creates every store) and on the same data dir (restart).
#
#   tests/load/startup.sh [BINARY] [RUNS]      # default: target/release/openframe, 5 runs
#
# Uses loopback ports chosen for the run, and stops each server with SIGTERM.
set -euo pipefail
binary=${1:-${CARGO_TARGET_DIR:-target}/release/openframe}
runs=${2:-5}
[ -x "$binary" ] || { echo "no executable at $binary; build it with cargo build --release" >&2; exit 1; }

now_ms() { date +%s%3N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

measure() { # data_dir label
  local data=$1 label=$2 https admin start pid ready rss
  https=$(free_port); admin=$(free_port)
  start=$(now_ms)
  "$binary" serve --data-dir "$data" --listen "127.0.0.1:$https" --admin-listen "127.0.0.1:$admin" \
    --log-format json 2>/dev/null &
  pid=$!
  until curl -fs "http://127.0.0.1:$admin/health/ready" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { echo "serve exited before it was ready" >&2; exit 1; }
    sleep 0.005
  done
  ready=$(( $(now_ms) - start ))
  sleep 5 # idle
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"; wait "$pid"
  echo "$label $ready $rss"
}

results=$(mktemp)
for run in $(seq 1 "$runs"); do
  dir=$(mktemp -d)
  measure "$dir/data" first >>"$results"
  measure "$dir/data" restart >>"$results"
  rm -rf "$dir"
done
echo "| start | runs | ready p50 (ms) | ready max (ms) | idle RSS p50 (MiB) |"
echo "|---|---:|---:|---:|---:|"
median() { sort -n | awk '{ v[NR]=$1 } END { print v[int((NR+1)/2)] }'; }
maximum() { sort -n | tail -n 1; }
for label in first restart; do
  ready=$(grep "^$label " "$results" | cut -d' ' -f2)
  rss=$(grep "^$label " "$results" | cut -d' ' -f3)
  printf '| %s | %d | %d | %d | %.1f |\n' "$label" "$(echo "$ready" | wc -l)" \
    "$(echo "$ready" | median)" "$(echo "$ready" | maximum)" "$(echo "$(echo "$rss" | median) / 1024" | bc -l)"
done
rm -f "$results"
