#!/usr/bin/env bash
# benches/echo.sh: how fast is socklab's echo server, next to the alternatives?
#
#   bash benches/echo.sh              # the full run: 9.5 minutes on an idle 2-core
#                                     # machine, longer if it must wait for other work
#   RUNS=3 DURATION=1s bash benches/echo.sh   # a quick look (not for BENCHMARKS.md)
#
# What it measures: closed-loop ping-pong over loopback. `socklab echo bench` keeps
# exactly one 64-byte message in flight per connection (send, wait for the echo, send
# the next; TCP_NODELAY), so round trips/s = connections / mean round-trip time, and
# the numbers show how quickly a server turns a request around, not how many bytes it
# can stream.
#
#   TCP servers  socklab echo server --tcp         (tokio, one task per connection)
#                socat TCP-LISTEN:P,bind=127.0.0.1,fork,reuseaddr EXEC:cat
#                ncat -lk --exec /bin/cat 127.0.0.1 P
#                benches/py_echo_server.py          (socketserver.ThreadingTCPServer)
#                benches/echo_floor.c tcp           (C, one pthread per connection: the floor)
#   UDP servers  socklab echo server --udp
#                socat UDP-LISTEN:P,bind=127.0.0.1,fork PIPE  (a child per client address)
#                benches/echo_floor.c udp           (C recvfrom/sendto loop: the floor)
#
# Each server gets its own free port on 127.0.0.1 and is measured at 1 and 50
# connections, RUNS times (default 5) of DURATION (default 3s, whole seconds) after a
# WARMUP (0.5s), in round-robin rounds so that a noisy minute on a shared host hits
# every server alike; the table shows the median of the runs and their range. Also:
#   - 1 connection with server and client pinned to one core (taskset -c 0), which
#     takes the cross-core wake-up out of the round trip and leaves the server's cost;
#   - how much CPU the server, the load generator and the whole machine used (the
#     server and the generator share the cores);
#   - a cross-check of the load generator: benches/py_bench_client.py, a second,
#     independent one, against the socklab server and the C floor at 50 connections.
#
# Output: a Markdown report on stdout, also written to benches/results/echo-DATE.md
# (git-ignored), ready to paste into BENCHMARKS.md. Progress goes to stderr.
#
# Needs: cargo, gcc, python3, socat, ncat, ss (`bash .ci/deps bench` installs what is
# missing). Only ever talks to 127.0.0.1. Every server it starts is stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

RUNS=${RUNS:-5}
DURATION=${DURATION:-3s}
WARMUP=${WARMUP:-0.5s}
SIZE=${SIZE:-64}
# How long a server may take to start listening before we give up on it.
READY_TIMEOUT_S=20
# The crate may briefly fail to compile while someone is mid-change: retry this often,
# a minute apart, before giving up.
BUILD_ATTEMPTS=10
# The machine may be shared (someone's `cargo test`). Before each run, wait up to
# QUIET_WAIT_S for the cores to be nearly idle (under QUIET_CORES busy). After it, if
# processes outside the benchmark used more than FOREIGN_MAX_CORES on average, run it
# again, at most RUN_ATTEMPTS times in all; the report says how often that happened.
QUIET_CORES=0.3
QUIET_WAIT_S=90
FOREIGN_MAX_CORES=0.3
RUN_ATTEMPTS=3

SOCKLAB=$ROOT/target/release/socklab
WORK=$(mktemp -d /tmp/socklab-bench.XXXXXX)
PIN=()        # a prefix for server and client commands, e.g. (taskset -c 0)
STARTED_AT=$(date +%s)

# The helpers shared with proxy.sh: log, trim, ensure_tools, build_socklab, free_port,
# start_server, stop_server, group_cpu_s, machine_busy_s, wait_for_quiet (they read
# the settings above).
BENCH_NAME=echo.sh
# shellcheck source=benches/lib.sh
source benches/lib.sh

cleanup() {
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools and builds -----------------------------------------------------------------

ensure_tools gcc python3 socat ncat ss
log "building socklab (cargo build --release)"
build_socklab
log "building the C floor (gcc -O2 -pthread benches/echo_floor.c)"
gcc -O2 -pthread -o "$WORK/echo_floor" benches/echo_floor.c

# --- measuring ------------------------------------------------------------------------

# The servers, one a line: TABLE | TRANSPORT | NAME | PIN | CONNS | CLIENT | COMMAND.
# {PORT} in COMMAND is replaced by a free port; PIN "cpu0" runs server and client under
# `taskset -c 0`; CLIENT is the load generator, socklab or python (the cross-check).
# Commands are split on spaces, so no word in them may contain one.
SERVERS=(
  "tcp | tcp | socklab                   | - | 1 50 | socklab | $SOCKLAB echo server --tcp --port {PORT}"
  "tcp | tcp | socat (fork, EXEC:cat)    | - | 1 50 | socklab | socat TCP-LISTEN:{PORT},bind=127.0.0.1,fork,reuseaddr EXEC:cat"
  "tcp | tcp | ncat (--exec /bin/cat)    | - | 1 50 | socklab | ncat -lk --exec /bin/cat 127.0.0.1 {PORT}"
  "tcp | tcp | Python ThreadingTCPServer | - | 1 50 | socklab | python3 benches/py_echo_server.py {PORT}"
  "tcp | tcp | C floor (pthread/conn)    | - | 1 50 | socklab | $WORK/echo_floor tcp {PORT}"
  "udp | udp | socklab                   | - | 1 50 | socklab | $SOCKLAB echo server --udp --port {PORT}"
  "udp | udp | socat (fork, PIPE)        | - | 1 50 | socklab | socat UDP-LISTEN:{PORT},bind=127.0.0.1,fork PIPE"
  "udp | udp | C floor (recvfrom loop)   | - | 1 50 | socklab | $WORK/echo_floor udp {PORT}"
  # One connection again, client and server pinned to the same core. Unpinned, each
  # round trip wakes an idle core twice, and on a virtual machine that wake-up (an
  # inter-processor interrupt through the hypervisor) is most of the round trip and
  # varies with the host; on one core it is a plain context switch, so what is left
  # is the server's own cost per message.
  "pinned | tcp | socklab TCP | cpu0 | 1 | socklab | $SOCKLAB echo server --tcp --port {PORT}"
  "pinned | tcp | C floor TCP | cpu0 | 1 | socklab | $WORK/echo_floor tcp {PORT}"
  "pinned | udp | socklab UDP | cpu0 | 1 | socklab | $SOCKLAB echo server --udp --port {PORT}"
  "pinned | udp | C floor UDP | cpu0 | 1 | socklab | $WORK/echo_floor udp {PORT}"
  # The cross-check: a second, independent load generator against two of the servers.
  "tcp | tcp | socklab                | - | 50 | python | $SOCKLAB echo server --tcp --port {PORT}"
  "tcp | tcp | C floor (pthread/conn) | - | 50 | python | $WORK/echo_floor tcp {PORT}"
)


# measure_run TABLE TRANSPORT NAME CONNS CLIENT ATTEMPT: one run of the load generator
# against the server on PORT; writes one tab-separated line to $WORK/run.tsv: table,
# name, conns, client, round trips/s, p50, p99, errors, client CPU s, server CPU s,
# machine busy s, wall s, foreign cores (busy - client - server, per second), attempt.
measure_run() {
  local table=$1 transport=$2 name=$3 c=$4 client=$5 attempt=$6
  local cpu0 cpu1 busy0 busy1 wall0 wall1 status=0
  cpu0=$(group_cpu_s "$SERVER_PID")
  busy0=$(machine_busy_s)
  wall0=$(date +%s.%N)
  if [ "$client" = socklab ]; then
    /usr/bin/time -f "%U %S" -o "$WORK/time" "${PIN[@]}" "$SOCKLAB" echo bench "--$transport" \
      127.0.0.1 "$PORT" -c "$c" -s "$SIZE" -d "$DURATION" --warmup "$WARMUP" --json \
      >"$WORK/run.json" 2>"$WORK/client.err" || status=$?
  else
    /usr/bin/time -f "%U %S" -o "$WORK/time" "${PIN[@]}" python3 benches/py_bench_client.py \
      127.0.0.1 "$PORT" -c "$c" -s "$SIZE" -d "${DURATION%s}" --warmup "${WARMUP%s}" \
      >"$WORK/run.json" 2>"$WORK/client.err" || status=$?
  fi
  wall1=$(date +%s.%N)
  busy1=$(machine_busy_s)
  cpu1=$(group_cpu_s "$SERVER_PID")
  # socklab exits 1 when a run had errors; they are counted in its JSON.
  if [ "$status" -ne 0 ] && [ "$status" -ne 1 ]; then
    log "load generator failed (exit $status) against $name: $(tail -1 "$WORK/client.err")"
    return 1
  fi
  python3 - "$WORK/run.json" "$WORK/time" "$table" "$name" "$c" "$client" \
    "$cpu0" "$cpu1" "$busy0" "$busy1" "$wall0" "$wall1" "$attempt" >"$WORK/run.tsv" <<'PY'
import json, sys
run_json, time_file, table, name, conns, client = sys.argv[1:7]
cpu0, cpu1, busy0, busy1, wall0, wall1 = map(float, sys.argv[7:13])
attempt = sys.argv[13]
r = json.load(open(run_json))
# GNU time writes "Command exited with non-zero status 1" first when that happens.
user, system = map(float, open(time_file).read().split("\n")[-2].split())
client_cpu, server_cpu, busy, wall = user + system, cpu1 - cpu0, busy1 - busy0, wall1 - wall0
lat = r.get("latency_us", {})
print("\t".join(str(x) for x in [
    table, name, conns, client, r["round_trips_per_sec"],
    lat.get("p50", "nan"), lat.get("p99", "nan"), r.get("errors", 0),
    client_cpu, server_cpu, busy, wall,
    round((busy - client_cpu - server_cpu) / wall, 3), attempt]))
PY
}

# run_once SPEC: starts the server of SPEC, runs its load generator once for each of
# its connection counts, stops it. Appends one line per run to $RUNS_TSV.
run_once() {
  local table transport name pin conns client command
  IFS='|' read -r table transport name pin conns client command <<<"$1"
  table=$(trim "$table") transport=$(trim "$transport") name=$(trim "$name")
  pin=$(trim "$pin") client=$(trim "$client")
  PIN=()
  [ "$pin" = cpu0 ] && PIN=(taskset -c 0)
  PORT=$(free_port "$transport")
  local words=() word
  read -r -a words <<<"$command"
  local argv=()
  for word in "${words[@]}"; do argv+=("${word//\{PORT\}/$PORT}"); done
  start_server "$transport" "$PORT" "${argv[@]}"

  local c attempt
  for c in $conns; do
    for attempt in $(seq 1 "$RUN_ATTEMPTS"); do
      wait_for_quiet
      measure_run "$table" "$transport" "$name" "$c" "$client" "$attempt" || continue
      # measure_run left its line in $WORK/run.tsv; keep it unless foreign load spoilt it.
      local foreign
      foreign=$(awk -F'\t' '{ print $13 }' "$WORK/run.tsv")
      if awk -v x="$foreign" -v m="$FOREIGN_MAX_CORES" 'BEGIN { exit !(x <= m) }' ||
        [ "$attempt" -eq "$RUN_ATTEMPTS" ]; then
        cat "$WORK/run.tsv" >>"$RUNS_TSV"
        log "$(awk -F'\t' '{ printf "%-6s %-26s c=%-2s %-7s %8.0f rt/s p50 %6.1f us p99 %7.1f us errors %s foreign %.2f", $1, $2, $3, $4, $5, $6, $7, $8, $13 }' "$WORK/run.tsv")"
        break
      fi
      log "other processes used $foreign cores during that run against $name (c=$c); running it again"
    done
  done
  stop_server
}

# --- the runs -------------------------------------------------------------------------

# Round-robin: each round runs every server once, starting one further down the list
# each time, so a slow minute on a shared host spreads over all servers instead of
# spoiling one server's five runs.
RUNS_TSV=$WORK/runs.tsv
: >"$RUNS_TSV"
for round in $(seq 1 "$RUNS"); do
  log "round $round of $RUNS"
  for i in $(seq 0 $((${#SERVERS[@]} - 1))); do
    run_once "${SERVERS[$(((i + round - 1) % ${#SERVERS[@]}))]}"
  done
done

# --- the report -----------------------------------------------------------------------

FINISHED_AT=$(date +%s)
mkdir -p benches/results
REPORT=benches/results/echo-$(date +%F-%H%M%S).md
tokio_version=$(awk '/^name = "tokio"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
python3 - "$RUNS_TSV" >"$REPORT" <<PY
import statistics, sys
from collections import OrderedDict

# One row per (table, server, conns, client): medians over the runs, CPU over their time.
cells = OrderedDict()
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    if len(f) == 14:
        cells.setdefault(tuple(f[:4]), []).append([float(x) for x in f[4:]])
rows = []
for key in sorted(cells, key=lambda k: (["tcp", "udp", "pinned"].index(k[0]), k[3] != "socklab")):
    runs = cells[key]
    col = lambda i: [r[i] for r in runs]
    wall = sum(col(7))
    rows.append(list(key) + [len(runs), statistics.median(col(0)), min(col(0)), max(col(0)),
                statistics.median(col(1)), statistics.median(col(2)), int(sum(col(3))),
                sum(col(5)) / wall, sum(col(4)) / wall, sum(col(6)) / wall,
                max(0.0, sum(col(6)) / wall - sum(col(5)) / wall - sum(col(4)) / wall),
                sum(1 for r in runs if r[9] > 1),
                sum(1 for r in runs if r[8] > $FOREIGN_MAX_CORES)])
def num(x):
    return float(x)

print("## Echo benchmark, $(date '+%F %H:%M %Z')")
print()
print("Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"
      " $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r);"
      " $(rustc --version), tokio $tokio_version; $(socat -V 2>/dev/null | awk '/socat version/ { print "socat " $3 }'),"
      " $(ncat --version 2>&1 | awk '{ print "ncat " $3 }'), $(python3 --version), $(gcc --version | head -1 | awk '{ print "gcc " $NF }').")
print()
print("Settings: ${SIZE}-byte messages, one in flight per connection, TCP_NODELAY;"
      " $RUNS runs of $DURATION after a $WARMUP warm-up per cell; median of the runs,"
      " range in brackets. Server and load generator share the same cores."
      " Total time of the script: $(( (FINISHED_AT - STARTED_AT) / 60 )) min $(( (FINISHED_AT - STARTED_AT) % 60 )) s.")
print()
print("CPU columns: how many cores the server (its process group), the load generator and"
      " the whole machine kept busy on average over the runs (1.00 = one core fully"
      " used, the machine has $(nproc)); \"others\" is machine minus server minus client,"
      " i.e. processes outside the benchmark (within about 0.15 of accounting noise:"
      " loopback softirq time is charged partly to the tasks, partly to the machine only).")
repeated = sum(r[15] for r in rows)
spoilt = sum(r[16] for r in rows)
print()
print(f"Before each run the script waited for the machine to be idle; {repeated} run(s)"
      f" were repeated because other processes used more than $FOREIGN_MAX_CORES cores"
      f" during them, and {spoilt} run(s) in the tables still had that much foreign load"
      " after $RUN_ATTEMPTS attempts.")

def table(transport):
    print()
    print(f"### {transport.upper()}")
    print()
    print("| server | conns | round trips/s (median) | [min .. max] | p50 µs | p99 µs | server CPU | client CPU | machine busy | others | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r[0] != transport or r[3] != "socklab":
            continue
        print(f"| {r[1]} | {r[2]} | {num(r[5]):,.0f} | [{num(r[6]):,.0f} .. {num(r[7]):,.0f}] |"
              f" {num(r[8]):.1f} | {num(r[9]):.1f} | {num(r[11]):.2f} | {num(r[12]):.2f} | {num(r[13]):.2f} | {num(r[14]):.2f} | {r[10]} |")

table("tcp")
table("udp")
print()
print("A row with errors did not cope, and its rate is not comparable: a UDP error is a"
      " request whose reply did not come within 1 s, and that socket sat idle for the"
      " second. socat UDP-LISTEN,fork is meant to fork a child per client address; with"
      " 50 clients at once it loses replies.")
print()
print("### 1 connection, client and server pinned to one core (taskset -c 0)")
print()
print("Unpinned, a single-connection round trip is mostly two wake-ups of an idle core,"
      " which on this virtual machine go through the hypervisor. Pinned, the wake-up is"
      " a context switch on the same core and the server's own cost per message shows.")
print()
print("| server | round trips/s (median) | [min .. max] | p50 µs | p99 µs | server CPU | client CPU | others |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    if r[0] == "pinned":
        print(f"| {r[1]} | {num(r[5]):,.0f} | [{num(r[6]):,.0f} .. {num(r[7]):,.0f}] |"
              f" {num(r[8]):.1f} | {num(r[9]):.1f} | {num(r[11]):.2f} | {num(r[12]):.2f} | {num(r[14]):.2f} |")

def rate(transport, name, conns, client="socklab"):
    for r in rows:
        if r[0] == transport and r[1].startswith(name) and r[2] == str(conns) and r[3] == client:
            return num(r[5])
    return float("nan")

print()
print("### Ratios (median round trips/s)")
print()
print("| | conns | socklab / C floor | socklab / Python |")
print("|---|---:|---:|---:|")
for conns in (1, 50):
    s = rate("tcp", "socklab", conns)
    print(f"| TCP | {conns} | {s / rate('tcp', 'C floor', conns):.2f}x | {s / rate('tcp', 'Python', conns):.2f}x |")
for conns in (1, 50):
    s = rate("udp", "socklab", conns)
    print(f"| UDP | {conns} | {s / rate('udp', 'C floor', conns):.2f}x | - |")
for transport in ("TCP", "UDP"):
    s = rate("pinned", f"socklab {transport}", 1)
    print(f"| {transport}, pinned to one core | 1 | {s / rate('pinned', f'C floor {transport}', 1):.2f}x | - |")

print()
print("### Cross-check of the load generator (TCP, 50 connections)")
print()
print("| server | socklab echo bench | benches/py_bench_client.py | Python / socklab | client CPU (socklab, Python) |")
print("|---|---:|---:|---:|---:|")
for name in ("socklab", "C floor"):
    s = rate("tcp", name, 50)
    p = rate("tcp", name, 50, "python")
    cs = next(num(r[12]) for r in rows if r[0] == "tcp" and r[1].startswith(name) and r[2] == "50" and r[3] == "socklab")
    cp = next(num(r[12]) for r in rows if r[0] == "tcp" and r[1].startswith(name) and r[2] == "50" and r[3] == "python")
    print(f"| {name} | {s:,.0f} | {p:,.0f} | {p / s:.2f}x | {cs:.2f}, {cp:.2f} |")

print()
print("### Commands")
print()
print("\`\`\`sh")
print("cargo build --release; gcc -O2 -pthread -o echo_floor benches/echo_floor.c")
print("# servers (P: a free port on 127.0.0.1, found afresh for each server)")
print("target/release/socklab echo server --tcp --port P")
print("socat TCP-LISTEN:P,bind=127.0.0.1,fork,reuseaddr EXEC:cat")
print("ncat -lk --exec /bin/cat 127.0.0.1 P")
print("python3 benches/py_echo_server.py P")
print("./echo_floor tcp P")
print("target/release/socklab echo server --udp --port P")
print("socat UDP-LISTEN:P,bind=127.0.0.1,fork PIPE")
print("./echo_floor udp P")
print("# load, $RUNS times per server and connection count (C = 1, 50)")
print("# (the pinned section runs server and client under taskset -c 0, C = 1)")
print("target/release/socklab echo bench --tcp|--udp 127.0.0.1 P -c C -s $SIZE -d $DURATION --warmup $WARMUP --json")
print("python3 benches/py_bench_client.py 127.0.0.1 P -c 50 -s $SIZE -d ${DURATION%s} --warmup ${WARMUP%s}")
print("\`\`\`")
PY
cat "$REPORT"
log "report written to $REPORT ($(( (FINISHED_AT - STARTED_AT) ))s)"
