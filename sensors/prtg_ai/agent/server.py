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

Added here, because waitress' idle timeout restarts with every byte (a client
sending one header line every 5 s stays forever) and ``--allow`` is otherwise
checked only once a request has been read (``ConnectionGuard``):

* a client outside ``--allow`` is closed at accept, before it holds a slot;
* one client address holds at most ``per_client_limit`` connections (100: more
  than a probe's parallel polls of one node), so one host cannot fill the
  1000 slots;
* a request must arrive complete within ``header_timeout`` (10 s) of the
  connection's start or of the previous answer, however slowly it trickles.
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
# Ours, not waitress' (see ConnectionGuard).
GUARD_DEFAULTS = {"per_client_limit": 100, "header_timeout": 10.0}
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


class ConnectionGuard:
    """Accept-time admission (``--allow``, per-client cap) and the request-read deadline.

    Args:
        admit: ``admit(host) -> bool`` for a client address (the agent's ``--allow``); None admits all.
        per_client_limit: open connections one client address may hold.
        header_timeout: seconds a request may take to arrive in full.
    """

    def __init__(self, admit: Callable[[str], bool] | None = None, per_client_limit: int = 100,
                 header_timeout: float = 10.0):
        self.admit = admit
        self.per_client_limit = int(per_client_limit)
        self.header_timeout = float(header_timeout)
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self.refused = 0  # connections closed at accept (tests and logs read it)
        self.expired = 0  # connections closed for a request that did not arrive in time

    def take(self, host: str) -> bool:
        """Count a new connection from ``host``; False (and nothing counted) when it must be closed."""
        try:
            admitted = self.admit is None or bool(self.admit(host))
        except Exception:  # a broken check must refuse the client, never stop the listener
            log.exception("Admission check failed for a client")
            admitted = False
        if not admitted:
            with self._lock:
                self.refused += 1
            return False
        with self._lock:
            if self._open.get(host, 0) >= self.per_client_limit:
                self.refused += 1
                return False
            self._open[host] = self._open.get(host, 0) + 1
        return True

    def release(self, host: str) -> None:
        with self._lock:
            left = self._open.get(host, 0) - 1
            if left > 0:
                self._open[host] = left
            else:
                self._open.pop(host, None)

    def open_from(self, host: str) -> int:
        with self._lock:
            return self._open.get(host, 0)

    def sweep(self, channels, now: float) -> None:
        """Close channels whose current request has not arrived in full within ``header_timeout``."""
        for ch in channels:
            started = getattr(ch, "read_started", None)
            if started is None or ch.requests or ch.will_close:
                continue  # being answered, or already closing
            if now - started > self.header_timeout:
                ch.will_close = True
                with self._lock:
                    self.expired += 1


class GuardedChannel(HTTPChannel):
    """An HTTP channel that counts against its client's cap and keeps a request-read clock."""

    guard: ConnectionGuard | None = None

    def __init__(self, server, sock, addr, adj, map=None):
        self.client_host = addr[0] if isinstance(addr, tuple) and addr else ""
        self.read_started = time.monotonic()
        self._counted = False
        super().__init__(server, sock, addr, adj, map)
        self._counted = self.guard is not None

    def service(self):
        try:
            super().service()
        finally:
            self.read_started = time.monotonic()  # the next request's clock starts after this answer

    def del_channel(self, map=None):
        if self._counted:
            self._counted = False
            self.guard.release(self.client_host)
        super().del_channel(map)


def guarded_factory(channel_class, guard: ConnectionGuard):
    """What a listener calls to build a connection: refused ones are closed before they cost a slot."""
    bound = type("Guarded" + channel_class.__name__, (channel_class,), {"guard": guard})

    def make(server, conn, addr, adj, map=None):
        host = addr[0] if isinstance(addr, tuple) and addr else ""
        if not guard.take(host):
            try:
                conn.close()
            except OSError:
                pass
            return None
        try:
            return bound(server, conn, addr, adj, map)
        except BaseException:
            guard.release(host)
            raise

    return make


class TLSChannel(GuardedChannel):
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
        ssl_context: serve HTTPS with this context (see ``tls_context``); None for HTTP.
        **limits: waitress adjustments overriding ``DEFAULTS``.
    """

    def __init__(self, app, host: str, port: int,
                 ssl_context: ssl.SSLContext | None = None, admit: Callable[[str], bool] | None = None, **limits):
        guard_settings = dict(GUARD_DEFAULTS)
        for key in GUARD_DEFAULTS:
            if limits.get(key) is not None:
                guard_settings[key] = limits.pop(key)
            limits.pop(key, None)
        self.guard = ConnectionGuard(admit, **guard_settings)
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
        self._server = create_server(
            app, map=self._map, host=host, port=port, ident="prtg-ai", expose_tracebacks=False,
            clear_untrusted_proxy_headers=True, log_socket_errors=False, asyncore_use_poll=_USE_POLL,
            ipv6=":" in host, ipv4=":" not in host, url_scheme="https" if ssl_context else "http", **settings)
        self.dispatcher = install_overflow(self._server, self.listeners)
        self.scheme = "https" if ssl_context else "http"
        channel = GuardedChannel
        if ssl_context is not None:
            channel = type("BoundTLSChannel", (TLSChannel,), {"ssl_context": ssl_context})
        factory = guarded_factory(channel, self.guard)
        for listener in self.listeners:
            listener.channel_class = factory  # handle_accept builds connections through it

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
            swept = time.monotonic()
            while not self._stop.is_set():
                wasyncore.loop(timeout=0.5, use_poll=_USE_POLL, map=self._map, count=1)
                now = time.monotonic()
                if now - swept >= 0.5:
                    self.guard.sweep(self.channels, now)
                    swept = now
        finally:
            self._drain()

    def stop(self) -> None:
        """Ask the loop to stop (thread- and signal-safe); returns at once."""
        self._stop.set()
        for lst in self.listeners[:1]:
            try:
                lst.pull_trigger()  # wake the select/poll at once
            except OSError:
                pass

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


def install_signal_handlers(server: AgentServer) -> None:
    """Stop gracefully on SIGTERM / SIGINT (and Ctrl+Break on Windows); main thread only."""
    def handler(signum, frame):  # noqa: ARG001 - signal API
        log.info("Signal %d received: stopping", signum)
        server.stop()

    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, handler)


def _settle_heap(sensor_ids) -> None:
    """Import the served sensors now and move everything alive into the GC's permanent generation.

    Why: the cyclic collector's full passes walk every object the process holds;
    modules, catalogues and code never die, so walking them is pure latency in the
    requests that happen to trigger a pass (the p99 rows of benchmarks/bench_agent.py).
    After ``gc.freeze()`` a pass walks only what requests created since.
    """
    import gc

    from prtg_ai.core import registry

    for sensor_id in sensor_ids:
        try:
            registry.get(sensor_id)
        except Exception:  # a sensor that cannot even import answers its own error per request
            log.warning("Sensor %s could not be imported at start", sensor_id)
    gc.collect()
    gc.freeze()


def serve(server: AgentServer, announce: Callable[[str], None] | None = None, sensor_ids=()) -> int:
    """Run ``server`` in this (main) thread until a signal stops it; return the exit code.

    ``sensor_ids`` (the served sensors) are imported before the first request.
    """
    raise_fd_limit(server.limits["connection_limit"] + 64)
    install_signal_handlers(server)
    for host, port in server.addresses:
        shown = f"[{host}]" if ":" in host else host
        message = f"prtg-ai agent listening on {server.scheme}://{shown}:{port}/"
        log.info(message)
        if announce is not None:
            announce(message)
    _settle_heap(sensor_ids)
    server.run()
    log.info("prtg-ai agent stopped")
    if announce is not None:
        announce("prtg-ai agent stopped")
    return 0


__all__ = ["AgentServer", "DEFAULTS", "DEFAULT_PORT", "parse_listen", "serve"]
