#!/usr/bin/env bash
# benches/forum.sh: how many forum commands a second, and how fast, with N logged-in
# clients running a mixed MSG/RDT/LST workload; at 0% loss directly and at LOSS% each
# way through socklab proxy; next to the UDP echo floor measured in the same runs.
#
#   bash benches/forum.sh                          # 5 runs at 0%, 3 at 10%: ~2 minutes
#   RUNS=1 LOSS_RUNS=1 DURATION=2s bash benches/forum.sh   # a quick look
#
# Each run is one `socklab forum bench --json` (see src/forum/bench.rs: an in-process
# forum server on its own thread over a fresh temp dir, the clients on the main
# runtime, the proxy on its own thread; first the UDP echo floor with as many clients,
# then the forum workload; afterwards every confirmed post is looked up in the thread
# files: exactly once, or the run fails). The report gives the median of the runs and
# their range.
#
# Output: a Markdown report on stdout, also written to benches/results/forum-DATE.md
# (git-ignored). Progress goes to stderr. Needs cargo and python3.
set -euo pipefail

cd "$(dirname "$0")/.."
BENCH_NAME=forum.sh
WORK=$(mktemp -d /tmp/socklab-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# shellcheck source=benches/lib.sh
source benches/lib.sh

RUNS=${RUNS:-5}
LOSS_RUNS=${LOSS_RUNS:-3}
CLIENTS=${CLIENTS:-50}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
LOSS=${LOSS:-10%}

ensure_tools python3
log "building socklab (release)"
build_socklab
BIN=target/release/socklab

run_cell() { # run_cell NAME ARGS...: one JSON report into $WORK/NAME.json
  local name=$1
  shift
  wait_for_quiet
  log "run $name: socklab forum bench $*"
  if ! "$BIN" forum bench --json "$@" >"$WORK/$name.json"; then
    log "run $name: the bench reported a failed check (see the JSON)"
  fi
}

started=$SECONDS
for i in $(seq 1 "$RUNS"); do
  run_cell "clean-$i" --clients "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" --seed "$i"
done
for i in $(seq 1 "$LOSS_RUNS"); do
  run_cell "loss-$i" --clients "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" \
    --loss "$LOSS" --seed "$i"
done
elapsed=$((SECONDS - started))

mkdir -p benches/results
report=benches/results/forum-$(date -u +%Y%m%d-%H%M%S).md
python3 - "$WORK" "$RUNS" "$LOSS_RUNS" "$CLIENTS" "$DURATION" "$LOSS" "$elapsed" <<'PY' | tee "$report"
import json, statistics, sys, glob, os
work, runs, loss_runs, clients, duration, loss, elapsed = sys.argv[1:]
def load(prefix):
    return [json.load(open(p)) for p in sorted(glob.glob(os.path.join(work, prefix + "-*.json")))]
def med(values):
    return statistics.median(values)
def cell(values, fmt="{:,.0f}"):
    return f"{fmt.format(med(values))} [{fmt.format(min(values))} .. {fmt.format(max(values))}]"
print(f"# socklab forum bench: {clients} clients, {duration} per run\n")
print(f"{runs} runs at 0% loss, {loss_runs} at {loss} loss each way through socklab proxy; "
      f"median [min .. max] of the runs; {elapsed} s in all.\n")
print("| setting | forum ops/s | forum p50 µs | forum p99 µs | UDP echo floor rt/s | floor p99 µs | retransmissions | failed ops | posts confirmed / found / duplicated |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
for name, reports in (("0% loss", load("clean")), (f"{loss} loss each way", load("loss"))):
    if not reports:
        continue
    alls = [next(o for o in r["ops"] if o["op"] == "all") for r in reports]
    print(f"| {name} | {cell([a['per_sec'] for a in alls])} | {cell([a['latency_us']['p50'] for a in alls], '{:,.1f}')} | "
          f"{cell([a['latency_us']['p99'] for a in alls], '{:,.1f}')} | "
          f"{cell([r['echo_floor']['round_trips_per_sec'] for r in reports])} | "
          f"{cell([r['echo_floor']['latency_us']['p99'] for r in reports], '{:,.1f}')} | "
          f"{cell([r['retransmissions'] for r in reports])} | {sum(r['failed'] for r in reports)} | "
          f"{sum(r['posts_confirmed'] for r in reports):,} / {sum(r['posts_found'] for r in reports):,} / {sum(r['posts_duplicated'] for r in reports)} |")
print()
print("Per operation (median of the runs):\n")
print("| setting | op | ops/s | p50 µs | p99 µs |")
print("|---|---|---:|---:|---:|")
for name, reports in (("0% loss", load("clean")), (f"{loss} loss", load("loss"))):
    if not reports:
        continue
    for op in ("MSG", "RDT", "LST", "CRT"):
        rows = [next(o for o in r["ops"] if o["op"] == op) for r in reports]
        print(f"| {name} | {op} | {med([x['per_sec'] for x in rows]):,.0f} | "
              f"{med([x['latency_us']['p50'] for x in rows]):,.1f} | {med([x['latency_us']['p99'] for x in rows]):,.1f} |")
PY
log "report written to $report"
