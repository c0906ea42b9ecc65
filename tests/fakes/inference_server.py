"""A small model server on 127.0.0.1 for the ``inference`` tests: real HTTP, real streaming.

Serves a metrics page the test swaps between scans (``/metrics``), ``/v1/models``
and a streamed OpenAI-compatible ``/v1/chat/completions`` (server-sent events) with
configurable delays and faults. It records every request's path and headers, so
tests can check what the sensor sent (the API key travels in a header only).
"""

from __future__ import annotations

import json
import socket
import time

from fakes.loopback import LoopbackServer, QuietHandler


class FakeModelServer:
    """``with FakeModelServer(page=...) as srv: srv.url`` -> ``http://127.0.0.1:PORT``.

    Attributes a test may change at any time:
        page: text of ``/metrics`` (``None``: 404).
        models: ids listed by ``/v1/models``.
        tokens: content pieces streamed by the chat endpoint.
        first_delay / token_delay: seconds before the first chunk / between chunks.
        fault: ``None``, ``"http500"``, ``"no_done"``, ``"malformed"``, ``"no_tokens"``.
        require_key: when set, ``/v1/*`` answers 401 without ``Authorization: Bearer <key>``.
    """

    def __init__(self, page: str | None = None, models=("test-model",), tokens=("O", "K"),
                 first_delay: float = 0.0, token_delay: float = 0.0, fault: str | None = None,
                 require_key: str | None = None):
        self.page, self.models, self.tokens = page, list(models), list(tokens)
        self.first_delay, self.token_delay, self.fault = first_delay, token_delay, fault
        self.require_key = require_key
        self.requests: list[tuple[str, str, dict]] = []
        self.bodies: list[dict] = []
        self._loop = LoopbackServer(self._handler(), poll_interval=0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._loop.port}"

    def __enter__(self) -> "FakeModelServer":
        self._loop.start()
        return self

    def __exit__(self, *exc) -> None:
        self._loop.stop()

    def _handler(self):
        fake = self

        class Handler(QuietHandler):
            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorised(self) -> bool:
                if fake.require_key and self.headers.get("Authorization") != f"Bearer {fake.require_key}":
                    self._send(401, b'{"error": {"message": "invalid api key"}}')
                    return False
                return True

            def do_GET(self):
                fake.requests.append(("GET", self.path, dict(self.headers)))
                if self.path == "/metrics":
                    if fake.page is None:
                        self._send(404, b"not found", "text/plain")
                    else:
                        self._send(200, fake.page.encode(), "text/plain; version=0.0.4; charset=utf-8")
                elif self.path == "/v1/models":
                    if self._authorised():
                        data = {"object": "list", "data": [{"id": m, "object": "model"} for m in fake.models]}
                        self._send(200, json.dumps(data).encode())
                else:
                    self._send(404, b"{}")

            def do_POST(self):
                try:
                    self._post()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sensor gave up (timeout tests): nothing left to answer

            def _post(self):
                fake.requests.append(("POST", self.path, dict(self.headers)))
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.bodies.append(body)
                if self.path != "/v1/chat/completions":
                    self._send(404, b"{}")
                    return
                if not self._authorised():
                    return
                if fake.fault == "http500":
                    self._send(500, b'{"error": {"message": "CUDA out of memory"}}')
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                # chunked, as uvicorn (vLLM) and axum (TGI) stream: each event arrives on its own
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                time.sleep(fake.first_delay)
                pieces = [] if fake.fault == "no_tokens" else fake.tokens
                for i, piece in enumerate(pieces):
                    if i:
                        time.sleep(fake.token_delay)
                    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": body.get("model"),
                             "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    self._event(json.dumps(chunk))
                if fake.fault == "malformed":
                    self._event("{not json")
                if fake.fault != "no_done":
                    self._event("[DONE]")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                self.close_connection = True

            def _event(self, data: str) -> None:
                payload = f"data: {data}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
                self.wfile.flush()

        return Handler


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
