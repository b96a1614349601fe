#!/usr/bin/env bash
# Technician GraphQL latency on 2 cores, measured with wrk over HTTPS on loopback: p50 and p99 of
#   - devices-page:     devices(first: 50) with organization and tags, over DEVICES (10,000) devices,
#   - devices-filtered: the same with status, OS and tag filters, a search and a sort,
#   - device-facets:    deviceFilters (every facet with counts),
#   - logs-page:        logs(first: 50), newest first, over LOGS (1,000,000) rows,
#   - logs-search:      logs(first: 50) with severity, tool and 7-day filters plus a full-text search,
#   - logs-search-all:  logs(first: 50) with the same search over all 30 days and no other filter,
#   - logs-deep:        logs(first: 50) from a cursor deep in the list (keyset paging),
#   - log-facets:       logFilters with the same filters and search.
# The data is seeded through the storage traits by examples/seed_bench.rs (30 days of logs, 50
# customers); the token comes from the real sign-in (admin-token.py). One connection: latency,
# not throughput. Target (issue 6): p99 < 50 ms.
#
#   tests/load/graphql.sh [BINARY [SEEDER]]
#     defaults: /var/tmp/openframe-release/release/openframe and …/release/examples/seed_bench
#
# Knobs (environment): DEVICES (10000), LOGS (1000000), DURATION (seconds per query, 15),
# CONNECTIONS (1), THREADS (1), QUIET_TIMEOUT (600), KEEP=1 keeps the scratch dir and logs,
# REUSE=DIR seeds once into DIR and reuses it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:-/var/tmp/openframe-release/release/openframe}
seeder=${2:-/var/tmp/openframe-release/release/examples/seed_bench}
devices=${DEVICES:-10000}
logs=${LOGS:-1000000}
duration=${DURATION:-15}
threads=${THREADS:-1}
connections=${CONNECTIONS:-1}
tenant=bench
[ -x "$seeder" ] || { echo "no seeder at $seeder (cargo build --release --example seed_bench)" >&2; exit 1; }

source "$here/lib.sh"
results=$work/results
: >"$results"

# REUSE=DIR keeps the seeded data dir there and uses it again on the next run with the same
# sizes (seeding a million rows takes a minute and a half).
if [ -n "${REUSE:-}" ]; then
  data=$REUSE/data-$devices-$logs
fi
if [ ! -d "$data" ]; then
  "$binary" init --data-dir "$data" --tenant "$tenant" --admin-email owner@bench.example \
    --admin-password 'Bench-pass1!' --json >"$work/init.json"
  echo "seeding $devices devices and $logs log rows..."
  "$seeder" "$data" "$tenant" "$devices" "$logs" | tee "$work/seed.json"
fi

serve_on_loopback
token=$(python3 "$here/admin-token.py" --base "$base" --tenant "$tenant" \
  --email owner@bench.example --password 'Bench-pass1!')

week_ago=$(date -u -d '7 days ago' +%Y-%m-%d)
# query NAME JSON: writes the request body; checks it answers 200 without errors.
query() {
  local name=$1 body=$2
  printf '%s' "$body" >"$work/$name.json"
  curl -sk "$base/api/graphql" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    --data-binary "@$work/$name.json" >"$work/$name.answer"
  python3 - "$work/$name.answer" "$name" <<'PY'
import json, sys
answer = json.load(open(sys.argv[1]))
if answer.get("errors") or not answer.get("data"):
    raise SystemExit(f"{sys.argv[2]}: {json.dumps(answer)[:500]}")
def count(value):
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "filteredCount":
                yield inner
            else:
                yield from count(inner)
print(f"  {sys.argv[2]}: filteredCount {list(count(answer['data']))}")
PY
}
DEVICE_FIELDS='edges { cursor node { id machineId hostname status osType lastSeen organization { name } tags { key values } } } pageInfo { hasNextPage endCursor } filteredCount'
LOG_FIELDS='edges { cursor node { id toolEventId timestamp eventType toolType severity hostname organizationName summary } } pageInfo { hasNextPage endCursor } filteredCount'
LOG_FILTER="{severities: [\\\"WARNING\\\", \\\"ERROR\\\"], toolTypes: [\\\"MESHCENTRAL\\\", \\\"FLEET_MDM\\\"], startDate: \\\"$week_ago\\\"}"
query devices-page "{\"query\": \"{ devices(first: 50) { $DEVICE_FIELDS } }\"}"
query devices-filtered "{\"query\": \"{ devices(first: 50, filter: {statuses: [ONLINE, OFFLINE], osTypes: [\\\"WINDOWS\\\"], tagValues: [\\\"site:site-3\\\"]}, search: \\\"host-00\\\", sort: {field: \\\"lastSeen\\\", direction: DESC}) { $DEVICE_FIELDS } }\"}"
query device-facets "{\"query\": \"{ deviceFilters { statuses { value count } osTypes { value count } organizationIds { value label count } tagKeys { key value count } filteredCount } }\"}"
query logs-page "{\"query\": \"{ logs(first: 50) { $LOG_FIELDS } }\"}"
query logs-search "{\"query\": \"{ logs(first: 50, filter: $LOG_FILTER, search: \\\"w123\\\") { $LOG_FIELDS } }\"}"
query logs-search-all "{\"query\": \"{ logs(first: 50, search: \\\"w123\\\") { $LOG_FIELDS } }\"}"
deep=$(python3 -c "import base64; print(base64.b64encode(b'$(( $(date +%s) * 1000 - 20 * 86400000 ))_evt-00000000').decode())")
query logs-deep "{\"query\": \"{ logs(first: 50, after: \\\"$deep\\\") { $LOG_FIELDS } }\"}"
query log-facets "{\"query\": \"{ logFilters(filter: $LOG_FILTER, search: \\\"w123\\\") { toolTypes eventTypes severities filteredCount } }\"}"

for name in devices-page devices-filtered device-facets logs-page logs-search logs-search-all logs-deep log-facets; do
  echo
  echo "== $name"
  WRK_LABEL=$name bench "$name" "$connections" graphql.lua "$base/api/graphql" "$token" "$work/$name.json"
done

print_summary
echo
echo "Target: p99 < 50 ms for every query (one connection, $(nproc) cores):"
awk '{printf "  %-17s p50 %6.1f ms  p99 %6.1f ms  %s\n", $2, $4, $5, ($5 < 50 ? "met" : "MISSED")}' "$results"
invalid=$(awk '$6 != 0 || $7 != 0 {print $2}' "$results")
if [ -n "$invalid" ]; then
  echo "INVALID run: non-200 answers or socket errors in: $invalid" >&2
  exit 1
fi
