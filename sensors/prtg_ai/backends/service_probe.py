"""One harmless, read-only request to a listener on this node: an HTTP GET or a Redis PING.

Sends, over a plain TCP connection from the node to its own listener:

* ``GET <path> HTTP/1.1`` with ``Host``, ``User-Agent``, ``Accept`` and
  ``Connection: close``, and nothing else: no cookies, no ``Authorization``, no body;
* or the inline Redis command ``PING``.

Reads at most ``limit`` bytes of the answer, within ``timeout`` seconds in all, and
follows no redirect (a 3xx is an answer like any other). ``Budget`` caps the bytes and
requests of a whole scan. Proxy settings are ignored: the node talks to itself.

Only plain TCP is spoken: a TLS-only listener answers garbage or closes, which reads
as "not this service" (its certificate is the access control the probe cannot judge).

The answer is for classification only; the caller never echoes its content.
"""

from __future__ import annotations

import time

from prtg_ai.maths.records import record

MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "prtg-ai node_security probe"


@record
class Answer:
    """What a listener sent back. ``kind``: http, resp (Redis protocol), other, none."""

    kind: str
    status: int | None = None
    headers: dict | None = None
    body: bytes = b""
    error: str | None = None


class Budget:
    """Bytes and requests a scan may still spend on probes, and its deadline."""

    def __init__(self, max_bytes: int, max_requests: int, deadline: float, monotonic=time.monotonic):
        self.bytes_left, self.requests_left = max_bytes, max_requests
        self.deadline, self.monotonic = deadline, monotonic
        self.requests = 0

    def can_send(self) -> bool:
        return self.requests_left > 0 and self.bytes_left > 0 and self.monotonic() < self.deadline

    def spend_request(self) -> None:
        self.requests_left -= 1
        self.requests += 1


def _exchange(host: str, port: int, payload: bytes, timeout: float, limit: int, budget: Budget,
              complete) -> tuple[bytes, str | None]:
    """Send ``payload``, read until the peer closes, ``complete(data)`` says done, or a cap hits."""
    import socket  # only a scan that found an exposed listener pays for it

    budget.spend_request()
    end = min(budget.monotonic() + timeout, budget.deadline)
    data = bytearray()
    cap = min(limit, budget.bytes_left)
    try:
        with socket.create_connection((host, port), timeout=max(0.05, end - budget.monotonic())) as sock:
            sock.sendall(payload)
            while len(data) < cap:
                left = end - budget.monotonic()
                if left <= 0:
                    return bytes(data), "timeout"
                sock.settimeout(left)
                chunk = sock.recv(min(16384, cap - len(data)))
                if not chunk:
                    break
                data += chunk
                if complete(data):
                    break
    except socket.timeout:
        return bytes(data), "timeout"
    except OSError as exc:
        return bytes(data), exc.strerror or type(exc).__name__
    finally:
        budget.bytes_left -= len(data)
    return bytes(data), None


def _host_header(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def http_get(host: str, port: int, path: str, timeout: float, budget: Budget,
             limit: int = MAX_ANSWER_BYTES) -> Answer:
    """One ``GET path`` to ``host:port``; the answer parsed, never followed."""
    request = (f"GET {path} HTTP/1.1\r\nHost: {_host_header(host, port)}\r\nUser-Agent: {USER_AGENT}\r\n"
               "Accept: application/json\r\nConnection: close\r\n\r\n").encode("ascii")
    data, error = _exchange(host, port, request, timeout, limit, budget, _http_complete)
    return parse_http(data, error)


def redis_ping(host: str, port: int, timeout: float, budget: Budget) -> Answer:
    """The inline command ``PING``: ``+PONG`` without a password, ``-NOAUTH ...`` with one."""
    data, error = _exchange(host, port, b"PING\r\n", timeout, 512, budget, lambda d: b"\r\n" in d)
    if not data:
        return Answer("none", error=error or "closed without answering")
    if data[:1] in (b"+", b"-"):
        return Answer("resp", body=data.split(b"\r\n", 1)[0][:200])
    if data.startswith(b"HTTP/"):
        return Answer("http")
    return Answer("other", error=error)


def _http_complete(data: bytearray) -> bool:
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    head = bytes(data[:head_end]).lower()
    body_len = len(data) - head_end - 4
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip() == b"content-length":
            try:
                return body_len >= int(value.strip())
            except ValueError:
                return False
        if name.strip() == b"transfer-encoding" and b"chunked" in value:
            return data.endswith(b"0\r\n\r\n")
    return False


def parse_http(data: bytes, error: str | None = None) -> Answer:
    """Split an HTTP/1.x answer into status, lower-cased headers and (de-chunked) body."""
    if not data:
        return Answer("none", error=error or "closed without answering")
    if not data.startswith(b"HTTP/1."):
        kind = "resp" if data[:1] in (b"+", b"-") else "other"
        return Answer(kind, error=error)
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return Answer("other", error="malformed status line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")[:512]
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body)
    elif "content-length" in headers:
        try:
            body = body[: max(0, int(headers["content-length"]))]
        except ValueError:
            pass
    return Answer("http", status=status, headers=headers, body=body, error=error)


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while pos < len(body):
        line_end = body.find(b"\r\n", pos)
        if line_end < 0:
            break
        try:
            size = int(body[pos:line_end].split(b";")[0].strip() or b"0", 16)
        except ValueError:
            break
        if size == 0:
            break
        out += body[line_end + 2: line_end + 2 + size]
        pos = line_end + 2 + size + 2
    return bytes(out)
