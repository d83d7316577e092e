#!/usr/bin/env bash
# benches/echo.sh: how fast is socklab's echo server, next to the alternatives?
#
#   bash benches/echo.sh              # the full run, about 6 minutes on 2 cores
#   RUNS=3 DURATION=1s bash benches/echo.sh   # a quick look (not for BENCHMARKS.md)
#
# What it measures: closed-loop ping-pong over loopback. `socklab echo bench` keeps
# exactly one 64-byte message in flight per connection (send, wait for the echo, send
# the next; TCP_NODELAY), so round trips/s = connections / mean round-trip time, and
# the numbers show how quickly a server turns a request around, not how many bytes it
# can stream.
#
#   TCP servers  socklab echo server --tcp         (tokio, one task per connection)
#                socat TCP-LISTEN:P,fork,reuseaddr EXEC:cat
#                ncat -lk --exec /bin/cat
#                benches/py_echo_server.py          (socketserver.ThreadingTCPServer)
#                benches/echo_floor.c tcp           (C, one pthread per connection: the floor)
#   UDP servers  socklab echo server --udp
#                socat UDP-LISTEN:P,fork PIPE       (forks a child per client address)
#                benches/echo_floor.c udp           (C recvfrom/sendto loop: the floor)
#
# Each server gets its own free port on 127.0.0.1 and is measured at 1 and 50
# connections, RUNS times (default 5) of DURATION (default 3s) after a WARMUP (0.5s);
# the table shows the median of the runs, and their range. It also records how much CPU
# the server and the load generator used (the machine has few cores, and they share
# them), and cross-checks the load generator with a second one,
# benches/py_bench_client.py, against the socklab server and the C floor.
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
CONNS=(1 50)
# How long a server may take to start listening before we give up on it.
READY_TIMEOUT_S=20
# The crate may briefly fail to compile while someone is mid-change: retry this often,
# a minute apart, before giving up.
BUILD_ATTEMPTS=10

SOCKLAB=$ROOT/target/release/socklab
WORK=$(mktemp -d /tmp/socklab-bench.XXXXXX)
RESULTS=$WORK/results.tsv # one line per series, rendered into Markdown at the end
SERVER_PID="" # the server running now (one at a time), for the EXIT trap
PIN=()        # a prefix for server and client commands, e.g. (taskset -c 0)
STARTED_AT=$(date +%s)

log() { echo "[echo.sh $(date +%T)] $*" >&2; }

cleanup() {
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools and builds -----------------------------------------------------------------

for tool in gcc python3 socat ncat ss; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "installing the benchmark tools (bash .ci/deps bench)"
    bash .ci/deps bench
    break
  fi
done

build_socklab() {
  local attempt
  for attempt in $(seq 1 "$BUILD_ATTEMPTS"); do
    if cargo build --release --quiet >"$WORK/build.log" 2>&1; then
      return 0
    fi
    log "cargo build --release failed (attempt $attempt of $BUILD_ATTEMPTS); retrying in 60s"
    tail -3 "$WORK/build.log" >&2
    sleep 60
  done
  cat "$WORK/build.log" >&2
  return 2
}
log "building socklab (cargo build --release)"
build_socklab
log "building the C floor (gcc -O2 -pthread benches/echo_floor.c)"
gcc -O2 -pthread -o "$WORK/echo_floor" benches/echo_floor.c

# --- servers --------------------------------------------------------------------------

# Prints a port that is free on 127.0.0.1 for $1 (tcp|udp) right now.
free_port() {
  python3 - "$1" <<'PY'
import socket, sys
kind = socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM
with socket.socket(socket.AF_INET, kind) as s:
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
PY
}

# start_server tcp|udp PORT COMMAND...: starts COMMAND in its own process group (so it
# and any children it forks can be stopped together) and waits until something listens
# on PORT. Sets SERVER_PID.
start_server() {
  local transport=$1 port=$2
  shift 2
  setsid "${PIN[@]}" "$@" >"$WORK/server-$port.log" 2>&1 &
  SERVER_PID=$!
  local flags=-Htln
  [ "$transport" = udp ] && flags=-Huln
  local deadline=$((SECONDS + READY_TIMEOUT_S))
  # Ask the kernel whether the port is bound: no connection, so nothing is forked or
  # counted by the server before the first run.
  until [ -n "$(ss "$flags" "sport = :$port" 2>/dev/null)" ]; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      log "server exited before listening: $*"
      cat "$WORK/server-$port.log" >&2
      return 2
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "server not listening on $port after ${READY_TIMEOUT_S}s: $*"
      return 2
    fi
    sleep 0.05
  done
}

# Stops the server and every process it forked (its whole process group).
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# CPU seconds used so far by process group $1: every live member, plus the children
# the leader has already reaped (socat and ncat fork one per connection).
group_cpu_s() {
  python3 - "$1" <<'PY'
import os, sys
pgid, ticks = int(sys.argv[1]), 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    # fields[0] is field 3 (state) of proc(5): pgrp is 5, utime..cstime are 14..17.
    if int(fields[2]) == pgid:
        ticks += int(fields[11]) + int(fields[12])
        if int(pid) == pgid:
            ticks += int(fields[13]) + int(fields[14])
print(ticks / os.sysconf("SC_CLK_TCK"))
PY
}

# CPU seconds all cores have spent busy so far (not idle, not waiting for I/O): the
# server, the load generator, and the kernel's softirq work for loopback.
machine_busy_s() {
  awk -v hz="$(getconf CLK_TCK)" '/^cpu / { print ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit }' /proc/stat
}

# --- measuring ------------------------------------------------------------------------

# Runs a command and appends its stdout to $1; adds the CPU seconds it used to $2.
run_measured() {
  local out=$1 cpu=$2
  shift 2
  local status=0
  /usr/bin/time -f "%U %S" -o "$WORK/time" "$@" >>"$out" 2>>"$WORK/client.err" || status=$?
  # socklab exits 1 when a run had errors; the errors are in its JSON and in the table.
  if [ "$status" -ne 0 ] && [ "$status" -ne 1 ]; then
    log "load generator failed (exit $status): $*"
    tail -3 "$WORK/client.err" >&2
  fi
  awk '{ printf "%.3f\n", $1 + $2 }' "$WORK/time" | tail -1 >>"$cpu"
}

# series TABLE TRANSPORT SERVER_NAME CONNS CLIENT: RUNS runs against the current
# server (SERVER_PID on PORT) with CLIENT (socklab|python); appends one line, filed
# under TABLE, to $RESULTS.
series() {
  local table=$1 transport=$2 name=$3 conns=$4 client=$5
  local out="$WORK/runs-$transport-$PORT-$conns-$client.jsonl" cpu="$WORK/cpu-$$-$RANDOM"
  : >"$out"
  : >"$cpu"
  local server_cpu_before server_cpu_after busy_before busy_after wall_before wall_after run
  server_cpu_before=$(group_cpu_s "$SERVER_PID")
  busy_before=$(machine_busy_s)
  wall_before=$(date +%s.%N)
  for run in $(seq 1 "$RUNS"); do
    if [ "$client" = socklab ]; then
      run_measured "$out" "$cpu" "${PIN[@]}" "$SOCKLAB" echo bench "--$transport" 127.0.0.1 "$PORT" \
        -c "$conns" -s "$SIZE" -d "$DURATION" --warmup "$WARMUP" --json
    else
      run_measured "$out" "$cpu" "${PIN[@]}" python3 benches/py_bench_client.py 127.0.0.1 "$PORT" \
        -c "$conns" -s "$SIZE" -d "${DURATION%s}" --warmup "${WARMUP%s}"
    fi
  done
  wall_after=$(date +%s.%N)
  busy_after=$(machine_busy_s)
  server_cpu_after=$(group_cpu_s "$SERVER_PID")
  python3 - "$out" "$cpu" "$table" "$name" "$conns" "$client" \
    "$server_cpu_before" "$server_cpu_after" "$wall_before" "$wall_after" \
    "$busy_before" "$busy_after" >>"$RESULTS" <<'PY'
import json, statistics, sys
out, cpu, table, name, conns, client = sys.argv[1:7]
s0, s1, w0, w1, b0, b1 = map(float, sys.argv[7:13])
runs = [json.loads(line) for line in open(out) if line.strip()]
client_cpu = sum(float(x) for x in open(cpu) if x.strip())
wall = w1 - w0
rates = [r["round_trips_per_sec"] for r in runs]
med = lambda xs: statistics.median(xs) if xs else float("nan")
lat = lambda key: med([r["latency_us"][key] for r in runs if "latency_us" in r])
row = [table, name, conns, client, len(runs), med(rates),
       min(rates, default=float("nan")), max(rates, default=float("nan")),
       lat("p50"), lat("p99"), sum(r.get("errors", 0) for r in runs),
       (s1 - s0) / wall, client_cpu / wall, (b1 - b0) / wall]
print("\t".join(str(x) for x in row))
PY
  log "$(tail -1 "$RESULTS" | awk -F'\t' '{ printf "%s %-28s c=%-3s %-7s %9.0f rt/s (%.0f..%.0f) p50 %.1fus p99 %.1fus err %s", $1, $2, $3, $4, $6, $7, $8, $9, $10, $11 }')"
}

# measure TABLE TRANSPORT NAME COMMAND...: starts the server (the command may use
# {PORT}), runs every connection count in CONNS against it, stops it.
measure() {
  local table=$1 transport=$2 name=$3
  shift 3
  PORT=$(free_port "$transport")
  local command=()
  local word
  for word in "$@"; do command+=("${word//\{PORT\}/$PORT}"); done
  log "$name: ${command[*]}"
  start_server "$transport" "$PORT" "${command[@]}"
  local conns
  for conns in "${CONNS[@]}"; do
    series "$table" "$transport" "$name" "$conns" socklab
  done
  stop_server
}

# --- the runs -------------------------------------------------------------------------

: >"$RESULTS"
measure tcp tcp "socklab" "$SOCKLAB" echo server --tcp --port '{PORT}'
measure tcp tcp "socat (fork, EXEC:cat)" socat 'TCP-LISTEN:{PORT},bind=127.0.0.1,fork,reuseaddr' EXEC:cat
measure tcp tcp "ncat (--exec /bin/cat)" ncat -lk --exec /bin/cat 127.0.0.1 '{PORT}'
measure tcp tcp "Python ThreadingTCPServer" python3 benches/py_echo_server.py '{PORT}'
measure tcp tcp "C floor (pthread/conn)" "$WORK/echo_floor" tcp '{PORT}'

measure udp udp "socklab" "$SOCKLAB" echo server --udp --port '{PORT}'
measure udp udp "socat (fork, PIPE)" socat 'UDP-LISTEN:{PORT},bind=127.0.0.1,fork' PIPE
measure udp udp "C floor (recvfrom loop)" "$WORK/echo_floor" udp '{PORT}'

# One connection again, with client and server pinned to the same core. Unpinned, each
# round trip wakes a sleeping core twice, and on a virtual machine that wake-up (an
# inter-processor interrupt through the hypervisor) is most of the round trip and
# varies with the host; on one core the wake-up is a plain context switch, so what is
# left is the server's own cost per message.
PIN=(taskset -c 0)
CONNS=(1)
measure pinned tcp "socklab TCP" "$SOCKLAB" echo server --tcp --port '{PORT}'
measure pinned tcp "C floor TCP" "$WORK/echo_floor" tcp '{PORT}'
measure pinned udp "socklab UDP" "$SOCKLAB" echo server --udp --port '{PORT}'
measure pinned udp "C floor UDP" "$WORK/echo_floor" udp '{PORT}'
PIN=()

# The cross-check: a second, independent load generator against the same two servers.
for server in socklab floor; do
  PORT=$(free_port tcp)
  if [ "$server" = socklab ]; then
    start_server tcp "$PORT" "$SOCKLAB" echo server --tcp --port "$PORT"
    name=socklab
  else
    start_server tcp "$PORT" "$WORK/echo_floor" tcp "$PORT"
    name="C floor (pthread/conn)"
  fi
  series tcp tcp "$name" 50 python
  stop_server
done

# --- the report -----------------------------------------------------------------------

FINISHED_AT=$(date +%s)
mkdir -p benches/results
REPORT=benches/results/echo-$(date +%F-%H%M%S).md
tokio_version=$(awk '/^name = "tokio"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
python3 - "$RESULTS" >"$REPORT" <<PY
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
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
      " the whole machine kept busy on average over the series (1.00 = one core fully"
      " used, the machine has $(nproc)). The server column misses children that socat and"
      " ncat reap automatically, so for them the machine column is the better guide;"
      " busy minus client is roughly the server plus loopback softirq work.")

def table(transport):
    print()
    print(f"### {transport.upper()}")
    print()
    print("| server | conns | round trips/s (median) | [min .. max] | p50 µs | p99 µs | server CPU | client CPU | machine busy | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r[0] != transport or r[3] != "socklab":
            continue
        print(f"| {r[1]} | {r[2]} | {num(r[5]):,.0f} | [{num(r[6]):,.0f} .. {num(r[7]):,.0f}] |"
              f" {num(r[8]):.1f} | {num(r[9]):.1f} | {num(r[11]):.2f} | {num(r[12]):.2f} | {num(r[13]):.2f} | {r[10]} |")

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
print("| server | round trips/s (median) | [min .. max] | p50 µs | p99 µs | server CPU | client CPU |")
print("|---|---:|---:|---:|---:|---:|---:|")
for r in rows:
    if r[0] == "pinned":
        print(f"| {r[1]} | {num(r[5]):,.0f} | [{num(r[6]):,.0f} .. {num(r[7]):,.0f}] |"
              f" {num(r[8]):.1f} | {num(r[9]):.1f} | {num(r[11]):.2f} | {num(r[12]):.2f} |")

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
