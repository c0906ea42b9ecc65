"""Real listeners that speak like the AI stack's services, for the node_security tests.

Each listener is a real TCP server answering the one request node_security sends,
with the answer the real service gives (``tests/testcases/node_security/services/
answers.json``, shapes and sources in the ``SOURCE.md`` beside it):

* ``(service, "open")``: the unauthenticated answer; ``(service, "auth")``: what the same
  service says when it requires credentials;
* ``("redis", "open"|"auth")``: a Redis-protocol server (``+PONG`` or ``-NOAUTH``), which,
  like Redis, answers an HTTP request line with an error and hangs up on ``Host:``;
* decoys: ``("decoy", "json")`` answers every path with a small JSON status document,
  ``("decoy", "html")`` with a web page, ``("decoy", "ssh")`` sends an SSH banner.

Run as a script (``python ai_services.py BIND SPEC_JSON``) it prints the bound ports as
one JSON line and serves until its stdin closes: the namespace tests start it inside
their network namespace.
"""

from __future__ import annotations

import json
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ANSWERS = json.loads((Path(__file__).resolve().parents[1] / "testcases" / "node_security" / "services"
                      / "answers.json").read_text(encoding="utf-8"))
SSH_BANNER = b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5\r\n"


class _Http(BaseHTTPRequestHandler):
    service = mode = ""
    requests: list = []

    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, status: int, ctype: str, body, headers: dict | None = None) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - the http.server API
        self.requests.append((self.path, dict(self.headers)))
        if self.service == "decoy":
            if self.mode == "json":
                return self._send(200, "application/json", {"status": "ok", "version": "1.0"})
            return self._send(200, "text/html", "<html><body><h1>It works!</h1></body></html>")
        spec = ANSWERS[self.service]
        if self.path.split("?", 1)[0] != spec["path"]:
            return self._send(404, "application/json", {"detail": "Not Found"})
        answer = spec[self.mode]
        self._send(answer["status"], answer["type"], answer["body"], answer.get("headers"))


class _RedisLike(socketserver.StreamRequestHandler):
    password = False

    def handle(self):
        for _ in range(32):
            line = self.rfile.readline(4096)
            if not line:
                return
            text = line.strip().decode("latin-1")
            if text.upper() == "PING":
                self.wfile.write(b"-NOAUTH Authentication required.\r\n" if self.password else b"+PONG\r\n")
            elif text.lower().startswith("host:") or text.upper().startswith("POST"):
                return  # Redis' guard against cross-protocol requests: hang up
            elif text.upper().startswith("GET "):
                self.wfile.write(b"-ERR wrong number of arguments for 'get' command\r\n")
            elif text:
                self.wfile.write(b"-ERR unknown command\r\n")


class _Ssh(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(SSH_BANNER)
        try:
            self.request.settimeout(0.5)
            self.request.recv(256)
        except OSError:
            pass


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, handler)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, handler)


class Services:
    """Start listeners: ``[(service, mode, bind address, port or 0), ...]``; stop them on exit."""

    def __init__(self, specs):
        self.specs = [tuple(s) for s in specs]
        self.servers = []
        self.bound: list[dict] = []
        self.requests: list = []

    def __enter__(self):
        for service, mode, address, port in self.specs:
            if service == "redis":
                handler = type("H", (_RedisLike,), {"password": mode == "auth"})
                server = _TcpServer((address, port), handler)
            elif service == "decoy" and mode == "ssh":
                server = _TcpServer((address, port), _Ssh)
            else:
                handler = type("H", (_Http,), {"service": service, "mode": mode, "requests": self.requests})
                server = _HttpServer((address, port), handler)
            self.servers.append(server)
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            self.bound.append({"service": service, "mode": mode, "address": address,
                               "port": server.server_address[1]})
        return self

    def __exit__(self, *exc):
        for server in self.servers:
            server.shutdown()
            server.server_close()


if __name__ == "__main__":
    with Services(json.loads(sys.argv[1])) as running:
        print(json.dumps(running.bound), flush=True)
        sys.stdin.read()
