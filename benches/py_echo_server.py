"""A TCP echo server in plain Python, one of the servers benches/echo.sh compares.

socketserver.ThreadingTCPServer: one thread per connection, blocking recv/sendall of
whatever arrived, TCP_NODELAY, 127.0.0.1 only. What a student writes first, and the
"about 1.7x Python" target in BENCHMARKS.md is measured against it.

    python3 benches/py_echo_server.py PORT
"""

import socket
import socketserver
import sys

# As socklab's TCP server: a read returns what is buffered, up to this much.
READ_BUFFER = 16 * 1024


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        conn = self.request
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            data = conn.recv(READ_BUFFER)
            if not data:
                return
            conn.sendall(data)


class EchoServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: py_echo_server.py PORT")
    port = int(sys.argv[1])
    with EchoServer(("127.0.0.1", port), EchoHandler) as server:
        print(f"listening on 127.0.0.1:{port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
