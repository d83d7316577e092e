#!/usr/bin/env bash
# benches/proxy.sh: what does it cost to put socklab proxy between a client and a UDP
# server, next to socat and to no relay at all? And does it stay small under a flood?
#
#   bash benches/proxy.sh             # the full run: about 6.5 minutes on an idle
#                                     # 2-core machine, longer if it must wait for others
#   RUNS=3 DURATION=1s FLOOD_S=10 bash benches/proxy.sh   # a quick look (not for BENCHMARKS.md)
#
# Every path ends at the same server, `socklab echo server --udp` on port Q, and the
# load is `socklab echo bench --udp` (closed loop: each client keeps exactly one
# 64-byte datagram in flight and sends the next when the echo is back):
#
#   direct         client ──────────────────────────────────────► echo server :Q
#   socat          client ─► socat UDP-LISTEN:P,bind=127.0.0.1,fork UDP:127.0.0.1:Q ─► :Q
#   socklab proxy  client ─► socklab proxy --listen 127.0.0.1:P --upstream 127.0.0.1:Q ─► :Q
#                            (no impairment)
#   C relay        client ─► benches/relay_floor.c P Q ─► :Q   (a poll() loop, the floor:
#                            what any userspace relay costs)
#
# Measured, RUNS times (default 5) of DURATION (3s) after a WARMUP (0.5s), in
# round-robin rounds (every setup once per round, so a noisy minute hits all alike):
#   - 1 client: round trips/s, p50/p99 latency, and the latency the relay adds (p50
#     through it minus p50 direct);
#   - the same with every process pinned to one core (taskset -c 0): unpinned, each
#     hop wakes an idle core, which on a virtual machine costs tens of µs whatever the
#     relay's code does; pinned, a wake-up is a context switch and the relay's own cost
#     shows;
#   - 50 clients (-c 50) on every path: round trips/s, datagrams/s and errors;
#   - for every run: CPU and context switches of the client, the echo server and the
#     relay (every thread of every process in its group, from /proc), and of the whole
#     machine (/proc/stat ctxt), per round trip.
# Then one flood: benches/udp_flood.py sends FLOOD_SIZE-byte datagrams as fast as it can
# from 50 sockets for FLOOD_S seconds (default 60) through a proxy with
# FLOOD_IMPAIRMENTS (--rate 10mbit --queue 100 --delay 50ms). The proxy's resident
# memory (VmRSS) is sampled every second; at the end it gets SIGINT and its summary
# table (queue drops) is kept.
#
# Output: a Markdown report on stdout, also written to benches/results/proxy-DATE.md
# (git-ignored). Progress goes to stderr.
#
# Needs: cargo, gcc, python3, socat, ss, taskset (`bash .ci/deps bench`). Only ever talks to
# 127.0.0.1. Every process it starts is stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

RUNS=${RUNS:-5}
DURATION=${DURATION:-3s}
WARMUP=${WARMUP:-0.5s}
SIZE=${SIZE:-64}
MANY=${MANY:-50}
FLOOD_S=${FLOOD_S:-60}
FLOOD_SIZE=${FLOOD_SIZE:-1400}
FLOOD_SOCKETS=${FLOOD_SOCKETS:-50}
FLOOD_IMPAIRMENTS=${FLOOD_IMPAIRMENTS:---rate 10mbit --queue 100 --delay 50ms}
# After the flood, let the proxy's queues drain this long before stopping it.
FLOOD_SETTLE_S=3
# After a run, if processes outside the benchmark used more than FOREIGN_MAX_CORES on
# average, run it again, at most RUN_ATTEMPTS times in all (see wait_for_quiet too).
FOREIGN_MAX_CORES=0.3
RUN_ATTEMPTS=3

BENCH_NAME=proxy.sh
SOCKLAB=$ROOT/target/release/socklab
WORK=$(mktemp -d /tmp/socklab-bench.XXXXXX)
PIN=() # a prefix for every command of a setup, e.g. (taskset -c 0)
STARTED_AT=$(date +%s)
# shellcheck source=benches/lib.sh
source benches/lib.sh

SAMPLER_PID=""
cleanup() {
  [ -z "$SAMPLER_PID" ] || kill "$SAMPLER_PID" 2>/dev/null || true
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_tools gcc python3 socat ss taskset
log "building socklab (cargo build --release)"
build_socklab
log "building the C relay (gcc -O2 benches/relay_floor.c)"
gcc -O2 -o "$WORK/relay_floor" benches/relay_floor.c

# The setups, one a line: TABLE | NAME | PIN | CLIENTS | RELAY. PIN "cpu0" runs the
# echo server, the relay and the client under `taskset -c 0`; RELAY is none, socat,
# proxy or floor.
SETUPS=(
  "single | direct          | -    | 1     | none"
  "single | socat           | -    | 1     | socat"
  "single | socklab proxy   | -    | 1     | proxy"
  "single | C relay (floor) | -    | 1     | floor"
  "pinned | direct          | cpu0 | 1     | none"
  "pinned | socat           | cpu0 | 1     | socat"
  "pinned | socklab proxy   | cpu0 | 1     | proxy"
  "pinned | C relay (floor) | cpu0 | 1     | floor"
  "many   | direct          | -    | $MANY | none"
  "many   | socat           | -    | $MANY | socat"
  "many   | socklab proxy   | -    | $MANY | proxy"
  "many   | C relay (floor) | -    | $MANY | floor"
)

# Context switches of the whole machine so far (every CPU, the idle task included).
machine_switches() { awk '/^ctxt / { print $2 }' /proc/stat; }

# start_path RELAY: starts the echo server and, unless RELAY is none, the relay in front
# of it. Sets ECHO_PID, RELAY_PID (empty without a relay) and TARGET (the port the
# client sends to).
start_path() {
  local relay=$1 q p
  q=$(free_port udp)
  start_server udp "$q" "$SOCKLAB" echo server --udp --port "$q"
  ECHO_PID=$SERVER_PID RELAY_PID="" TARGET=$q
  case $relay in
  none) ;;
  socat)
    p=$(free_port udp)
    start_server udp "$p" socat "UDP-LISTEN:$p,bind=127.0.0.1,fork" "UDP:127.0.0.1:$q"
    RELAY_PID=$SERVER_PID TARGET=$p
    ;;
  proxy)
    p=$(free_port both)
    start_server udp "$p" "$SOCKLAB" proxy --listen "127.0.0.1:$p" --upstream "127.0.0.1:$q"
    RELAY_PID=$SERVER_PID TARGET=$p
    ;;
  floor)
    p=$(free_port udp)
    start_server udp "$p" "$WORK/relay_floor" "$p" "$q"
    RELAY_PID=$SERVER_PID TARGET=$p
    ;;
  esac
}

# process_counters: "echo-CPU-s relay-CPU-s echo-switches relay-switches" for the path
# running now. (Its processes are idle between runs, so these may be read a little
# before or after a run; each read starts a Python, which takes a while.)
process_counters() {
  local relay_cpu=0 relay_sw=0
  if [ -n "$RELAY_PID" ]; then
    relay_cpu=$(group_cpu_s "$RELAY_PID")
    relay_sw=$(group_switches "$RELAY_PID")
  fi
  echo "$(group_cpu_s "$ECHO_PID") $relay_cpu $(group_switches "$ECHO_PID") $relay_sw"
}

# machine_counters: "machine-busy-s machine-switches wall-s", read right before and right
# after the load generator runs, so the window holds nothing but the run.
machine_counters() { echo "$(machine_busy_s) $(machine_switches) $(date +%s.%N)"; }

# measure_run TABLE NAME CLIENTS ATTEMPT: one run of the load generator against TARGET;
# writes one tab-separated line to $WORK/run.tsv: table, name, clients, round trips/s,
# p50, p99, errors, then per second of the run: client CPU, echo CPU, relay CPU,
# machine busy, foreign load; then per round trip: client, echo, relay and machine
# context switches, relay CPU µs; then the attempt.
measure_run() {
  local table=$1 name=$2 c=$3 attempt=$4 before after status=0
  before="$(process_counters) $(machine_counters)"
  /usr/bin/time -f "%U %S %w %c" -o "$WORK/time" "${PIN[@]}" "$SOCKLAB" echo bench --udp \
    127.0.0.1 "$TARGET" -c "$c" -s "$SIZE" -d "$DURATION" --warmup "$WARMUP" --json \
    >"$WORK/run.json" 2>"$WORK/client.err" || status=$?
  after=$(machine_counters)
  after="$(process_counters) $after"
  # socklab exits 1 when a run had errors; they are counted in its JSON.
  if [ "$status" -ne 0 ] && [ "$status" -ne 1 ]; then
    log "load generator failed (exit $status) through $name: $(tail -1 "$WORK/client.err")"
    return 1
  fi
  python3 - "$WORK/run.json" "$WORK/time" "$table" "$name" "$c" "$attempt" \
    "$before" "$after" >"$WORK/run.tsv" <<'PY'
import json, sys
run_json, time_file, table, name, clients, attempt = sys.argv[1:7]
b = [float(x) for x in sys.argv[7].split()]
a = [float(x) for x in sys.argv[8].split()]
echo_cpu, relay_cpu, echo_sw, relay_sw, busy, machine_sw, wall = [y - x for x, y in zip(b, a)]
r = json.load(open(run_json))
# GNU time writes "Command exited with non-zero status 1" first when that happens.
user, system, voluntary, involuntary = map(float, open(time_file).read().split("\n")[-2].split())
client_cpu, client_sw = user + system, voluntary + involuntary
rate = r["round_trips_per_sec"]
# The counters cover the warm-up as well as the measured time, at the same rate, so
# per round trip = per second / round trips per second.
per_rt = lambda x: x / wall / rate if rate else float("nan")
lat = r.get("latency_us", {})
print("\t".join(str(x) for x in [
    table, name, clients, rate, lat.get("p50", "nan"), lat.get("p99", "nan"), r.get("errors", 0),
    client_cpu / wall, echo_cpu / wall, relay_cpu / wall, busy / wall,
    round((busy - client_cpu - echo_cpu - relay_cpu) / wall, 3),
    per_rt(client_sw), per_rt(echo_sw), per_rt(relay_sw), per_rt(machine_sw),
    per_rt(relay_cpu) * 1e6, attempt]))
PY
}

# run_once SETUP: starts the path of SETUP, runs the load once (again if foreign load
# spoilt it), stops the path. Appends one line to $RUNS_TSV.
run_once() {
  local table name pin clients relay attempt foreign
  IFS='|' read -r table name pin clients relay <<<"$1"
  table=$(trim "$table") name=$(trim "$name") pin=$(trim "$pin")
  clients=$(trim "$clients") relay=$(trim "$relay")
  PIN=()
  [ "$pin" = cpu0 ] && PIN=(taskset -c 0)
  start_path "$relay"
  for attempt in $(seq 1 "$RUN_ATTEMPTS"); do
    wait_for_quiet
    measure_run "$table" "$name" "$clients" "$attempt" || continue
    foreign=$(awk -F'\t' '{ print $12 }' "$WORK/run.tsv")
    if awk -v x="$foreign" -v m="$FOREIGN_MAX_CORES" 'BEGIN { exit !(x <= m) }' ||
      [ "$attempt" -eq "$RUN_ATTEMPTS" ]; then
      cat "$WORK/run.tsv" >>"$RUNS_TSV"
      log "$(awk -F'\t' '{ printf "%-6s %-15s c=%-2s %8.0f rt/s p50 %6.1f us p99 %7.1f us errors %s switches/rt relay %.2f machine %.2f foreign %.2f", $1, $2, $3, $4, $5, $6, $7, $15, $16, $12 }' "$WORK/run.tsv")"
      break
    fi
    log "other processes used $foreign cores during that run through $name; running it again"
  done
  stop_server
  PIN=()
}

# --- the runs -------------------------------------------------------------------------

RUNS_TSV=$WORK/runs.tsv
: >"$RUNS_TSV"
for round in $(seq 1 "$RUNS"); do
  log "round $round of $RUNS"
  for i in $(seq 0 $((${#SETUPS[@]} - 1))); do
    run_once "${SETUPS[$(((i + round - 1) % ${#SETUPS[@]}))]}"
  done
done

# --- the flood ------------------------------------------------------------------------

# udp_drops: datagrams the kernel dropped so far because a receiving socket's buffer
# was full (RcvbufErrors in /proc/net/snmp: the whole machine, idle but for us).
udp_drops() {
  awk '/^Udp:/ { if (!n++) { for (i = 1; i <= NF; i++) col[$i] = i } else { print $col["RcvbufErrors"]; exit } }' /proc/net/snmp
}

log "flood: ${FLOOD_S}s of ${FLOOD_SIZE}-byte datagrams from $FLOOD_SOCKETS sockets through a proxy with $FLOOD_IMPAIRMENTS"
start_path none
FLOOD_PORT=$(free_port both)
read -r -a flood_impairments <<<"$FLOOD_IMPAIRMENTS"
start_server udp "$FLOOD_PORT" "$SOCKLAB" proxy --listen "127.0.0.1:$FLOOD_PORT" \
  --upstream "127.0.0.1:$TARGET" "${flood_impairments[@]}" --seed 1 --color never
PROXY_PID=$SERVER_PID
wait_for_quiet
# One line per second: seconds since the flood started, VmRSS in KiB.
(
  t0=$(date +%s.%N)
  while [ -r "/proc/$PROXY_PID/status" ]; do
    echo "$(awk -v t0="$t0" -v t="$(date +%s.%N)" 'BEGIN { printf "%.1f", t - t0 }')" \
      "$(awk '/^VmRSS/ { print $2 }' "/proc/$PROXY_PID/status")"
    sleep 1
  done
) >"$WORK/rss.txt" 2>/dev/null &
SAMPLER_PID=$!
sleep 1 # the first sample is the proxy at rest
kernel_drops0=$(udp_drops)
flood_cpu0=$(group_cpu_s "$PROXY_PID")
python3 benches/udp_flood.py 127.0.0.1 "$FLOOD_PORT" --sockets "$FLOOD_SOCKETS" \
  -s "$FLOOD_SIZE" -d "$FLOOD_S" >"$WORK/flood.json"
flood_cpu1=$(group_cpu_s "$PROXY_PID")
kernel_drops1=$(udp_drops)
sleep "$FLOOD_SETTLE_S"
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""
# SIGINT is Ctrl-C: the proxy prints its summary table and exits.
kill -INT "$PROXY_PID"
wait "$PROXY_PID" 2>/dev/null || true
cp "$WORK/server-$FLOOD_PORT.log" "$WORK/flood-proxy.log"
stop_server
log "flood done: $(cat "$WORK/flood.json")"

# --- the report -----------------------------------------------------------------------

FINISHED_AT=$(date +%s)
mkdir -p benches/results
REPORT=benches/results/proxy-$(date +%F-%H%M%S).md
tokio_version=$(awk '/^name = "tokio"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
python3 - "$RUNS_TSV" "$WORK/rss.txt" "$WORK/flood.json" "$WORK/flood-proxy.log" \
  "$kernel_drops0" "$kernel_drops1" "$flood_cpu0" "$flood_cpu1" >"$REPORT" <<PY
import json, re, statistics, sys
from collections import OrderedDict

runs_tsv, rss_txt, flood_json, proxy_log = sys.argv[1:5]
kernel_drops = int(sys.argv[6]) - int(sys.argv[5])
flood_cpu = float(sys.argv[8]) - float(sys.argv[7])

cells = OrderedDict()
for line in open(runs_tsv):
    f = line.rstrip("\n").split("\t")
    if len(f) == 18:
        cells.setdefault((f[0], f[1]), []).append([float(x) for x in f[2:]])
# Column indices in a run's numbers (after table and name).
(CLIENTS, RATE, P50, P99, ERRORS, CLIENT_CPU, ECHO_CPU, RELAY_CPU, BUSY, FOREIGN,
 CLIENT_SW, ECHO_SW, RELAY_SW, MACHINE_SW, RELAY_US, ATTEMPT) = range(16)
med = lambda runs, i: statistics.median(r[i] for r in runs)
NAMES = ("direct", "socat", "socklab proxy", "C relay (floor)")

def cell(table, name):
    return cells.get((table, name), [])

print("## Proxy benchmark, $(date '+%F %H:%M %Z')")
print()
print("Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"
      " $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r);"
      " $(rustc --version), tokio $tokio_version; $(socat -V 2>/dev/null | awk '/socat version/ { print "socat " $3 }'),"
      " $(python3 --version).")
print()
print("Settings: UDP, ${SIZE}-byte datagrams, one in flight per client; $RUNS runs of"
      " $DURATION after a $WARMUP warm-up per cell, in round-robin rounds; median of the"
      " runs, range in brackets. Every path ends at the same \`socklab echo server --udp\`;"
      " client, relay and server share the cores."
      " Total time of the script: $(( (FINISHED_AT - STARTED_AT) / 60 )) min $(( (FINISHED_AT - STARTED_AT) % 60 )) s.")
repeated = sum(1 for runs in cells.values() for r in runs if r[ATTEMPT] > 1)
spoilt = sum(1 for runs in cells.values() for r in runs if r[FOREIGN] > $FOREIGN_MAX_CORES)
print()
print(f"Before each run the script waited for the machine to be idle; {repeated} run(s)"
      f" were repeated because other processes used more than $FOREIGN_MAX_CORES cores"
      f" during them, and {spoilt} run(s) in the tables still had that much foreign load.")
print()
print("Context switches per round trip: every thread of the process (group), voluntary +"
      " involuntary, from /proc; \"machine\" is /proc/stat's ctxt (every CPU, switches"
      " to and from the idle task included). Relay CPU: µs of CPU the relay's process"
      " group used per round trip.")

def single(table, title, note):
    print()
    print(f"### {title}")
    print()
    print(note)
    print()
    print("| path | round trips/s (median) | [min .. max] | p50 µs | p99 µs | p50 added by the relay µs | switches/rt: client, server, relay, machine | relay CPU µs/rt | errors |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|")
    direct = cell(table, "direct")
    base = med(direct, P50) if direct else float("nan")
    for name in NAMES:
        runs = cell(table, name)
        if not runs:
            continue
        added = "-" if name == "direct" else f"{med(runs, P50) - base:+.1f}"
        relay_us = "-" if name == "direct" else f"{med(runs, RELAY_US):.1f}"
        print(f"| {name} | {med(runs, RATE):,.0f} | [{min(r[RATE] for r in runs):,.0f} .. {max(r[RATE] for r in runs):,.0f}] |"
              f" {med(runs, P50):.1f} | {med(runs, P99):.1f} | {added} |"
              f" {med(runs, CLIENT_SW):.2f}, {med(runs, ECHO_SW):.2f}, {med(runs, RELAY_SW):.2f}, {med(runs, MACHINE_SW):.2f} |"
              f" {relay_us} | {int(sum(r[ERRORS] for r in runs))} |")

single("single", "1 client", "Unpinned: the scheduler places client, relay and server on either core.")
single("pinned", "1 client, everything pinned to one core (taskset -c 0)",
       "Echo server, relay and client under \`taskset -c 0\`: a wake-up is a context"
       " switch on the same core instead of an interrupt to an idle one.")

print()
print("### Ratios (median round trips/s)")
print()
print("| | socklab proxy / socat | socklab proxy / C relay | socklab proxy / direct | socat / direct | C relay / direct |")
print("|---|---:|---:|---:|---:|---:|")
for table, label in (("single", "1 client"), ("pinned", "1 client, pinned"), ("many", f"$MANY clients")):
    d, s, p, f = (med(cell(table, n), RATE) if cell(table, n) else float("nan") for n in NAMES)
    print(f"| {label} | {p / s:.2f}x | {p / f:.2f}x | {p / d:.2f}x | {s / d:.2f}x | {f / d:.2f}x |")

print()
print(f"### $MANY clients")
print()
print("Datagrams/s counts what crosses the relay in both directions: each round trip is"
      " one request (client to server) and one echo (server to client), so datagrams/s ="
      " 2 x round trips/s, each datagram received once and sent once by the relay"
      " (direct: by the echo server). An error is a request whose echo did not come"
      " within 1 s (that client then sat idle for the second).")
print()
print("| path | round trips/s (median) | [min .. max] | datagrams/s | p50 µs | p99 µs | relay CPU (cores) | relay CPU µs/rt | client CPU | server CPU | machine busy | errors (all runs) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name in NAMES:
    runs = cell("many", name)
    if not runs:
        continue
    relay = "-" if name == "direct" else f"{med(runs, RELAY_CPU):.2f}"
    relay_us = "-" if name == "direct" else f"{med(runs, RELAY_US):.1f}"
    print(f"| {name} | {med(runs, RATE):,.0f} | [{min(r[RATE] for r in runs):,.0f} .. {max(r[RATE] for r in runs):,.0f}] |"
          f" {2 * med(runs, RATE):,.0f} | {med(runs, P50):.1f} | {med(runs, P99):.1f} | {relay} | {relay_us} |"
          f" {med(runs, CLIENT_CPU):.2f} | {med(runs, ECHO_CPU):.2f} | {med(runs, BUSY):.2f} | {int(sum(r[ERRORS] for r in runs))} |")

# The flood.
samples = [tuple(map(float, l.split())) for l in open(rss_txt) if len(l.split()) == 2]
flood = json.load(open(flood_json))
log_text = open(proxy_log, encoding="utf-8", errors="replace").read()
def row(label):
    for line in log_text.splitlines():
        cols = [c.strip() for c in re.split(r"[│┆|]", line) if c.strip()]
        if cols and cols[0] == label and len(cols) >= 3:
            return cols[1], cols[2]
    return "?", "?"
print()
print(f"### Flood: {flood['duration_s']:.0f} s through \`socklab proxy $FLOOD_IMPAIRMENTS\`")
print()
print(f"benches/udp_flood.py sent {flood['size']}-byte datagrams from {flood['sockets']} sockets as fast"
      f" as one Python thread can, never waiting for replies: {flood['sent']:,} datagrams,"
      f" {flood['sent_per_sec']:,.0f}/s ({flood['sent_per_sec'] * flood['size'] * 8 / 1e6:,.0f} Mbit/s of"
      f" payload, against a 10 Mbit/s link), {flood['send_errors']:,} refused by the local kernel,"
      f" {flood['received']:,} echoes back. The kernel dropped {kernel_drops:,} datagrams for a full"
      f" socket receive buffer during the flood (RcvbufErrors, the whole machine: mostly"
      f" at the proxy's listening socket). The proxy used {flood_cpu / flood['duration_s']:.2f} cores.")
print()
print("Resident memory of the proxy (VmRSS), sampled every second:")
print()
if samples:
    rest = samples[0][1]
    during = [s for s in samples[1:] if s[0] <= samples[0][0] + 1 + flood["duration_s"]] or samples
    peak = max(s[1] for s in samples)
    after = samples[-1][1]
    ten = next((s[1] for s in during if s[0] >= samples[0][0] + 11), during[0][1])
    last_flood = during[-1][1]
    print("| at rest | first sample of the flood | after 10 s | peak | last sample of the flood | after it, queues drained | growth, 10 s to end of flood |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    mib = lambda kib: f"{kib / 1024:.1f} MiB"
    print(f"| {mib(rest)} | {mib(during[0][1])} | {mib(ten)} | {mib(peak)} | {mib(last_flood)} | {mib(after)} | {(last_flood - ten):+,.0f} KiB |")
    print()
    print("Every 10 s: " + ", ".join(f"{s[0]:.0f} s {s[1] / 1024:.1f}" for s in samples[::10]) + " (MiB).")
print()
print("The proxy's summary table at exit (SIGINT), selected rows:")
print()
print("| | c2s (client→server) | s2c (server→client) |")
print("|---|---:|---:|")
for label in ("udp received", "forwarded", "dropped: loss", "dropped: queue", "delayed"):
    c, s = row(label)
    print(f"| {label} | {c} | {s} |")

print()
print("### Commands")
print()
print("\`\`\`sh")
print("cargo build --release; gcc -O2 -o relay_floor benches/relay_floor.c")
print("# Q, P: free ports on 127.0.0.1, found afresh for each run")
print("target/release/socklab echo server --udp --port Q")
print("socat UDP-LISTEN:P,bind=127.0.0.1,fork UDP:127.0.0.1:Q")
print("target/release/socklab proxy --listen 127.0.0.1:P --upstream 127.0.0.1:Q")
print("./relay_floor P Q")
print("# load ($RUNS times per cell; T = Q direct, P through a relay; C = 1, $MANY)")
print("# (the pinned cells run all three under taskset -c 0, C = 1)")
print("target/release/socklab echo bench --udp 127.0.0.1 T -c C -s $SIZE -d $DURATION --warmup $WARMUP --json")
print("# the flood")
print("target/release/socklab proxy --listen 127.0.0.1:P --upstream 127.0.0.1:Q $FLOOD_IMPAIRMENTS --seed 1 --color never")
print("python3 benches/udp_flood.py 127.0.0.1 P --sockets $FLOOD_SOCKETS -s $FLOOD_SIZE -d $FLOOD_S")
print("kill -INT <proxy>   # prints the summary table")
print("\`\`\`")
PY
cat "$REPORT"
log "report written to $REPORT ($((FINISHED_AT - STARTED_AT))s)"
