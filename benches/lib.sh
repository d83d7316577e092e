# benches/lib.sh: helpers shared by the benchmark scripts (echo.sh, proxy.sh).
# Sourced, not run:
#
#   BENCH_NAME=proxy.sh
#   WORK=$(mktemp -d /tmp/socklab-bench.XXXXXX)
#   source benches/lib.sh
#
# The sourcing script sets, before calling anything here:
#   BENCH_NAME       the prefix of progress lines ([proxy.sh 06:41:02] ...)
#   WORK             a scratch directory (server logs, build log)
# and may set (defaults below): READY_TIMEOUT_S, BUILD_ATTEMPTS, QUIET_CORES,
# QUIET_WAIT_S, and PIN, an array prefixed to every server command (e.g. taskset -c 0).
#
# Servers are started in their own process group (setsid) so that a server and every
# child it forks (socat forks one per client) can be stopped together. The script's
# EXIT trap should call stop_server, which stops every server still running.

# How long a server may take to start listening before we give up on it.
READY_TIMEOUT_S=${READY_TIMEOUT_S:-20}
# The crate may briefly fail to compile while someone is mid-change: retry this often,
# a minute apart, before giving up.
BUILD_ATTEMPTS=${BUILD_ATTEMPTS:-10}
# The machine may be shared (someone's `cargo test`): wait_for_quiet waits up to
# QUIET_WAIT_S for the cores to be nearly idle (under QUIET_CORES busy).
QUIET_CORES=${QUIET_CORES:-0.3}
QUIET_WAIT_S=${QUIET_WAIT_S:-90}

SERVER_PID=""   # the server started last
SERVER_PIDS=()  # every server still running (process group leaders)
if ! declare -p PIN >/dev/null 2>&1; then
  PIN=()
fi

log() { echo "[$BENCH_NAME $(date +%T)] $*" >&2; }

trim() { local x=$1; x=${x#"${x%%[! ]*}"}; echo "${x%"${x##*[! ]}"}"; }

# ensure_tools TOOL...: installs the benchmark tools (bash .ci/deps bench) if any of
# them is missing.
ensure_tools() {
  local tool
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      log "installing the benchmark tools (bash .ci/deps bench)"
      bash .ci/deps bench
      return
    fi
  done
}

# build_socklab: cargo build --release, retried BUILD_ATTEMPTS times a minute apart.
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

# free_port tcp|udp|both: prints a port that is free on 127.0.0.1 right now, for TCP,
# for UDP, or for both at once (socklab proxy binds UDP and TCP on the same number).
free_port() {
  python3 - "$1" <<'PY'
import socket, sys
kinds = {"tcp": [socket.SOCK_STREAM], "udp": [socket.SOCK_DGRAM],
         "both": [socket.SOCK_DGRAM, socket.SOCK_STREAM]}[sys.argv[1]]
for _ in range(100):
    first = socket.socket(socket.AF_INET, kinds[0])
    first.bind(("127.0.0.1", 0))
    port = first.getsockname()[1]
    others, ok = [], True
    for kind in kinds[1:]:
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            ok = False
        others.append(s)
    for s in [first] + others:
        s.close()
    if ok:
        print(port)
        break
else:
    sys.exit("no free port")
PY
}

# start_server tcp|udp PORT COMMAND...: starts COMMAND (behind ${PIN[@]}) in its own
# process group and waits until something listens on PORT; its output goes to
# $WORK/server-PORT.log. Sets SERVER_PID and adds it to SERVER_PIDS.
start_server() {
  local transport=$1 port=$2
  shift 2
  setsid "${PIN[@]}" "$@" >"$WORK/server-$port.log" 2>&1 &
  SERVER_PID=$!
  SERVER_PIDS+=("$SERVER_PID")
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

# stop_server [PID]: stops the server PID (default: every server still running) and
# every process it forked (its whole process group).
stop_server() {
  local pids=("${SERVER_PIDS[@]}") pid rest=()
  [ $# -gt 0 ] && pids=("$1")
  for pid in "${pids[@]}"; do
    [ -n "$pid" ] || continue
    kill -TERM -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  for pid in "${SERVER_PIDS[@]}"; do
    [[ " ${pids[*]} " == *" $pid "* ]] || rest+=("$pid")
  done
  SERVER_PIDS=("${rest[@]}")
  SERVER_PID=""
}

# group_cpu_s PGID: CPU seconds used so far by the process group: every live member,
# plus the children the leader has already reaped (socat and ncat fork one per
# connection).
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

# group_switches PGID: context switches so far (voluntary + involuntary) of every
# thread of every live process in the group: each time one of them went to sleep or
# was preempted.
group_switches() {
  python3 - "$1" <<'PY'
import os, sys
pgid, switches = int(sys.argv[1]), 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/stat") as f:
            if int(f.read().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        switches += int(line.split()[1])
    except OSError:
        continue
print(switches)
PY
}

# machine_busy_s: CPU seconds all cores have spent busy so far: user, system, and
# interrupt and softirq time (where the kernel does most of loopback's packet work),
# not idle, I/O wait or time the hypervisor gave to someone else.
machine_busy_s() {
  awk -v hz="$(getconf CLK_TCK)" '/^cpu / { print ($2 + $3 + $4 + $7 + $8) / hz; exit }' /proc/stat
}

# wait_for_quiet: waits until the machine is nearly idle (see QUIET_CORES), or
# QUIET_WAIT_S has passed.
wait_for_quiet() {
  local deadline=$((SECONDS + QUIET_WAIT_S)) b0 b1 busy said=""
  while :; do
    b0=$(machine_busy_s)
    sleep 0.5
    b1=$(machine_busy_s)
    busy=$(awk -v a="$b0" -v b="$b1" 'BEGIN { printf "%.2f", (b - a) / 0.5 }')
    awk -v x="$busy" -v q="$QUIET_CORES" 'BEGIN { exit !(x < q) }' && return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "machine still busy ($busy cores) after ${QUIET_WAIT_S}s; measuring anyway"
      return 0
    fi
    [ -n "$said" ] || log "waiting for the machine to go quiet ($busy cores busy)"
    said=1
  done
}
