"""Runs the agent's WSGI app under waitress, with production limits and a graceful stop.

Why waitress (Pylons project, pure Python, maintained since 2011, tested on Linux,
macOS and Windows, no C extension to build on a probe or a GPU node):

* its I/O loop is asynchronous and a request reaches a worker thread only once it
  has been read in full, so slow or stalled clients (slowloris) hold a socket and a
  few kilobytes, never a worker: a legitimate PRTG poll still gets a thread. A
  thread-per-connection server such as cheroot hands a connection to a worker as
  soon as it is accepted, so a few hundred stalled clients starve every worker;
* it has the limits a network-facing agent needs: ``connection_limit``,
  ``channel_timeout`` (idle and half-sent requests are closed), bounded header and
  body sizes, bounded output buffers, HTTP/1.1 keep-alive;
* waitress has no TLS of its own, so ``TLSChannel`` adds it here with the standard
  ``ssl`` module in non-blocking mode: the handshake runs inside the same event
  loop (a client that never finishes it is closed by ``channel_timeout`` like any
  stalled client), and bytes OpenSSL has already decrypted are drained at once,
  since select/poll cannot see them. Reads and writes on one TLS connection never
  overlap, because waitress stops reading a channel while its request runs.

Limits chosen: 1000 connections (a node carries tens of PRTG sensors; the margin
absorbs scanners and stalled clients), 30 s idle timeout, 16 KiB of request
headers, 1 KiB of body (PRTG polls with GET), 8 worker threads (sensors are
I/O-bound: a sweep, a folder listing, an AWS call).
"""

from __future__ import annotations

import logging
import select
import signal
import ssl
import threading
import time
from collections.abc import Callable

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server

from prtg_ai.agent.dispatch import install_overflow

log = logging.getLogger("prtg_ai.agent.server")

DEFAULT_PORT = 9705
DEFAULTS = {
    "threads": 8,
    "connection_limit": 1000,
    "channel_timeout": 30,
    "cleanup_interval": 2,
    "max_request_header_size": 16 * 1024,
    "max_request_body_size": 1024,
    "backlog": 1024,
}
GRACE_S = 5.0
# select() on Windows handles at most 512 sockets; poll() has no such limit but
# exists only on POSIX.
_USE_POLL = hasattr(select, "poll")


def parse_listen(spec: str) -> tuple[str, int]:
    """Split ``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (all interfaces); raise ValueError."""
    spec = spec.strip()
    if spec.startswith("["):
        host, sep, port = spec[1:].partition("]:")
    else:
        host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen {spec!r}: expected HOST:PORT, e.g. 127.0.0.1:{DEFAULT_PORT} or 0.0.0.0:{DEFAULT_PORT}")
    return (host or "0.0.0.0"), int(port)


def raise_fd_limit(wanted: int) -> None:
    """Raise the soft open-files limit so ``connection_limit`` sockets fit (POSIX only)."""
    try:
        import resource
    except ImportError:  # Windows: no RLIMIT_NOFILE; select()'s own cap applies
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            log.warning("Could not raise the open-files limit to %d (now %d)", target, soft)


class TLSChannel(HTTPChannel):
    """An HTTP channel speaking TLS over a non-blocking socket (``ssl_context`` set by subclassing)."""

    ssl_context: ssl.SSLContext

    def __init__(self, server, sock, addr, adj, map=None):
        sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        self._handshaken = False
        self._want_write = False
        super().__init__(server, sock, addr, adj, map)

    def _handshake(self) -> None:
        try:
            self.socket.do_handshake()
        except ssl.SSLWantReadError:
            self._want_write = False
        except ssl.SSLWantWriteError:
            self._want_write = True
        except OSError:  # bad certificate, plain HTTP on the TLS port, reset: drop the client
            self.handle_close()
        else:
            self._handshaken = True
            self.last_activity = time.time()

    def readable(self):
        return True if not self._handshaken else super().readable()

    def writable(self):
        return self._want_write if not self._handshaken else super().writable()

    def handle_read(self):
        if not self._handshaken:
            self._handshake()
            return
        try:
            data = self.socket.recv(self.adj.recv_bytes)
            while data and self.socket.pending():
                data += self.socket.recv(self.socket.pending())
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return  # a TLS record is incomplete; the loop calls again when bytes arrive
        except OSError:
            self.handle_close()
            return
        if data:
            self.last_activity = time.time()
            self.received(data)
        else:
            self.handle_close()
            self.connected = False

    def handle_write(self):
        if not self._handshaken:
            self._handshake()
            return
        super().handle_write()

    def send(self, data, do_close=True):
        try:
            return self.socket.send(data)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0
        except OSError:
            if do_close:
                self.handle_close()
            return 0


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context: TLS 1.2 or newer (what PRTG's HTTP sensors speak), Python's default ciphers."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class AgentServer:
    """A waitress server with a stoppable loop and a drain on stop.

    Args:
        app: the WSGI application.
        host: address to bind (``0.0.0.0`` for all IPv4 interfaces).
        port: TCP port; 0 picks a free one (see ``addresses``).
        on_close: called once after the last request (closes shared resources).
        ssl_context: serve HTTPS with this context (see ``tls_context``); None for HTTP.
        **limits: waitress adjustments overriding ``DEFAULTS``.
    """

    def __init__(self, app, host: str, port: int, on_close: Callable[[], None] | None = None,
                 ssl_context: ssl.SSLContext | None = None, **limits):
        settings = dict(DEFAULTS)
        settings.update({k: v for k, v in limits.items() if v is not None})
        if not _USE_POLL:
            settings["connection_limit"] = min(settings["connection_limit"], 500)
        self.limits = settings
        # waitress warns "Task queue depth is N" whenever all workers are briefly busy:
        # normal when PRTG polls a dozen sensors at once, so only errors are kept.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        self._map: dict = {}
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._on_close = on_close
        self._server = create_server(
            app, map=self._map, host=host, port=port, ident="prtg-ai", expose_tracebacks=False,
            clear_untrusted_proxy_headers=True, log_socket_errors=False, asyncore_use_poll=_USE_POLL,
            ipv6=":" in host, ipv4=":" not in host, url_scheme="https" if ssl_context else "http", **settings)
        self.dispatcher = install_overflow(self._server, self.listeners)
        self.scheme = "https" if ssl_context else "http"
        if ssl_context is not None:
            channel = type("BoundTLSChannel", (TLSChannel,), {"ssl_context": ssl_context})
            for listener in self.listeners:
                listener.channel_class = channel  # handle_accept builds connections from it

    @property
    def listeners(self) -> list[BaseWSGIServer]:
        return [d for d in list(self._map.values()) if isinstance(d, BaseWSGIServer)]

    @property
    def channels(self) -> list[HTTPChannel]:
        return [d for d in list(self._map.values()) if isinstance(d, HTTPChannel)]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound (host, port) pairs; the real port when 0 was asked."""
        return [(lst.effective_host, int(lst.effective_port)) for lst in self.listeners]

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    def run(self) -> None:
        """Serve until ``stop()``; then drain in-flight requests and close everything."""
        try:
            while not self._stop.is_set():
                wasyncore.loop(timeout=0.5, use_poll=_USE_POLL, map=self._map, count=1)
        finally:
            self._drain()
            self._stopped.set()

    def stop(self) -> None:
        """Ask the loop to stop (thread- and signal-safe); returns at once."""
        self._stop.set()
        for lst in self.listeners[:1]:
            try:
                lst.pull_trigger()  # wake the select/poll at once
            except OSError:
                pass

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def _drain(self) -> None:
        for lst in self.listeners:
            # Close the listening socket first: no new connections during the drain.
            wasyncore.dispatcher.close(lst)
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline:
            if not any(ch.requests or ch.total_outbufs_len for ch in self.channels):
                break
            wasyncore.loop(timeout=0.05, use_poll=_USE_POLL, map=self._map, count=1)
        busy = sum(1 for ch in self.channels if ch.requests)
        if busy:
            log.warning("Stopping with %d request(s) still running after %.0f s", busy, GRACE_S)
        self.dispatcher.shutdown(cancel_pending=True, timeout=max(0.1, deadline - time.monotonic()))
        wasyncore.close_all(self._map)
        if self._on_close is not None:
            self._on_close()


def install_signal_handlers(server: AgentServer) -> None:
    """Stop gracefully on SIGTERM / SIGINT (and Ctrl+Break on Windows); main thread only."""
    def handler(signum, frame):  # noqa: ARG001 - signal API
        log.info("Signal %d received: stopping", signum)
        server.stop()

    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, handler)


def serve(server: AgentServer, announce: Callable[[str], None] | None = None) -> int:
    """Run ``server`` in this (main) thread until a signal stops it; return the exit code."""
    raise_fd_limit(server.limits["connection_limit"] + 64)
    install_signal_handlers(server)
    for host, port in server.addresses:
        shown = f"[{host}]" if ":" in host else host
        message = f"prtg-ai agent listening on {server.scheme}://{shown}:{port}/"
        log.info(message)
        if announce is not None:
            announce(message)
    server.run()
    log.info("prtg-ai agent stopped")
    if announce is not None:
        announce("prtg-ai agent stopped")
    return 0


__all__ = ["AgentServer", "DEFAULTS", "DEFAULT_PORT", "parse_listen", "serve"]
