#!/usr/bin/env bash
# captures/record.sh: records the sample captures of lab 4 on the loopback interface,
# from socklab's own programs, with fixed ports, messages and proxy seeds:
#
#   echo-tcp.pcap     a TCP echo session: handshake, three messages, clean close
#   echo-udp.pcap     UDP echo pings, and one ping to a closed port (ICMP unreachable)
#   forum.pcap        a forum session: login, CRT, MSG, LST, RDT, UPD, DWN, XIT
#   forum-lossy.pcap  the same through socklab proxy with 20% seeded loss each way
#   tcp-bulk.pcap     a 200 KB `socklab file put` relayed by socklab proxy at 1 Mbit/s
#
#   sudo bash captures/record.sh        # needs root (tcpdump on lo), tcpdump, cargo
#
# Timing differs from run to run (loopback round trips, scheduling), so the files are
# never byte-identical, but their content is: same ports, same data, same losses.
# Each file keeps whole packets (tcpdump's default snap length) and stays under 300 KB.
# captures/README.md says what to look for in each.
set -euo pipefail

cd "$(dirname "$0")/.."
BENCH_NAME=record.sh
WORK=$(mktemp -d /tmp/socklab-record.XXXXXX)
# shellcheck source=benches/lib.sh
source benches/lib.sh

# The ports of the labs: echo on 12000 (as in Kurose & Ross), the file server on 12001.
ECHO_PORT=12000
CLOSED_PORT=12009 # nothing listens here
FILE_PORT=12001
FORUM_PORT=12010
PROXY_PORT=12020
PROXY_SEED=7
FORUM_LOSS=20%
BULK_RATE=1mbit
BULK_SIZE=204800

TCPDUMP_PID=""
cleanup() {
  [ -n "$TCPDUMP_PID" ] && kill -INT "$TCPDUMP_PID" 2>/dev/null
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$(id -u)" -ne 0 ]; then
  echo "socklab: record.sh captures on lo with tcpdump: run it as root (sudo bash captures/record.sh)" >&2
  exit 2
fi
command -v tcpdump >/dev/null || { echo "socklab: tcpdump is missing (bash .ci/deps)" >&2; exit 2; }
for port in $ECHO_PORT $CLOSED_PORT $FILE_PORT $FORUM_PORT $PROXY_PORT; do
  if [ -n "$(ss -Htuln "sport = :$port")" ]; then
    echo "socklab: port $port is in use; stop whatever listens there and run again" >&2
    exit 2
  fi
done

log "building socklab (release)"
build_socklab
BIN=$PWD/target/release/socklab

# start_capture FILE FILTER: tcpdump on lo into captures/FILE, once it is listening.
start_capture() {
  local file=$1 filter=$2
  : >"$WORK/tcpdump.log" # a fresh log: its "listening on" line is the readiness signal
  # Immediate mode: without it packets wait in the kernel for a full block or a 1 s
  # timeout, and a short session would be stopped before tcpdump saw any of it.
  tcpdump -i lo -n -U --immediate-mode -w "captures/$file" "$filter" 2>"$WORK/tcpdump.log" &
  TCPDUMP_PID=$!
  local deadline=$((SECONDS + READY_TIMEOUT_S))
  until grep -q "listening on lo" "$WORK/tcpdump.log"; do
    if ! kill -0 "$TCPDUMP_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      cat "$WORK/tcpdump.log" >&2
      exit 2
    fi
    sleep 0.05
  done
}

# stop_capture: stops tcpdump after the last packets (a FIN's ACK, a late reply) have
# had time to reach it; there is no event to wait for, so give them half a second.
stop_capture() {
  sleep 0.5
  kill -INT "$TCPDUMP_PID"
  wait "$TCPDUMP_PID" 2>/dev/null || true
  TCPDUMP_PID=""
  log "$(grep -E 'packets (captured|received by filter)' "$WORK/tcpdump.log" | head -1)"
}

# (a) TCP echo: the classic capitalising server, three messages half a second apart.
log "echo-tcp.pcap"
start_server tcp $ECHO_PORT "$BIN" echo server --tcp --upper --port $ECHO_PORT
start_capture echo-tcp.pcap "tcp port $ECHO_PORT"
"$BIN" echo client --tcp 127.0.0.1 $ECHO_PORT --count 3 --interval 500 --message "hello socklab {seq}"
stop_capture
stop_server

# (b) UDP echo: four pings, then one to a port where nothing listens.
log "echo-udp.pcap"
start_server udp $ECHO_PORT "$BIN" echo server --udp --upper --port $ECHO_PORT
start_capture echo-udp.pcap "udp port $ECHO_PORT or udp port $CLOSED_PORT or icmp"
"$BIN" echo client --udp 127.0.0.1 $ECHO_PORT --count 4 --interval 200 --timeout 1000 --message "ping {seq}"
# Exit code 1: the reply is lost, which is the point.
"$BIN" echo client --udp 127.0.0.1 $CLOSED_PORT --count 1 --timeout 500 --message "anyone there?" || true
stop_capture
stop_server

# The forum session, as a user types it (a new user registers with their password).
mkdir -p "$WORK/client" "$WORK/client-lossy"
forum_session() { # forum_session USER THREAD: the commands on stdout
  cat <<EOF
$1
pass-$1
CRT $2
MSG $2 Hello from the capture lab
LST
RDT $2
UPD $2 notes.txt
DWN $2 notes.txt
XIT
EOF
}
notes() { # a small text file to upload: 40 numbered lines
  for i in $(seq 1 40); do echo "line $i of the notes $1 uploads to the forum"; done
}
notes yoda >"$WORK/client/notes.txt"
notes r2d2 >"$WORK/client-lossy/notes.txt"

# (c) The forum, directly: commands over UDP, UPD and DWN over TCP, same port number.
log "forum.pcap"
mkdir -p "$WORK/forum"
start_server udp $FORUM_PORT "$BIN" forum server $FORUM_PORT --dir "$WORK/forum"
start_capture forum.pcap "port $FORUM_PORT"
forum_session yoda networks | (cd "$WORK/client" && "$BIN" forum client $FORUM_PORT) >"$WORK/forum-client.log"
stop_capture
stop_server
grep -q "notes.txt successfully downloaded" "$WORK/forum-client.log" || { cat "$WORK/forum-client.log" >&2; exit 2; }

# (d) The same through the proxy losing 20% of the datagrams each way (seeded), captured
# between client and proxy: the client's resent requests and the replies that got back.
log "forum-lossy.pcap"
mkdir -p "$WORK/forum-lossy"
start_server udp $FORUM_PORT "$BIN" forum server $FORUM_PORT --dir "$WORK/forum-lossy"
start_server udp $PROXY_PORT "$BIN" proxy --listen 127.0.0.1:$PROXY_PORT \
  --upstream 127.0.0.1:$FORUM_PORT --loss $FORUM_LOSS --seed $PROXY_SEED
start_capture forum-lossy.pcap "port $PROXY_PORT"
forum_session r2d2 lossy | (cd "$WORK/client-lossy" && "$BIN" forum client $PROXY_PORT) >"$WORK/forum-lossy-client.log"
stop_capture
stop_server
grep -q "notes.txt successfully downloaded" "$WORK/forum-lossy-client.log" || { cat "$WORK/forum-lossy-client.log" >&2; exit 2; }

# (e) A 200 KB upload relayed by the proxy at 1 Mbit/s: it writes about 1,250 bytes
# every 10 ms towards the file server, so on the proxy-to-server leg (the one captured)
# the segments are Ethernet-sized instead of loopback's 64 KB, and the ACKs show it.
log "tcp-bulk.pcap"
mkdir -p "$WORK/share"
# (yes in a process substitution: in a pipeline, its SIGPIPE would stop the script.)
head -c $BULK_SIZE <(yes "socklab bulk transfer: one line of a 200 KB file for the TCP lab") >"$WORK/bulk.txt"
start_server tcp $FILE_PORT "$BIN" file serve --port $FILE_PORT --dir "$WORK/share"
start_server tcp $PROXY_PORT "$BIN" proxy --listen 127.0.0.1:$PROXY_PORT \
  --upstream 127.0.0.1:$FILE_PORT --tcp-rate $BULK_RATE --seed $PROXY_SEED
start_capture tcp-bulk.pcap "tcp port $FILE_PORT"
"$BIN" -q file put 127.0.0.1 $PROXY_PORT "$WORK/bulk.txt"
stop_capture
stop_server
cmp -s "$WORK/bulk.txt" "$WORK/share/bulk.txt" || { echo "socklab: the upload did not arrive intact" >&2; exit 2; }

ls -l captures/*.pcap >&2
for f in captures/*.pcap; do
  size=$(stat -c %s "$f")
  [ "$size" -lt 300000 ] || { echo "socklab: $f is $size bytes (keep each under 300 KB)" >&2; exit 2; }
done
log "done"
