"""Bounded sensor work in the agent: a deadline per scan, one in-flight call per hung scan.

Why: a wedged driver call (a GPU fallen off the bus blocks NVML) never returns, and
Python cannot stop a thread stuck in C. Run in waitress' worker, such a scan would
pin that worker for good, and a few of them would leave no thread for other
sensors or for ``/health``. So:

* ``ScanRunner`` runs every scan in a thread of its own and waits at most the
  deadline. Past it, the request is answered with a PRTG error naming what the scan
  was waiting on (``core.deadline.current``), and the thread is counted as *stuck*
  until it returns. Requests for the same scan while it is in flight share that one
  call (and, once it is stuck, are answered at once); so a hung NVML costs one
  thread per distinct scan, not one per request. Stuck threads are bounded
  (``max_stuck``); past the bound new scans are refused with a clear error rather
  than piling up threads.
* ``OverflowDispatcher`` wraps waitress' task dispatcher: ``/health`` is served by a
  short-lived thread of its own, never queued behind the worker pool, and while
  every pool worker is busy (waiting out a deadline) a request gets an extra
  thread, up to a bound, so other sensors keep answering.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from prtg_ai.core import deadline

log = logging.getLogger("prtg_ai.agent.dispatch")
MAX_STUCK = 64  # stuck scan threads at most; each is one distinct hung scan
MAX_EXTRA = 32  # extra request threads while the worker pool is busy
LIGHT_PATHS = ("/health",)


class _Flight:
    __slots__ = ("sensor", "done", "value", "started", "ident", "stuck")

    def __init__(self, sensor: str, started: float):
        self.sensor = sensor
        self.done = threading.Event()
        self.value: bytes | None = None
        self.started = started
        self.ident = 0
        self.stuck = False


class ScanRunner:
    """Runs scans in their own threads under a deadline (see the module docstring).

    Args:
        seconds: the per-scan deadline.
        error: turns an error text into the response body (the app's renderer).
        max_stuck: stuck scan threads at most.
    """

    def __init__(self, seconds: float, error: Callable[[str], bytes], max_stuck: int = MAX_STUCK,
                 clock: Callable[[], float] = time.monotonic):
        self.seconds = float(seconds)
        self.error = error
        self.max_stuck = max_stuck
        self.clock = clock
        self._lock = threading.Lock()
        self._flights: dict[object, _Flight] = {}
        self.overruns = 0  # scans that outlived the deadline, ever (tests read it)

    def run(self, key, sensor: str, fn: Callable[[], bytes]) -> bytes:
        """``fn()`` for ``key``, or a PRTG error body if it does not finish within the deadline."""
        with self._lock:
            flight = self._flights.get(key)
            owner = flight is None
            if owner:
                stuck = self.stuck_count()
                if stuck >= self.max_stuck:
                    return self.error(
                        f"The agent has {stuck} scans stuck past their deadline ({self._stuck_summary()}), "
                        "its limit; it starts no new scan until one returns. Check the node (dmesg, nvidia-smi) "
                        "or restart the agent.")
                flight = self._flights[key] = _Flight(sensor, self.clock())
        if owner:
            thread = threading.Thread(target=self._work, args=(key, flight, fn), daemon=True,
                                      name=f"prtg-ai-scan-{sensor}")
            thread.start()
            flight.ident = thread.ident or 0
        left = flight.started + self.seconds - self.clock()
        if left > 0 and flight.done.wait(left) and flight.value is not None:
            return flight.value
        if flight.done.is_set() and flight.value is not None:
            return flight.value
        return self._overrun(flight)

    def _work(self, key, flight: _Flight, fn: Callable[[], bytes]) -> None:
        try:
            flight.value = fn()
        except BaseException as exc:  # the app's run is guarded; this is the last word
            log.exception("Scan of %s failed outside the guard", flight.sensor)
            flight.value = self.error(f"Internal error in the prtg-ai agent ({type(exc).__name__}).")
        finally:
            deadline.forget()
            with self._lock:
                if self._flights.get(key) is flight:
                    del self._flights[key]
            if flight.stuck:
                log.warning("Scan of %s returned after %.0f s (past its deadline)", flight.sensor,
                            self.clock() - flight.started)
            flight.done.set()

    def _overrun(self, flight: _Flight) -> bytes:
        what = deadline.current(flight.ident)
        with self._lock:
            already = flight.stuck
            if not flight.stuck and not flight.done.is_set():
                flight.stuck = True
                self.overruns += 1
                log.error("Scan of %s is stuck past its %.0f s deadline%s", flight.sensor, self.seconds,
                          f" in {what}" if what else "")
        text = deadline.overrun_text(flight.sensor, self.seconds, what)
        if already:
            age = self.clock() - flight.started
            text += f" The scan is still stuck after {age:.0f} s; requests share it until it returns."
        return self.error(text)

    def stuck_count(self) -> int:
        return sum(1 for f in list(self._flights.values()) if f.stuck and not f.done.is_set())

    def stuck(self) -> list[dict]:
        """The stuck scans, for ``/health``: sensor, what it waits on, for how long."""
        now = self.clock()
        return [{"sensor": f.sensor, "waiting_on": deadline.current(f.ident)[:120],
                 "stuck_s": round(now - f.started, 1)}
                for f in list(self._flights.values()) if f.stuck and not f.done.is_set()]

    def _stuck_summary(self) -> str:
        names = sorted({s["sensor"] for s in self.stuck()})
        return ", ".join(names)[:200]


class OverflowDispatcher:
    """Wraps waitress' ``ThreadedTaskDispatcher``: ``/health`` and overflow get threads of their own.

    Everything else (shutdown, thread count) is the wrapped dispatcher's.
    """

    def __init__(self, inner, max_extra: int = MAX_EXTRA, light_paths: tuple[str, ...] = LIGHT_PATHS):
        self._inner = inner
        self.max_extra = max_extra
        self.light_paths = light_paths
        self._lock = threading.Lock()
        self.extra = 0  # extra threads running now

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def add_task(self, channel) -> None:
        requests = getattr(channel, "requests", None) or []
        path = getattr(requests[0], "path", "") if requests else ""
        if (path in self.light_paths or self._pool_busy()) and self._spawn(channel):
            return
        self._inner.add_task(channel)

    def _pool_busy(self) -> bool:
        inner = self._inner
        # Read without the pool's lock: a momentary misjudgement only costs one extra thread or one wait.
        idle = len(inner.threads) - inner.stop_count - inner.active_count - len(inner.queue)
        return idle <= 0

    def _spawn(self, channel) -> bool:
        with self._lock:
            if self.extra >= self.max_extra:
                return False
            self.extra += 1
        threading.Thread(target=self._serve, args=(channel,), daemon=True, name="prtg-ai-extra").start()
        return True

    def _serve(self, channel) -> None:
        try:
            channel.service()
        except BaseException:
            log.exception("Exception while serving a request on an extra thread")
        finally:
            with self._lock:
                self.extra -= 1


def install_overflow(server, listeners) -> OverflowDispatcher:
    """Put an ``OverflowDispatcher`` in front of ``server``'s task dispatcher (every listener's)."""
    wrapped = OverflowDispatcher(server.task_dispatcher)
    server.task_dispatcher = wrapped
    for listener in listeners:
        listener.task_dispatcher = wrapped
    return wrapped
