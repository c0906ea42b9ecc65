"""The agent's single-flight TTL cache."""

from __future__ import annotations

import threading
import time

from prtg_ai.agent.cache import TTLCache
from support import FakeClock


def test_ttl_expiry_with_fake_clock():
    clock = FakeClock(100.0)
    c = TTLCache(5.0, clock=clock)
    runs = []
    compute = lambda: runs.append(1) or len(runs)  # noqa: E731
    assert c.get_or_compute("k", compute) == 1
    clock.advance(4.9)
    assert c.get_or_compute("k", compute) == 1
    clock.advance(0.2)
    assert c.get_or_compute("k", compute) == 2
    assert c.get_or_compute("other", compute) == 3
    assert c.computed == 3 and len(c) == 2


def test_single_flight_shares_one_computation():
    c = TTLCache(60.0)
    release = threading.Event()
    runs = []

    def slow():
        runs.append(threading.get_ident())
        release.wait(10)
        return "sweep"

    got = []
    threads = [threading.Thread(target=lambda: got.append(c.get_or_compute("gpu", slow))) for _ in range(20)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # everyone is waiting on the owner now
    release.set()
    for t in threads:
        t.join(10)
    assert got == ["sweep"] * 20
    assert len(runs) == 1 and c.computed == 1 and c.shared == 19


def test_failure_is_not_cached_and_waiters_retry():
    c = TTLCache(60.0)
    started, release = threading.Event(), threading.Event()
    calls = []

    def failing():
        calls.append("fail")
        started.set()
        release.wait(10)
        raise RuntimeError("boom")

    errors, values = [], []

    def owner():
        try:
            c.get_or_compute("k", failing)
        except RuntimeError as exc:
            errors.append(str(exc))

    t1 = threading.Thread(target=owner)
    t1.start()
    started.wait(10)
    t2 = threading.Thread(target=lambda: values.append(c.get_or_compute("k", lambda: calls.append("ok") or 7)))
    t2.start()
    time.sleep(0.1)
    release.set()
    t1.join(10)
    t2.join(10)
    assert errors == ["boom"] and values == [7] and calls == ["fail", "ok"]


def test_size_is_bounded():
    clock = FakeClock()
    c = TTLCache(60.0, max_entries=8, clock=clock)
    for i in range(100):
        c.get_or_compute(i, lambda i=i: i)
    assert len(c) == 8
    assert c.get_or_compute(99, lambda: -1) == 99  # newest kept
    assert c.get_or_compute(0, lambda: -1) == -1  # oldest evicted


def test_ttl_zero_still_recomputes():
    c = TTLCache(0.0)
    n = []
    for _ in range(3):
        c.get_or_compute("k", lambda: n.append(1))
    assert len(n) == 3
