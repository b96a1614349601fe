#!/usr/bin/env bash
# The event pipeline under load, in one run on this machine:
#   - latency:     ingest -> searchable at a steady RATE events/s (10,000): 100-event requests
#                  paced by wrk's delay hook for DURATION seconds; the appliance's histogram
#                  openframe_stream_searchable_seconds (append to the checkpoint after which the
#                  event is searchable) gives p50 and p99, at its bucket resolution;
#   - e2e:         events/s from the first request until every event is processed (log details,
#                  DuckDB, tantivy committed): BATCH-500 requests for DURATION seconds, then the
#                  wait until the backlog is empty;
#   - ingest-500, ingest-1: durable ingest (acknowledged after fsync) with 500 and 1 events per
#                  request, wrk over HTTPS; the worker processes the backlog at the same time, as
#                  in production;
#   - jetstream-500, jetstream-1: the peer, the same events published into nats-server JetStream
#                  (file storage) with every publish acknowledged, by examples/jetstream_peer.rs.
#                  With nats-server >= 2.10 the stream fsyncs every write (sync_interval: always),
#                  the appliance's durability; Debian's 2.9.10 cannot, and the table says so.
#
#   tests/load/ingest.sh [BINARY]      # default: /var/tmp/openframe-release/release/openframe
#
# Knobs (environment): DURATION (seconds per benchmark, 10), THREADS (wrk threads, 2), RATE (10000),
# NATS_SERVER (default: nats-server on PATH), PEER (the jetstream_peer binary; default: built
# with cargo into the release target dir), QUIET_TIMEOUT (600), KEEP=1 keeps the data dir.
# Every event is new (unique ids, timestamped now). A run is valid only if every answer was a 200
# accepting every event; it exits 1 otherwise.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:-/var/tmp/openframe-release/release/openframe}
duration=${DURATION:-10}
threads=${THREADS:-2}
tenant=bench
nats_server=${NATS_SERVER:-$(command -v nats-server || true)}
peer=${PEER:-}

source "$here/lib.sh"
[ -x "$nats_server" ] || { echo "nats-server is needed for the peer (apt-get install -y nats-server)" >&2; exit 1; }
if [ -z "$peer" ]; then
  (cd "$here/../.." && CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/openframe-release} \
    cargo build --release --example jetstream_peer -q)
  peer=${CARGO_TARGET_DIR:-/var/tmp/openframe-release}/release/examples/jetstream_peer
fi

"$binary" init --data-dir "$data" --tenant "$tenant" --admin-email owner@bench.example \
  --admin-password 'Bench-pass1!' --json >"$work/init.json"
"$binary" apikey create --data-dir "$data" --tenant "$tenant" --name load --scope ingest \
  --per-minute 4000000000 --per-hour 4000000000 --per-day 4000000000 --json >"$work/key.json"
api_key=$(json_field "$work/key.json" fullKey)

https_port=$(free_port)
admin_port=$(free_port)
env RUST_LOG=warn OPENFRAME_STREAM__MAX_BACKLOG_EVENTS=4000000000 "$binary" serve --data-dir "$data" \
  --listen "127.0.0.1:$https_port" --admin-listen "127.0.0.1:$admin_port" --log-format json \
  >>"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 300); do
  curl -fs "http://127.0.0.1:$admin_port/health/ready" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { echo "serve exited:" >&2; cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done
url="https://127.0.0.1:$https_port/ingest/v1/debezium"
metric() { # metric NAME_AND_LABELS: its value on /metrics (0 when absent)
  curl -fs "http://127.0.0.1:$admin_port/metrics" | awk -v name="$1" '$1 == name {print $2; found=1} END {if (!found) print 0}'
}

echo "binary:   $binary"
echo "peer:     $("$nats_server" --version) with $peer"
echo "machine:  $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) before the run"
results=$work/results
: >"$results"

# --- Latency at a steady rate: 20 connections of 100-event requests, each paced. ---
rate=${RATE:-10000}
# A connection sends one request per (delay + response time); responses take a few ms here.
delay=$(( 20 * 100 * 1000 / rate - 10 ))
[ "$delay" -gt 0 ] || delay=1
wait_for_quiet
DELAY_MS=$delay LABEL=latency wrk -t"$threads" -c20 -d"${duration}s" --timeout 30s --latency -s "$here/ingest.lua" "$url" \
  -- latency "$api_key" 100 >"$work/latency.wrk"
grep -q '^RESULT latency .* 0 0 ' "$work/latency.wrk" || { cat "$work/latency.wrk"; echo "latency: some requests failed" >&2; exit 1; }
offered=$(awk '/^RESULT/ {printf "%.0f", $3 * 100}' "$work/latency.wrk")
while [ "$(metric openframe_stream_backlog)" != 0 ]; do sleep 0.1; done
sleep 1 # the checkpoint after the last batch
curl -fs "http://127.0.0.1:$admin_port/metrics" >"$work/latency.metrics"
searchable=$(python3 - "$work/latency.metrics" <<'PY'
import re, sys
buckets = []
for line in open(sys.argv[1]):
    m = re.match(r'openframe_stream_searchable_seconds_bucket\{le="([^"]+)"\} (\d+)', line)
    if m:
        buckets.append((float(m.group(1)), int(m.group(2))))
count = buckets[-1][1] if buckets else 0
def quantile(q):
    for bound, cumulative in buckets:
        if cumulative >= q * count:
            return "<= %g ms" % (bound * 1000) if bound != float("inf") else "> 60 s"
    return "?"
print(f"{count} events, p50 {quantile(0.5)}, p99 {quantile(0.99)}")
PY
)
echo "latency at $offered events/s offered: $searchable"

# --- End to end: from the first request until everything accepted is processed. ---
wait_for_quiet
logged_before=$(metric 'openframe_stream_events_total{outcome="logged"}')
start=$(date +%s.%N)
LABEL=e2e wrk -t"$threads" -c4 -d"${duration}s" --timeout 30s --latency -s "$here/ingest.lua" "$url" \
  -- e2e "$api_key" 500 >"$work/e2e.wrk"
sed 's/^/    /' "$work/e2e.wrk"
grep -q '^RESULT e2e .* 0 0 ' "$work/e2e.wrk" || { echo "e2e: some requests failed" >&2; exit 1; }
ingested=$(date +%s.%N)
while [ "$(metric openframe_stream_backlog)" != 0 ]; do sleep 0.1; done
processed=$(date +%s.%N)
logged=$(( $(metric 'openframe_stream_events_total{outcome="logged"}') - logged_before ))
echo "e2e: $logged events logged; ingest took $(echo "$ingested - $start" | bc) s, processing ended $(echo "$processed - $start" | bc) s after the start"
e2e_rate=$(echo "$logged / ($processed - $start)" | bc)

# --- Durable ingest, the worker running as in production. ---
export LABEL
LABEL=ingest-500 && bench ingest-500 8 ingest.lua "$url" ingest-500 "$api_key" 500
LABEL=ingest-1 && bench ingest-1 32 ingest.lua "$url" ingest-1 "$api_key" 1

# --- The peer: JetStream, file storage, every publish acknowledged. ---
nats_port=$(free_port)
sync=""
if "$nats_server" --version | grep -qE 'v2\.(1[0-9]|[2-9][0-9])\.'; then sync="sync_interval: always"; fi
cat >"$work/nats.conf" <<CONF
listen: 127.0.0.1:$nats_port
jetstream {
  store_dir: "$work/jetstream"
  $sync
}
CONF
stop_server
"$nats_server" -c "$work/nats.conf" >"$work/nats.log" 2>&1 &
server=$!
sleep 0.5
kill -0 "$server" 2>/dev/null || { echo "nats-server exited:" >&2; cat "$work/nats.log" >&2; exit 1; }
printf '%s' "$(awk 'NR==1' "$here/../../../shared/fixtures/meshcentral-events.ndjson")" >"$work/event.json"
for batch in 500 1; do
  connections=$([ "$batch" = 1 ] && echo 32 || echo 8)
  wait_for_quiet
  before_machine=$(machine_ticks); before_server=$(server_ticks)
  line=$("$peer" "nats://127.0.0.1:$nats_port" "$batch" "$connections" "$duration" "$work/event.json")
  after_machine=$(machine_ticks); after_server=$(server_ticks)
  cpu=$(echo "$before_machine $after_machine $before_server $after_server" |
    awk -v cores="$cores" '{wall = ($4 - $2) / cores; printf "%.0f", ($6 - $5) / wall * 100}')
  echo "    $line (server CPU $cpu%)"
  echo "$line $batch $connections $cpu $(server_rss_mib)" >>"$work/peer"
done

echo
echo "| benchmark | events per request | conns | events/s | p50 ms | p99 ms | failed | server CPU | server RSS MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
# RESULT label rps p50 p99 non200 socket requests extra conns server% wrk% other% rss
awk '{batch = ($2 == "ingest-1") ? 1 : 500
  printf "| appliance %s | %d | %d | %.0f | %.1f | %.1f | %d | %d%% | %d |\n",
  $2, batch, $10, $3 * batch, $4, $5, $6 + $7, $11, $14}' "$results"
# PEER events/s p50 p99 events batch conns cpu rss
awk -v sync="${sync:-lazy fsync}" '{printf "| jetstream (%s) | %d | %d | %.0f | %.1f | %.1f | 0 | %d%% | %d |\n",
  sync, $6, $7, $2, $3, $4, $8, $9}' "$work/peer"
echo
echo "end to end (ingest until processed into details, DuckDB and tantivy): $e2e_rate events/s"
echo "ingest -> searchable at $offered events/s (100-event requests): $searchable"
echo "(CPU in percent of one core; the machine has $cores. wrk and the peer's publisher run on the same cores.)"
failed=$(awk '{s += $6 + $7} END {print s + 0}' "$results")
[ "$failed" = 0 ] || { echo "some requests failed" >&2; exit 1; }
