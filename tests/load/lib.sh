# Shared by the load scripts (sourced once their settings are read): checks the tools, makes the
# scratch dir ($work, with $data for the appliance), stops the server ($server) on exit, and
# provides free ports, CPU accounting, the wrk runner and the summary. The sourcing script sets:
# here (this folder), binary, threads, duration.

[ -x "$binary" ] || { echo "no executable at $binary" >&2; exit 1; }
for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done

work=$(mktemp -d)
data=$work/data
server=""
stop_server() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server"
    wait "$server" 2>/dev/null || true
  fi
  server=""
}
cleanup() {
  stop_server
  if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# Starts `$binary serve` on $data with HTTPS and the admin listener on free loopback ports and
# waits until it is ready; sets $base (its public URL), $admin_port and $server.
serve_on_loopback() {
  local https_port
  https_port=$(free_port)
  admin_port=$(free_port)
  base="https://127.0.0.1:$https_port"
  OPENFRAME_SERVER__PUBLIC_URL=$base RUST_LOG=warn "$binary" serve --data-dir "$data" \
    --listen "127.0.0.1:$https_port" --admin-listen "127.0.0.1:$admin_port" --log-format json \
    >>"$work/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 600); do
    curl -fs "http://127.0.0.1:$admin_port/health/ready" >/dev/null 2>&1 && return 0
    kill -0 "$server" 2>/dev/null || { echo "serve exited:" >&2; cat "$work/serve.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "serve was not ready after a minute" >&2
  exit 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# --- CPU accounting: how the machine's CPU was shared during each wrk run. ---
ticks_per_second=$(getconf CLK_TCK)
cores=$(nproc)
machine_ticks() { awk '/^cpu / {busy=$2+$3+$4+$7+$8+$9; print busy, busy+$5+$6}' /proc/stat; }
server_ticks() { awk '{print $14+$15}' "/proc/$server/stat"; }
server_rss_mib() { awk '/^VmRSS/ {printf "%d", $2/1024}' "/proc/$server/status"; }


# Anything else using the CPU during a run is subtracted from the server's share, and on two
# cores that is most of the result. Before each benchmark (server idle), wait until the machine
# has been quiet for 3 s: under 15% of one core busy. After QUIET_TIMEOUT seconds (600) it goes
# ahead anyway; the "other CPU" column then shows how much the run was disturbed.
wait_for_quiet() {
  local waited=0 before after busy
  while :; do
    before=$(machine_ticks); sleep 3; after=$(machine_ticks)
    busy=$(echo "$before $after" | awk -v hz="$ticks_per_second" '{printf "%d", ($3 - $1) / 3 / hz * 100}')
    [ "$busy" -lt 15 ] && return 0
    if [ "$waited" -ge "${QUIET_TIMEOUT:-600}" ]; then
      echo "  the machine is still busy ($busy% of a core) after ${waited}s; running anyway" >&2
      return 0
    fi
    [ "$waited" = 0 ] && echo "  waiting for the machine to be quiet ($busy% of a core busy)..." >&2
    waited=$((waited + 3))
  done
}

# bench NAME CONNECTIONS SCRIPT URL SCRIPT_ARGS...: one wrk run; appends a row to $results.
bench() {
  local name=$1 conns=$2 script=$3 url=$4
  shift 4
  wait_for_quiet
  local before_machine before_server after_machine after_server result
  before_machine=$(machine_ticks)
  before_server=$(server_ticks)
  local TIMEFORMAT='%U %S' # bash's `time`: wrk's own user and system CPU seconds
  { time wrk -t"$threads" -c"$conns" -d"${duration}s" --timeout 10s --latency \
      -s "$here/$script" "$url" -- "$@" >"$work/$name.wrk"; } 2>"$work/$name.cpu"
  after_machine=$(machine_ticks)
  after_server=$(server_ticks)
  sed 's/^/    /' "$work/$name.wrk"
  result=$(grep '^RESULT ' "$work/$name.wrk") || { echo "wrk printed no RESULT line" >&2; exit 1; }
  # CPU in percent of one core, over the run's wall time: server, wrk, everything else.
  local cpu
  cpu=$(echo "$before_machine $after_machine $before_server $after_server $(cat "$work/$name.cpu")" |
    awk -v hz="$ticks_per_second" -v cores="$cores" '{
      wall = ($4 - $2) / cores; busy = $3 - $1
      server = ($6 - $5) / wall * 100; wrk = ($7 + $8) * hz / wall * 100
      printf "%.0f %.0f %.0f", server, wrk, busy / wall * 100 - server - wrk }')
  echo "$result $conns $cpu $(server_rss_mib)" >>"$results"
}


# print_summary: the results table and the server log's warnings by message.
print_summary() {
echo
echo "| benchmark | conns | requests | req/s | p50 ms | p99 ms | non-200 | socket errors | server CPU | wrk CPU | other CPU | server RSS MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
# RESULT label rps p50 p99 non200 socket requests extra conns server% wrk% other% rss
awk '{printf "| %s | %d | %d | %.0f | %.1f | %.1f | %d | %d | %d%% | %d%% | %d%%%s | %d |\n",
  $2, $10, $8, $3, $4, $5, $6, $7, $11, $12, $13, ($13 > 10 ? " (disturbed)" : ""), $14}' "$results"
echo "(CPU in percent of one core; the machine has $cores. \"other\" is every other process: above"
echo " 10% of a core the row is marked disturbed and understates the server. RSS: the server's"
echo " resident memory after each benchmark.)"

echo
echo "server log ($(wc -l <"$work/serve.log") lines at RUST_LOG=warn), by level and message:"
python3 - "$work/serve.log" <<'EOF'
import collections, json, sys
counts = collections.Counter()
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        entry = json.loads(line)
        fields = entry.get("fields", entry)  # tracing-subscriber may nest them or not
        message = fields.get("message", line.strip())
        if "detail" in fields:
            message += ": " + str(fields["detail"])
        key = (entry.get("level", "?"), message)
    except ValueError:
        key = ("raw", line.strip()[:200])
    counts[key] += 1
for (level, message), count in counts.most_common(20):
    print(f"  {level} x{count}: {message[:200]}")
if not counts:
    print("  (empty)")
EOF

}
