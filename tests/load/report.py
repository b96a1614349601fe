#!/usr/bin/env python3
"""Sums up one run of tests/load/report.sh as a Markdown table.

    report.py RUN_DIR ELAPSED_SECONDS OPENFRAME_VERSION PEER_VERSION COMMIT

RUN_DIR holds each benchmark script's output (startup.out, identity.out, ...), which this reads
by the tables and summary lines those scripts print. A figure whose script failed or printed
nothing recognisable is shown as "missing", never guessed.
"""

import os
import re
import sys

run_dir, elapsed, version, peer_version, commit = sys.argv[1:6]


def output(name):
    path = os.path.join(run_dir, f"{name}.out")
    return open(path, encoding="utf-8", errors="replace").read() if os.path.exists(path) else ""


def table_rows(text):
    """Every Markdown table row of a script's output, as lists of stripped cells."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def row(text, first_cell):
    return next((cells for cells in table_rows(text) if cells[0] == first_cell), None)


def number(text):
    return float(re.sub(r"[^0-9.]", "", text))


def rate(value, unit):
    return f"{value:,.0f} {unit}"


lines = []


def add(area, what, figure, peer="", ratio=""):
    lines.append(f"| {area} | {what} | {figure} | {peer} | {ratio} |")


MISSING = "missing"

# --- Start-up and memory ---
startup = output("startup")
for label, what in (("first", "first start (empty data dir) to ready"), ("restart", "restart to ready")):
    cells = row(startup, label)
    if cells:
        add("start-up", f"{what}, p50 of {cells[1]}", f"{cells[2]} ms (max {cells[3]} ms)")
    else:
        add("start-up", what, MISSING)
cells = row(startup, "restart")
add("memory", "idle RSS after a restart, p50", f"{cells[4]} MiB" if cells else MISSING)

# --- Ingest ---
ingest = output("ingest")
peer_rows = [cells for cells in table_rows(ingest) if cells[0].startswith("jetstream")]
for label, batch in (("appliance ingest-500", "500"), ("appliance ingest-1", "1")):
    cells = row(ingest, label)
    peer = next((p for p in peer_rows if p[1] == batch), None)
    what = f"durable ingest, {batch} event{'s' if batch != '1' else ''} per request"
    if not cells:
        add("ingest", what, MISSING)
        continue
    mine = number(cells[3])
    figure = f"{rate(mine, 'events/s')} (p99 {cells[5]} ms)"
    if peer:
        add("ingest", what, figure, f"JetStream {rate(number(peer[3]), 'events/s')} {peer[0][len('jetstream '):]}",
            f"{mine / number(peer[3]):.2f}×")
    else:
        add("ingest", what, figure)
match = re.search(r"ingest -> searchable at (\d+) events/s \(100-event requests\): (\d+) events, p50 (.+?), p99 (.+)$",
                  ingest, re.M)
add("ingest", f"ingest → searchable at {int(match.group(1)):,} events/s" if match else "ingest → searchable",
    f"p50 {match.group(3)}, p99 {match.group(4)}" if match else MISSING)
match = re.search(r"^end to end \(.*\): (\d+) events/s", ingest, re.M)
add("ingest", "end to end (durable, logged, analytics, searchable)",
    rate(int(match.group(1)), "events/s") if match else MISSING)

# --- Identity ---
identity = output("identity")
for label, what, unit in (("client_credentials", "client_credentials grants", "grants/s"),
                          ("refresh", "refresh_token grants (rotation, durable)", "grants/s"),
                          ("login", "password sign-ins (argon2id)", "sign-ins/s")):
    cells = row(identity, label)
    add("identity", what, f"{rate(number(cells[3]), unit)} (p99 {cells[5]} ms)" if cells else MISSING)

# --- Gateway ---
gateway = output("gateway")
for name, base, what in (("jwt", "open+bearer", "JWT bearer check (cached verdict)"),
                         ("api-key", "open+key", "API key check, limits and headers")):
    match = re.search(rf"^\s+{re.escape(name)}\s+/ {re.escape(base)}\s+median ([0-9.]+)", gateway, re.M)
    open_rate = re.search(rf"^\s+{re.escape(base)}\s+(\d+) req/s", gateway, re.M)
    mine = re.search(rf"^\s+{re.escape(name)}\s+(\d+) req/s", gateway, re.M)
    if match and open_rate and mine:
        add("gateway", f"{what} vs the open route with the same header",
            rate(int(mine.group(1)), "req/s"), f"open route {rate(int(open_rate.group(1)), 'req/s')}",
            f"{float(match.group(1)):.2f}× (median of rounds)")
    else:
        add("gateway", what, MISSING)

# --- GraphQL ---
graphql = output("graphql")
found = re.findall(r"^\s+(\S+)\s+p50\s+([0-9.]+) ms\s+p99\s+([0-9.]+) ms", graphql, re.M)
for name, p50, p99 in found:
    add("GraphQL", f"`{name}` (1 connection)", f"p99 {p99} ms (p50 {p50} ms)")
if not found:
    add("GraphQL", "devices and logs queries", MISSING)

# --- Agents ---
agents = output("agents")
cells = next((c for c in table_rows(agents) if re.fullmatch(r"\d+", c[0] or "")), None)
if cells:
    idle, registered, held, peak = [part.strip() for part in cells[5].split("/")]
    add("agents", f"{int(cells[0]):,} agents held on `/ws/nats` ({cells[1]} heartbeats)",
        f"{held} MiB RSS held (idle {idle}, peak {peak}); {cells[6]} of a core")
else:
    add("agents", "agents held", MISSING)

print(f"Performance report: openframe {version.split()[-1]} at {commit}, {os.cpu_count()} cores, "
      f"{int(elapsed) // 60} min {int(elapsed) % 60} s for the whole run. Peer: {peer_version.strip()}.")
print()
print("| area | measurement | figure | peer, same run | ratio |")
print("|---|---|---|---|---:|")
print("\n".join(lines))
