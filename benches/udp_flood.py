"""An open-loop UDP flood, for benches/proxy.sh: how does a relay behave when far more
arrives than its link may carry?

Unlike `socklab echo bench` (which waits for each echo before sending the next), this
sends SIZE-byte datagrams as fast as one Python thread can, round-robin from SOCKETS
sockets (so the relay sees that many clients), for SECONDS, and reads back whatever
replies arrive in between without ever waiting for them. Prints one JSON object:

    {"sockets": 50, "size": 1400, "duration_s": 60.0, "sent": 9123456,
     "send_errors": 12, "received": 53100, "sent_per_sec": 152057.6}

    python3 benches/udp_flood.py HOST PORT [--sockets N] [-s SIZE] [-d SECONDS]

`send_errors` counts sends the kernel refused at once (ENOBUFS, EAGAIN: the local
socket buffer was full); those datagrams never left.
"""

import argparse
import errno
import json
import socket
import sys
import time

# Datagrams sent between two looks at the clock and two sweeps for replies: often
# enough to stop on time, rarely enough to cost nothing.
BATCH = 256


def flood(host, port, sockets, size, duration):
    payload = b"f" * size
    socks = []
    for _ in range(sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((host, port))
        s.setblocking(False)
        socks.append(s)
    sent = send_errors = received = 0
    started = time.monotonic()
    end = started + duration
    while True:
        for s in socks:
            for _ in range(BATCH // len(socks) + 1):
                try:
                    s.send(payload)
                    sent += 1
                except BlockingIOError:
                    send_errors += 1
                except OSError as error:
                    # ECONNREFUSED: an ICMP error about an earlier datagram (nothing
                    # listened for a moment); ENOBUFS: the local queue was full.
                    if error.errno not in (errno.ECONNREFUSED, errno.ENOBUFS):
                        raise
                    send_errors += 1
        for s in socks:
            while True:
                try:
                    s.recv(65536)
                    received += 1
                except (BlockingIOError, ConnectionRefusedError):
                    break
        if time.monotonic() >= end:
            break
    elapsed = time.monotonic() - started
    for s in socks:
        s.close()
    return {
        "sockets": sockets,
        "size": size,
        "duration_s": round(elapsed, 3),
        "sent": sent,
        "send_errors": send_errors,
        "received": received,
        "sent_per_sec": round(sent / elapsed, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--sockets", type=int, default=50)
    parser.add_argument("-s", "--size", type=int, default=1400)
    parser.add_argument("-d", "--duration", type=float, default=60.0)
    args = parser.parse_args()
    json.dump(flood(args.host, args.port, args.sockets, args.size, args.duration), sys.stdout)
    print()


if __name__ == "__main__":
    main()
