"""Attack 3: hanging the agent's workers (a FIFO as xid_log, a trickling or silent model server).

Real parts: a real FIFO nobody writes to, loopback servers that send one byte every
0.2 s forever or never answer, the real agent with its 8 workers, NVML through
the scenario fake at the pynvml boundary.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from fakes import nvml_fake
from security.sec_support import Recorder, attack, leak_check, ok, text_of

H100 = Path(__file__).resolve().parents[1] / "testcases" / "gpu_host" / "h100x8_load" / "nvml.json"


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "logs" / "kern.fifo"
    path.parent.mkdir()
    os.mkfifo(path)
    return path


def test_03_fifo_as_xid_log_does_not_block(agent, fifo, monkeypatch, tmp_path, sensor_run, make_ctx):
    nvml_fake.install(monkeypatch, nvml_fake.load_scenario(H100))
    a = agent(allowed_paths=[str(fifo.parent)])
    attack()
    started = time.monotonic()
    doc, _ = a.sensor("gpu_host", {"xid_log": str(fifo)}, timeout=20)
    leak_check(time.monotonic() - started < 5, "a FIFO held a worker")
    assert ok(doc) and "neither a regular file" in text_of(doc)
    # The script path too (PRTG's SSH Script Advanced runs the same sensor with --xid-log).
    attack()
    started = time.monotonic()
    result = sensor_run("gpu_host", ["--xid-log", str(fifo)], make_ctx(proc_root=tmp_path / "proc"))
    leak_check(time.monotonic() - started < 5, "a FIFO blocked a script run")
    assert "neither a regular file" in result.message()
    # Legitimate: a real log file in the allowed folder is read.
    log = fifo.parent / "kern.log"
    log.write_text("[ 12.5] NVRM: Xid (PCI:0000:18:00): 79, pid='<unknown>', name=<unknown>, "
                   "GPU has fallen off the bus.\n")
    doc, _ = a.sensor("gpu_host", {"xid_log": str(log)})
    assert ok(doc) and "neither" not in text_of(doc)


@pytest.mark.parametrize("behaviour", ["trickle", "silent"])
def test_03_trickling_and_silent_servers_end_at_the_timeout(agent, behaviour, tmp_path):
    with Recorder(lambda path: behaviour, trickle_s=0.2) as slow:
        a = agent(sensors=["inference", "checkpoint_volume"])
        attack()
        started = time.monotonic()
        doc, _ = a.sensor("inference", {"url": slow.url, "timeout": "1.5s"}, timeout=30)
        took = time.monotonic() - started
        leak_check(took < 4.0, f"--timeout 1.5s took {took:.1f} s against a {behaviour} server")
        assert not ok(doc)


def test_03_eight_stuck_requests_leave_health_and_polls_working(agent, tmp_path):
    folder = tmp_path / "ckpt"
    (folder / "checkpoint-1").mkdir(parents=True)
    with Recorder(lambda path: "trickle", trickle_s=0.2) as slow:
        a = agent(sensors=["inference", "checkpoint_volume"])
        done: list[float] = []

        def stuck() -> None:
            t0 = time.monotonic()
            a.get("/sensors/inference", {"url": slow.url, "timeout": "2s"}, timeout=30)
            done.append(time.monotonic() - t0)

        threads = [threading.Thread(target=stuck) for _ in range(8)]
        attack(8)
        for t in threads:
            t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        health = a.get("/health", token=False, timeout=30)
        assert health.status_code == 200
        doc, _ = a.sensor("checkpoint_volume", {"path": str(folder)})
        assert ok(doc)
        leak_check(time.monotonic() - t0 < 5.0, "health and a poll waited behind the stuck scans")
        for t in threads:
            t.join(30)
        leak_check(len(done) == 8 and max(done) < 6.0, f"stuck scans were not bounded: {done}")
