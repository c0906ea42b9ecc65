"""One HTTP exchange with hard bounds, for URLs that come from sensor parameters.

Why not ``requests`` here: a URL parameter may come from an agent client, so the
exchange must (a) connect only to an address that was checked, (b) never follow
a redirect, (c) end at one total deadline however slowly the server trickles
headers or body, and (d) cap every byte read. ``requests`` resolves the host
itself (a second lookup could answer differently: DNS rebinding), follows
redirects by default and applies its timeout per socket read, so a server that
sends one byte a second never times out. Here:

* the host is resolved once (in a helper thread, bounded by the deadline), every
  address is checked against ``core.policy`` (link-local and metadata addresses
  always refused; an agent client also limited to ``--allow-url``), and the socket
  connects to a checked address, never to the name again;
* a watchdog timer shuts the socket down at the deadline, which ends any blocked
  read (handshake, status line, headers or body);
* the body is read with ``read1`` (what has arrived, at most ``CHUNK``), the byte
  cap and the deadline checked after every read;
* status 3xx is reported as such; ``Location`` is never followed.

Nothing a server sends is put in an exception message: callers get a ``kind``.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from urllib.parse import urlsplit

from prtg_ai.core.policy import always_refused, origin_of

CHUNK = 64 * 1024
CONNECT_LIMIT_S = 3.0
MAX_ADDRESSES = 4


class HttpFailure(Exception):
    """The exchange failed; ``kind`` is refused, timeout, connect, tls, protocol, too_large or destination."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


def _resolve(host: str, port: int, remaining: float) -> list[tuple]:
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        sockaddr = (str(literal), port, 0, 0) if literal.version == 6 else (str(literal), port)
        return [(family, sockaddr)]
    box: dict = {}

    def lookup() -> None:
        try:
            box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            box["error"] = exc

    worker = threading.Thread(target=lookup, name="prtg-ai-resolve", daemon=True)
    worker.start()
    worker.join(max(0.0, remaining))
    if worker.is_alive():
        raise HttpFailure("timeout")
    if "error" in box:
        raise HttpFailure("connect")
    return [(family, sockaddr) for family, _, _, _, sockaddr in box["infos"]]


def checked_addresses(url: str, policy, remaining: float) -> list[tuple]:
    """Resolve ``url``'s host and keep the addresses it may reach; raise HttpFailure("destination")."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise HttpFailure("destination") from None
    host = parts.hostname or ""
    allowed_origin = policy is not None and policy.origin_allowed(origin_of(url) or "")
    good = []
    for family, sockaddr in _resolve(host, port, remaining):
        try:
            addr = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        except ValueError:
            continue
        if always_refused(addr):
            raise HttpFailure("destination")
        if policy is not None and not allowed_origin and not policy.address_allowed(addr):
            # Every address must be allowed: a name that also resolves elsewhere is refused whole.
            raise HttpFailure("destination")
        good.append((family, sockaddr))
    if not good:
        raise HttpFailure("connect")
    return good[:MAX_ADDRESSES]


class Exchange:
    """``with Exchange(url, deadline=...) as ex:`` sends one request; read with ``body`` or ``lines``.

    Args:
        url: http(s) URL (already validated by the caller: scheme, host, no credentials).
        method: GET or POST.
        body: bytes to send (POST).
        headers: request headers (the caller decides whether a key goes along).
        deadline: monotonic time at which everything ends, whatever the server does.
        policy: the agent client's ``ClientPolicy``, or None in script mode.
        monotonic: clock of ``deadline``.
        ca_file: a CA bundle to verify an https server with (a cluster's own CA), instead of the system's.
    """

    def __init__(self, url: str, method: str = "GET", body: bytes | None = None, headers=None,
                 deadline: float = 0.0, policy=None, monotonic=time.monotonic, ca_file: str | None = None):
        self.url, self.method, self.payload, self.ca_file = url, method, body, ca_file
        self.headers = dict(headers or {})
        self.deadline, self.policy, self.monotonic = deadline, policy, monotonic
        self.status = 0
        self.response = None
        self._sock = None
        self._conn = None
        self._timer: threading.Timer | None = None
        self._expired = threading.Event()

    def remaining(self) -> float:
        return self.deadline - self.monotonic()

    def __enter__(self) -> "Exchange":
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _fail(self, kind: str) -> HttpFailure:
        return HttpFailure("timeout" if self._expired.is_set() or self.remaining() <= 0 else kind)

    def _open(self) -> None:
        import http.client

        parts = urlsplit(self.url)
        addresses = checked_addresses(self.url, self.policy, self.remaining())
        if self.remaining() <= 0:
            raise HttpFailure("timeout")
        refused = False
        for family, sockaddr in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(max(0.05, min(CONNECT_LIMIT_S, self.remaining())))
            try:
                sock.connect(sockaddr)
            except ConnectionRefusedError:
                refused = True
                sock.close()
                continue
            except OSError:
                sock.close()
                continue
            self._sock = sock
            break
        if self._sock is None:
            raise self._fail("refused" if refused else "connect")
        self._arm()
        self._sock.settimeout(max(0.05, self.remaining()))
        if parts.scheme == "https":
            import ssl

            try:
                context = ssl.create_default_context(cafile=self.ca_file)
                self._sock = context.wrap_socket(self._sock, server_hostname=parts.hostname)
            except (ssl.SSLError, ssl.CertificateError):
                raise self._fail("tls") from None
            except OSError:
                raise self._fail("connect") from None
        conn = http.client.HTTPConnection(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        conn.sock = self._sock
        self._conn = conn
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request(self.method, path, body=self.payload, headers=self.headers)
            self.response = conn.getresponse()
        except (OSError, http.client.HTTPException, ValueError):
            raise self._fail("protocol") from None
        self.status = self.response.status

    def _arm(self) -> None:
        # Ends any blocked read at the deadline: shutdown() wakes a recv in another thread.
        def expire() -> None:
            self._expired.set()
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        self._timer = threading.Timer(max(0.0, self.remaining()), expire)
        self._timer.daemon = True
        self._timer.start()

    def body(self, limit: int) -> bytes:
        """The whole body, at most ``limit`` bytes; raises HttpFailure (too_large, timeout, protocol)."""
        import http.client

        data = bytearray()
        while True:
            try:
                chunk = self.response.read1(CHUNK)
            except (OSError, http.client.HTTPException, ValueError):
                raise self._fail("protocol") from None
            if self.remaining() <= 0 or self._expired.is_set():
                raise HttpFailure("timeout")
            if not chunk:
                if self.response.length:  # Content-Length promised more: the server hung up early
                    raise HttpFailure("protocol")
                return bytes(data)
            data += chunk
            if len(data) > limit:
                raise HttpFailure("too_large")

    def lines(self, limit: int):
        """Yield body lines (without the newline) until the end; total bytes capped at ``limit``."""
        import http.client

        received = 0
        while True:
            try:
                line = self.response.readline(min(CHUNK, limit - received + 1))
            except (OSError, http.client.HTTPException, ValueError):
                raise self._fail("protocol") from None
            if self.remaining() <= 0 or self._expired.is_set():
                raise HttpFailure("timeout")
            if not line:
                return
            received += len(line)
            if received > limit:
                raise HttpFailure("too_large")
            yield line.rstrip(b"\r\n")

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for thing in (self.response, self._conn, self._sock):
            if thing is not None:
                try:
                    thing.close()
                except OSError:
                    pass
