#!/usr/bin/env bash
# The admin console's weight and time to first render, in Debian's Chromium (tests/ui/measure.mjs):
# the devices list over DEVICES (10,000) devices, cold and warm cache, and every main page's
# weight. The data is seeded through the storage traits by examples/seed_bench.rs (as
# tests/load/graphql.sh does); the sign-in is the real one, in the browser.
#
#   tests/load/console.sh [BINARY [SEEDER]]
#     defaults: /var/tmp/openframe-release/release/openframe and …/release/examples/seed_bench
#
# Knobs (environment): DEVICES (10000), LOGS (100000), RUNS (5), KEEP=1 keeps the scratch dir.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:-/var/tmp/openframe-release/release/openframe}
seeder=${2:-/var/tmp/openframe-release/release/examples/seed_bench}
devices=${DEVICES:-10000}
logs=${LOGS:-100000}
tenant=bench
[ -x "$seeder" ] || { echo "no seeder at $seeder (cargo build --release --example seed_bench)" >&2; exit 1; }
[ -d "$here/../ui/node_modules/playwright-core" ] || { echo "npm ci --prefix tests/ui first" >&2; exit 1; }

source "$here/lib.sh"

"$binary" init --data-dir "$data" --tenant "$tenant" --admin-email owner@bench.example \
  --admin-password 'Bench-pass1!' --json >"$work/init.json"
echo "seeding $devices devices and $logs log rows..."
"$seeder" "$data" "$tenant" "$devices" "$logs" >"$work/seed.json"

serve_on_loopback

BASE_URL=$base CHROMIUM=${CHROMIUM:-/usr/bin/chromium} ADMIN_EMAIL=owner@bench.example \
  ADMIN_PASSWORD='Bench-pass1!' RUNS=${RUNS:-5} node "$here/../ui/measure.mjs" | tee "$work/console.json"
