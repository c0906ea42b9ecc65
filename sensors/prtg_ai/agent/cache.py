"""Short-lived sharing between requests: a single-flight TTL cache of sensor results.

Why: PRTG polls each sensor of a device on its own schedule, and a GPU node with
eight GPUs may carry a dozen HTTP sensors that fire within the same second. The
``TTLCache`` makes identical requests in that window share one sensor run
(single-flight: the second caller waits for the first instead of starting a
second sweep), and its size is bounded, so varied query strings cannot grow memory.

Rates: sensors keep their previous sample through ``StateStore`` in the agent's own
state folder (``<state>/agent`` unless ``--state-dir``), so a rate channel served by
the agent is computed against the agent's previous poll, never against a script
sensor's sample of the same instance.

Each request otherwise runs its sensor as a script scan would: a GPU sensor opens and
closes NVML itself, so nothing long-lived is held between requests.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
# A waiter never blocks longer than this on someone else's computation: a hung
# sensor must not pin every worker thread forever.
WAIT_LIMIT_S = 120.0


class _Entry:
    __slots__ = ("done", "value", "expires", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.expires = 0.0
        self.ok = False


class TTLCache(Generic[T]):
    """A bounded, thread-safe, single-flight cache of values that expire after ``ttl`` seconds.

    Args:
        ttl: seconds a computed value is served; 0 disables caching but keeps
            single-flight for concurrent identical calls.
        max_entries: bound on stored keys; the oldest are evicted first.
        clock: monotonic clock (injectable for tests).
    """

    def __init__(self, ttl: float, max_entries: int = 256, clock: Callable[[], float] = time.monotonic):
        self.ttl = float(ttl)
        self.max_entries = max(1, int(max_entries))
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self.computed = 0  # how many times compute() ran (tests read it)
        self.shared = 0  # calls answered by another call's computation (tests read it)

    def __len__(self) -> int:
        return len(self._entries)

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        """Return the cached value of ``key``, or compute it once for all concurrent callers."""
        while True:
            with self._lock:
                entry = self._entries.get(key)
                now = self.clock()
                if entry is not None and entry.done.is_set() and (not entry.ok or entry.expires <= now):
                    del self._entries[key]
                    entry = None
                if entry is None:
                    entry = _Entry()
                    self._entries[key] = entry
                    self._evict(now)
                    owner = True
                else:
                    owner = False
            if owner:
                return self._fill(key, entry, compute)
            if entry.done.wait(WAIT_LIMIT_S) and entry.ok:
                with self._lock:
                    self.shared += 1
                return entry.value
            if not entry.done.is_set():
                # The owner is stuck; compute our own rather than wait forever.
                return compute()
            # The owner failed: loop and try to become the owner ourselves.

    def _fill(self, key: Hashable, entry: _Entry, compute: Callable[[], T]) -> T:
        try:
            value = compute()
        except BaseException:
            with self._lock:
                if self._entries.get(key) is entry:
                    del self._entries[key]
            entry.done.set()  # waiters see ok=False and retry themselves
            raise
        entry.value = value
        entry.ok = True
        with self._lock:
            self.computed += 1
            entry.expires = self.clock() + self.ttl
        entry.done.set()
        return value

    def _evict(self, now: float) -> None:
        if len(self._entries) <= self.max_entries:
            return
        for key in [k for k, e in self._entries.items() if e.done.is_set() and e.expires <= now]:
            del self._entries[key]
        while len(self._entries) > self.max_entries:
            # Oldest first; an in-flight entry evicted here still completes for its waiters.
            self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
