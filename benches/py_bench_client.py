"""A second load generator, to check that `socklab echo bench` is not the bottleneck.

Same semantics as `socklab echo bench --tcp`: CONNS connections, TCP_NODELAY, each
with exactly one SIZE-byte message in flight (send it, read the SIZE-byte echo back,
send the next), a warm-up that is not counted, then a fixed measured duration. One
thread, one `selectors` loop (epoll on Linux), so it costs the machine little besides
its own CPU. Prints one JSON object:

    {"client": "python-selectors", "connections": 50, "size": 64,
     "duration_s": 3.0, "round_trips": 123456, "round_trips_per_sec": 41152.0}

    python3 benches/py_bench_client.py HOST PORT [-c CONNS] [-s SIZE] [-d SECONDS]
                                                 [--warmup SECONDS]

If this client reaches no more round trips/s than socklab's against the same server,
the server (or the kernel) limits the numbers, not socklab's generator.
"""

import argparse
import json
import selectors
import socket
import sys
import time

# A connection whose echo has not come this many seconds after the end of the run has
# stalled: give up instead of waiting forever.
STALL_GRACE = 5.0


def run(host, port, connections, size, duration, warmup):
    request = b"x" * size
    selector = selectors.DefaultSelector()
    # Per socket: how many bytes of the current echo are still missing, and when its
    # request went out (a round trip counts if it started inside the measured window,
    # as in socklab's bench).
    missing = {}
    started = {}
    socks = []
    for _ in range(connections):
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        socks.append(sock)

    measure_from = time.monotonic() + warmup
    end = measure_from + duration
    for sock in socks:
        # 64 bytes always fit in an empty socket buffer: the send completes at once.
        started[sock] = time.monotonic()
        sock.send(request)
        missing[sock] = size
        selector.register(sock, selectors.EVENT_READ)

    round_trips = 0
    open_socks = len(socks)
    while open_socks:
        if time.monotonic() > end + STALL_GRACE:
            raise SystemExit(f"py_bench_client: {open_socks} connections to "
                             f"{host}:{port} stalled past the end of the run")
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj
            data = sock.recv(missing[sock])
            if not data:
                raise SystemExit(f"py_bench_client: {host}:{port} closed a connection")
            missing[sock] -= len(data)
            if missing[sock]:
                continue
            if measure_from <= started[sock] < end:
                round_trips += 1
            now = time.monotonic()
            if now >= end:
                selector.unregister(sock)
                open_socks -= 1
                continue
            started[sock] = now
            sock.send(request)
            missing[sock] = size
    for sock in socks:
        sock.close()
    return round_trips


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("-c", "--connections", type=int, default=1)
    parser.add_argument("-s", "--size", type=int, default=64)
    parser.add_argument("-d", "--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    args = parser.parse_args()
    round_trips = run(args.host, args.port, args.connections, args.size,
                      args.duration, args.warmup)
    json.dump({
        "client": "python-selectors",
        "connections": args.connections,
        "size": args.size,
        "duration_s": args.duration,
        "round_trips": round_trips,
        "round_trips_per_sec": round_trips / args.duration,
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
