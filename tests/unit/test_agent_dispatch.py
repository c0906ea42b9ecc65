"""ScanRunner: a deadline per scan, one in-flight call per hung scan, stuck scans bounded and counted."""

from __future__ import annotations

import threading
import time

from prtg_ai.agent.dispatch import ScanRunner
from prtg_ai.core import deadline


def error(text: str) -> bytes:
    return ("ERR " + text).encode()


def test_a_hung_scan_is_answered_at_its_deadline_naming_the_operation_and_shared():
    release = threading.Event()
    calls = []

    def hung() -> bytes:
        calls.append(1)
        deadline.doing("NVML nvmlDeviceGetPowerUsage on GPU 2")
        release.wait(30)
        return b"late"

    runner = ScanRunner(0.3, error)
    started = time.monotonic()
    first = runner.run("k", "gpu", hung)
    assert 0.3 <= time.monotonic() - started < 2.0
    assert first.startswith(b"ERR Sensor gpu did not finish within its 0.3 s deadline")
    assert b"NVML nvmlDeviceGetPowerUsage on GPU 2" in first
    t0 = time.monotonic()
    again = runner.run("k", "gpu", hung)
    assert time.monotonic() - t0 < 0.2 and b"still stuck" in again
    assert len(calls) == 1 and runner.stuck_count() == 1 and runner.overruns == 1
    assert runner.stuck()[0]["waiting_on"] == "NVML nvmlDeviceGetPowerUsage on GPU 2"
    release.set()
    for _ in range(100):
        if runner.stuck_count() == 0:
            break
        time.sleep(0.02)
    assert runner.stuck_count() == 0
    assert runner.run("k", "gpu", lambda: b"ok") == b"ok"  # a fresh scan once the hung one returned


def test_stuck_scans_are_bounded():
    release = threading.Event()
    runner = ScanRunner(0.1, error, max_stuck=2)
    for key in ("a", "b"):
        assert runner.run(key, "gpu", lambda: release.wait(30) and b"x").startswith(b"ERR")
    assert runner.stuck_count() == 2
    refused = runner.run("c", "checkpoint_volume", lambda: b"never started")
    assert refused.startswith(b"ERR The agent has 2 scans stuck") and b"gpu" in refused
    release.set()


def test_fast_scans_pass_through_and_errors_inside_are_answered():
    runner = ScanRunner(5, error)
    assert runner.run("a", "gpu", lambda: b"fine") == b"fine"

    def broken() -> bytes:
        raise RuntimeError("bug")

    assert runner.run("b", "gpu", broken).startswith(b"ERR Internal error in the prtg-ai agent (RuntimeError)")
    assert runner.stuck_count() == 0
