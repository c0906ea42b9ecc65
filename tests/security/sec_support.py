"""Shared parts of the attack suite: the real agent in a thread, hostile loopback servers, a tally.

Imported by the tests (``conftest`` puts this folder on sys.path).

Every test in this folder reproduces one attack of issue 14 against real parts
(the waitress agent on 127.0.0.1, loopback HTTP servers that record what they
receive, FIFOs, device files, symlink races, slow sockets, an unprivileged user)
and asserts two things: the attack fails, and the legitimate poll still works.
``TALLY`` counts attempts and leaks; the suite's summary line prints them (the
docs/security.md quotes that line).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prtg_ai.agent.app import AgentApp
from prtg_ai.agent.auth import Authenticator, parse_networks
from prtg_ai.agent.server import AgentServer
from prtg_ai.prtg.validate import validate

TOKEN = "security-token-0123456789"
TALLY = {"attacks": 0, "leaks": 0}


def attack(n: int = 1) -> None:
    TALLY["attacks"] += n


def leak_check(condition: bool, what: str) -> None:
    """Assert ``condition`` (no leak); a failure is also counted as a leak in the summary."""
    if not condition:
        TALLY["leaks"] += 1
    assert condition, what


class Agent:
    """The real agent (AgentApp under AgentServer) on 127.0.0.1:0, served from a thread."""

    def __init__(self, tmp_path: Path, env: dict | None = None, allow=(), server_limits: dict | None = None,
                 **app_options):
        self.auth = Authenticator(tokens=[TOKEN], allow=parse_networks(allow))
        self.app = AgentApp(self.auth, tmp_path / "agent-state", env=env or {}, cache_ttl=0, **app_options)
        admit = (lambda host: self.auth.check_address(host).allowed) if allow else None
        self.server = AgentServer(self.app, "127.0.0.1", 0, admit=admit, **(server_limits or {}))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, params: dict | list | None = None, timeout: float = 30, token: bool = True):
        import requests

        headers = {"Authorization": f"Bearer {TOKEN}"} if token else {}
        return requests.get(self.url(path), params=params, headers=headers, timeout=timeout)

    def sensor(self, sensor_id: str, params: dict | list | None = None, timeout: float = 30) -> tuple[dict, str]:
        """GET a sensor; assert a valid PRTG body; return the document and its raw text."""
        answer = self.get(f"/sensors/{sensor_id}", params, timeout)
        assert answer.status_code == 200, answer.text
        assert validate(answer.text) == [], answer.text
        return json.loads(answer.text), answer.text

    def close(self) -> None:
        self.server.stop()
        self.thread.join(10)


def ok(doc: dict) -> bool:
    return "error" not in doc["prtg"]


def text_of(doc: dict) -> str:
    return doc["prtg"].get("text", "")


class Recorder:
    """A loopback HTTP server that records every request's path and headers and answers by ``route``.

    ``route(path) -> (status, headers, body)``, or the string ``"trickle"`` (send a
    status line, then one byte every ``trickle_s`` seconds forever) or ``"silent"``
    (read the request, never answer).
    """

    def __init__(self, route=None, trickle_s: float = 0.2):
        self.route = route or (lambda path: (404, {}, b"not here"))
        self.trickle_s = trickle_s
        self.seen: list[tuple[str, str, dict]] = []
        self.stop = threading.Event()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(min(length, 1 << 20))
                recorder.seen.append((self.command, self.path, dict(self.headers)))
                answer = recorder.route(self.path)
                try:
                    if answer == "silent":
                        recorder.stop.wait(30)
                        return
                    if answer == "trickle":
                        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n")
                        self.wfile.flush()
                        while not recorder.stop.is_set():
                            self.wfile.write(b"X")  # a header line that never ends, one byte at a time
                            self.wfile.flush()
                            recorder.stop.wait(recorder.trickle_s)
                        return
                    status, headers, body = answer
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def headers_seen(self) -> str:
        return json.dumps([h for _, _, h in self.seen])

    def __enter__(self) -> "Recorder":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


# What an instance-metadata service hands out (the shape of AWS IMDS answers; values invented).
METADATA_ROLE = "prtg-ai-test-node-role"
METADATA_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLESECRET"
METADATA_PAGES = {
    "/latest/meta-data/iam/security-credentials/": METADATA_ROLE.encode(),
    f"/latest/meta-data/iam/security-credentials/{METADATA_ROLE}": json.dumps({
        "Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIAEXAMPLEKEYID0000",
        "SecretAccessKey": METADATA_SECRET, "Token": "IQoJb3JpZ2luX2VjEXAMPLETOKEN"}).encode(),
    "/latest/user-data": b"#!/bin/bash\nexport DB_PASSWORD=userdata-secret-4242\n",
}


def metadata_route(path: str):
    body = METADATA_PAGES.get(path)
    return (200, {"Content-Type": "text/plain"}, body) if body is not None else (404, {}, b"Not Found")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
