"""A fast local source for bench/delivery.py: accepts every webhook and counts them.

    .venv/bin/python bench/delivery_receiver.py --port 8765

Any POST (or PUT/PATCH) is answered 200 `{"status": "accepted"}` at once, on a
kept-alive HTTP/1.1 connection, and its `webhook-id` counted. `GET /stats` answers
`{"requests": n, "ids": distinct webhook-ids}`: more requests than ids means some
notification was sent twice (at-least-once delivery). Runs in its own process, one
thread per connection, so neither the app nor the ceiling shares its GIL.
"""

import argparse
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BODY = b'{"status": "accepted"}'
# One write per answer: headers and body in separate small writes would meet
# Nagle's algorithm and the client's delayed ACK (up to 40 ms per request).
ANSWER = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n"
    b"\r\n" + BODY
)


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.ids: set[str] = set()

    def add(self, webhook_id: str | None) -> None:
        with self.lock:
            self.requests += 1
            if webhook_id:
                self.ids.add(webhook_id)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {"requests": self.requests, "ids": len(self.ids)}


class Handler(BaseHTTPRequestHandler):
    server: "Server"
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _accept(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.counter.add(self.headers.get("webhook-id"))
        self.wfile.write(ANSWER)

    do_POST = do_PUT = do_PATCH = _accept

    def do_GET(self) -> None:
        body = json.dumps(self.server.counter.snapshot()).encode()
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    counter: Counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args()
    server = Server(("127.0.0.1", options.port), Handler)
    server.counter = Counter()
    print(f"listening on 127.0.0.1:{options.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
