#!/usr/bin/env bash
# benches/analyze.sh: how fast `socklab analyze` reads a big capture, next to tshark,
# tcptrace and a bare libpcap read loop, with peak memory: issue 5's targets.
#
#   bash benches/analyze.sh                       # 1,000,000 packets, 5 runs: ~1.5 minutes
#   PACKETS=100000 RUNS=1 bash benches/analyze.sh # a quick look
#
# The capture is `socklab synth` (release build, seeded): thousands of TCP connections
# with handshakes, data, 1% loss and its retransmissions, FINs and RSTs, and UDP
# request/reply flows; about 750 bytes a packet. It is read once before measuring so
# every tool finds it in the page cache. Then, RUNS times each, round-robin:
#
#   socklab analyze FILE flows --json >/dev/null    one row per conversation
#   socklab analyze FILE summary                    protocols, flows, events
#   tshark -r FILE -q -z conv,tcp                   Wireshark's conversation table
#   tcptrace -n FILE                                 per-connection TCP statistics
#   benches/pcap_loop.c FILE                         libpcap's read loop: the floor
#
# each under `/usr/bin/time -f "%e %M"` (wall seconds, peak RSS in KiB). The report
# gives the median of the runs and the issue's ratios: `analyze flows` at least 20x
# faster than tshark, faster than tcptrace, within 2x of the bare loop, peak memory at
# most 64 MB.
#
# Output: a Markdown report on stdout, also written to benches/results/analyze-DATE.md
# (git-ignored). Progress goes to stderr. Needs cargo, gcc, libpcap-dev, python3,
# tshark, tcptrace, time (`bash .ci/deps bench` installs what is missing).
set -euo pipefail

cd "$(dirname "$0")/.."
BENCH_NAME=analyze.sh
WORK=$(mktemp -d /tmp/socklab-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# shellcheck source=benches/lib.sh
source benches/lib.sh

PACKETS=${PACKETS:-1000000}
RUNS=${RUNS:-5}
SEED=${SEED:-1}
LOSS=${LOSS:-1%}
# Where the capture goes: big (about 750 MB for a million packets), so not in /tmp if
# that is a small tmpfs; the default is the scratch directory, removed at the end.
CAPTURE=${CAPTURE:-$WORK/synth.pcap}

ensure_tools gcc python3 tshark tcptrace /usr/bin/time
log "building socklab (release)"
build_socklab
BIN=target/release/socklab
log "building the floor (gcc -O2 benches/pcap_loop.c -lpcap)"
gcc -O2 -o "$WORK/pcap_loop" benches/pcap_loop.c -lpcap

log "writing $PACKETS packets: socklab synth --seed $SEED --loss $LOSS"
"$BIN" synth "$CAPTURE" --packets "$PACKETS" --seed "$SEED" --loss "$LOSS" 2>"$WORK/synth.txt"
cat "$WORK/synth.txt" >&2
cat "$CAPTURE" >/dev/null # into the page cache, for every tool alike

# The tools, as "name | command" ({FILE} is the capture). `socklab analyze` is left out,
# with a note, while this build has no such subcommand.
tools=(
  "socklab analyze flows --json | $BIN analyze {FILE} flows --json"
  "socklab analyze summary | $BIN analyze {FILE} summary"
  "tshark -q -z conv,tcp | tshark -r {FILE} -q -z conv,tcp"
  "tcptrace -n | tcptrace -n {FILE}"
  "libpcap read loop (C) | $WORK/pcap_loop {FILE}"
)
if ! "$BIN" analyze --help >/dev/null 2>&1; then
  log "this socklab has no 'analyze' subcommand yet: measuring the others only"
  tools=("${tools[@]:2}")
fi

# measure NAME COMMAND RUN: one timed run, "NAME<TAB>RUN<TAB>seconds<TAB>KiB" appended
# to $WORK/times.tsv; the command's output goes to $WORK/out-*.txt.
measure() {
  local name=$1 command=${2//\{FILE\}/$CAPTURE} run=$3 slug
  slug=$(echo "$name" | tr -c 'a-zA-Z0-9\n' '_')
  wait_for_quiet
  log "run $run: $name"
  # shellcheck disable=SC2086 # the command is a word list on purpose
  if ! /usr/bin/time -f "%e %M" -o "$WORK/time.txt" $command >"$WORK/out-$slug.txt" 2>"$WORK/err-$slug.txt"; then
    log "$name failed:"
    tail -3 "$WORK/err-$slug.txt" >&2
    return
  fi
  printf '%s\t%s\t%s\n' "$name" "$run" "$(tail -1 "$WORK/time.txt" | tr ' ' '\t')" >>"$WORK/times.tsv"
}

: >"$WORK/times.tsv"
started=$SECONDS
for run in $(seq 1 "$RUNS"); do
  for tool in "${tools[@]}"; do
    measure "$(trim "${tool%%|*}")" "$(trim "${tool#*|}")" "$run"
  done
done
elapsed=$((SECONDS - started))

mkdir -p benches/results
report=benches/results/analyze-$(date -u +%Y%m%d-%H%M%S).md
python3 - "$WORK/times.tsv" "$WORK/synth.txt" "$CAPTURE" "$RUNS" "$elapsed" <<'PY' | tee "$report"
import os, statistics, sys
times_path, synth_path, capture, runs, elapsed = sys.argv[1:]
rows = {}
for line in open(times_path):
    name, run, seconds, kib = line.rstrip("\n").split("\t")
    rows.setdefault(name, []).append((float(seconds), int(kib)))
synth = open(synth_path).read().strip()
packets = int(synth.split(": ", 1)[1].split(" packets")[0])
size_mb = os.path.getsize(capture) / 1e6

print(f"# socklab analyze vs tshark, tcptrace and a bare libpcap loop\n")
print(f"A synthetic capture of {packets:,} packets ({size_mb:,.0f} MB), from the page cache; "
      f"median of {runs} runs per tool (wall time and peak resident memory, `/usr/bin/time`); "
      f"{elapsed} s in all.\n")
print("```text\n" + synth + "\n```\n")
print("| tool | wall s | packets/s | peak RSS MB | runs (s) |")
print("|---|---:|---:|---:|---|")
medians = {}
for name, samples in rows.items():
    wall = statistics.median(s for s, _ in samples)
    rss = statistics.median(k for _, k in samples) / 1024
    medians[name] = (wall, rss)
    runs_text = ", ".join(f"{s:.2f}" for s, _ in samples)
    print(f"| {name} | {wall:.2f} | {packets / wall:,.0f} | {rss:.1f} | {runs_text} |")
print()

def ratio(a, b):
    return medians[a][0] / medians[b][0] if a in medians and b in medians else None

flows, summary = "socklab analyze flows --json", "socklab analyze summary"
checks = []
for name in (flows, summary):
    if name not in medians:
        checks.append(f"- `{name}`: not measured (no `socklab analyze` in this build)")
        continue
    t = ratio("tshark -q -z conv,tcp", name)
    c = ratio("tcptrace -n", name)
    f = ratio(name, "libpcap read loop (C)")
    rss = medians[name][1]
    def verdict(ok):
        return "met" if ok else "MISSED"
    if t is not None:
        checks.append(f"- `{name}` vs tshark: {t:.1f}x faster (target at least 20x: {verdict(t >= 20)})")
    if c is not None:
        checks.append(f"- `{name}` vs tcptrace: {c:.1f}x faster (target faster: {verdict(c > 1)})")
    if f is not None:
        checks.append(f"- `{name}` vs the bare libpcap loop: {f:.2f}x its time (target within 2x: {verdict(f <= 2)})")
    checks.append(f"- `{name}` peak memory: {rss:.1f} MB (target at most 64 MB: {verdict(rss <= 64)})")
print("Targets (issue 5):\n")
print("\n".join(checks))
PY
log "report written to $report"
