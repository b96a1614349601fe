#!/usr/bin/env bash
# What anomaly detection costs: the appliance's CPU time (user + system, from /proc) to ingest and
# fully process EVENTS (100,000) Fleet activity events, with [detection] off and on, in one run on
# this machine. Each mode gets a fresh data dir and the same events (sign-ins, scripts, software,
# 2% failed sign-ins, spread over the last 24 hours, one device per host id); the time counted runs
# from the first request until the pipeline's backlog is empty and the process has been idle for 3 s
# (so the detector has read everything). With detection on, the alerts it wrote are counted too.
#
#   tests/load/detection.sh [BINARY]      # default: /var/tmp/openframe-release/release/openframe
#
# Knobs (environment): EVENTS (100000), BATCH (1000 per request), KEEP=1 keeps the scratch dir.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:-/var/tmp/openframe-release/release/openframe}
events=${EVENTS:-100000}
batch=${BATCH:-1000}
tenant=bench
source "$here/lib.sh"

# The same events for both runs, as files of BATCH NDJSON lines.
python3 - "$work/events" "$events" "$batch" <<'PY'
import json, os, random, sys, time
folder, total, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(folder)
rng = random.Random(7)
now = int(time.time())
kinds = ["user_logged_in"] * 40 + ["ran_script"] * 30 + ["added_software"] * 20 + ["user_failed_login"] * 2 + ["created_user"] * 8
rows = []
for i in range(total):
    at = now - 86400 + i * 86400 // total
    kind = rng.choice(kinds)
    details = {"host_id": rng.randrange(500), "public_ip": "203.0.113.7"}
    rows.append(json.dumps({"before": None, "after": {
        "id": 1_000_000 + i, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)),
        "user_id": rng.randrange(20), "user_name": "Tech", "user_email": f"tech{rng.randrange(20)}@msp.example",
        "activity_type": kind, "details": json.dumps(details), "streamed": 0, "fleet_initiated": 0, "host_only": 0},
        "source": {"connector": "mysql", "name": "fleet_mysql", "db": "fleet", "table": "activities"},
        "op": "c", "ts_ms": at * 1000}))
for n, start in enumerate(range(0, total, batch)):
    with open(os.path.join(folder, f"{n:05d}.ndjson"), "w") as out:
        out.write("\n".join(rows[start:start + batch]) + "\n")
PY

metric() { curl -fs "http://127.0.0.1:$admin_port/metrics" | awk -v name="$1" '$1 == name {print $2; found=1} END {if (!found) print 0}'; }

run() { # run on|off: prints "CPU_SECONDS ALERTS"
  local mode=$1
  data=$work/data-$mode
  "$binary" init --data-dir "$data" --tenant "$tenant" --admin-email owner@bench.example \
    --admin-password 'Bench-pass1!' --json >"$work/init-$mode.json"
  "$binary" apikey create --data-dir "$data" --tenant "$tenant" --name load --scope ingest \
    --per-minute 4000000000 --per-hour 4000000000 --per-day 4000000000 --json >"$work/key-$mode.json"
  local key
  key=$(json_field "$work/key-$mode.json" fullKey)
  export OPENFRAME_DETECTION__ENABLED=$([ "$mode" = on ] && echo true || echo false)
  export OPENFRAME_DETECTION__INTERVAL_SECONDS=1 OPENFRAME_STREAM__MAX_BACKLOG_EVENTS=4000000000
  serve_on_loopback
  # One event first, so the detector has started (it begins at the end of the log) before the load.
  head -1 "$work/events/00000.ndjson" | sed 's/"id": 1000000,/"id": 999999,/' >"$work/first.ndjson"
  curl -fsk "$base/ingest/v1/debezium" -H "X-API-Key: $key" -H "message-type: FLEET_ACTIVITY" \
    -H "Content-Type: application/x-ndjson" --data-binary @"$work/first.ndjson" >/dev/null
  sleep 3
  wait_for_quiet
  local before after logged_before logged
  logged_before=$(metric 'openframe_stream_events_total{outcome="logged"}')
  before=$(server_ticks)
  for file in "$work"/events/*.ndjson; do
    curl -fsk "$base/ingest/v1/debezium" -H "X-API-Key: $key" -H "message-type: FLEET_ACTIVITY" \
      -H "Content-Type: application/x-ndjson" --data-binary @"$file" >"$work/answer.json"
    grep -q '"rejected":\[\]' "$work/answer.json" || { cat "$work/answer.json" >&2; exit 1; }
  done
  while [ "$(metric openframe_stream_backlog)" != 0 ]; do sleep 0.2; done
  # Idle: under 3 ticks in 3 s (the detector reads once a second).
  local last now
  last=$(server_ticks)
  while sleep 3; now=$(server_ticks); [ $((now - last)) -ge 3 ]; do last=$now; done
  after=$(server_ticks)
  logged=$(( $(metric 'openframe_stream_events_total{outcome="logged"}') - logged_before ))
  stop_server
  echo "$(echo "scale=2; ($after - $before) / $ticks_per_second" | bc) $((logged - events))"
}

echo "binary: $binary; $events events in requests of $batch; $(nproc) cores"
read -r off _ < <(run off)
read -r on alerts < <(run on)
echo "detection off: ${off} s of CPU per $events events"
echo "detection on:  ${on} s of CPU per $events events ($alerts alert entries logged)"
echo "ratio on/off:  $(echo "scale=3; $on / $off" | bc)"
