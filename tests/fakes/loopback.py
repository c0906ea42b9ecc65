"""What the HTTP fakes share: a server on 127.0.0.1 (port 0) in a daemon thread, quiet handlers.

``LoopbackServer`` serves a handler class until ``stop()``; ``ApiFake`` adds what the
cloud fakes (Azure, Google Cloud) have in common: GET and POST handed to the fake's
``handle(handler, method)``, JSON-ish answers, and per-operation counts, a request log
and queued faults.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, and no access log on stderr (keeps pytest's output clean)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass


class LoopbackServer:
    """``handler`` served on 127.0.0.1 (a free port) from a daemon thread, one daemon thread per request."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], poll_interval: float = 0.5):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.poll_interval = poll_interval
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": poll_interval},
                                       daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> "LoopbackServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class ApiFake:
    """Base of the cloud fakes, which define ``handle(handler, method)``; ``_serve()`` once set up."""

    def _new_log(self) -> None:
        """Clean per-operation counts, request log and fault queues."""
        self.counts: Counter = Counter()
        self.faults: dict[str, list] = defaultdict(list)
        self.requests: list[dict] = []

    def _serve(self) -> None:
        fake = self

        class Handler(QuietHandler):
            def do_GET(self):
                fake.handle(self, "GET")

            def do_POST(self):
                fake.handle(self, "POST")

        self.loop = LoopbackServer(Handler).start()
        self.hostport = f"127.0.0.1:{self.loop.port}"
        self.url = f"http://{self.hostport}"

    def close(self) -> None:
        self.loop.stop()

    @staticmethod
    def read_request(handler) -> tuple[str, dict[str, str], bytes]:
        """(path, first value of each query parameter, raw body) of the request ``handler`` holds."""
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}, raw

    @staticmethod
    def send_bytes(handler, status: int, data: bytes, content_type: str, headers: dict) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)

    def log_request(self, handler, op: str, method: str, path: str, query: dict, body) -> tuple | None:
        """Count and log one request; the next fault queued for its operation, or None."""
        with self.lock:
            self.counts[op] += 1
            self.requests.append({"op": op, "method": method, "path": path, "query": query, "body": body,
                                  "auth": handler.headers.get("Authorization")})
            return self.faults[op].pop(0) if self.faults.get(op) else None
