"""Concurrency: many processes on one state file, and the agent under load while sensors fail.

* ``east_west`` started N times at once (real processes, the 8-port NDR sysfs fixture
  through ``PRTG_AI_SYS_ROOT``) on one state file: every run exits 0 with valid PRTG
  JSON, no negative rate, and the state file is intact and usable by the next scan.
  (``tests/e2e/test_state_concurrency.py`` does the same for ``checkpoint_volume``.)
* ``prtg-ai serve`` as a real process, driven by more client threads than it has
  workers, with the result cache off, while half the requests hit sensors that fail
  (a GPU lost mid-sweep through the NVML scenario fake, a checkpoint folder that does
  not exist): every response is valid PRTG JSON with the right error flag, nothing
  hangs (every request finishes within a bound), and the agent keeps serving.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from urllib.parse import quote

import pytest

from prtg_ai.prtg.validate import validate
from reliability.rel_support import AgentProcess, clean_env, http_get, sized

pytestmark = pytest.mark.reliability("concurrency")

TESTS = Path(__file__).resolve().parents[1]
NDR = TESTS / "testcases" / "east_west" / "ndr_8port"
SHIM = TESTS / "fakes" / "shim"
LOST_GPU = TESTS / "testcases" / "gpu" / "h100_lost" / "nvml.json"
TOKEN = "reliability-token-5f1e2d3c"


def test_many_east_west_processes_on_one_state_file(tmp_path, tally):
    host = tmp_path / "host"
    shutil.copytree(NDR, host)
    env = clean_env(tmp_path / "state", {"PRTG_AI_SYS_ROOT": str(host / "sys"),
                                          "PRTG_AI_PROC_ROOT": str(host / "proc")})
    cmd = [sys.executable, "-m", "prtg_ai.cli", "run", "east_west"]
    n = sized(12, 40)
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
             for _ in range(n)]
    outputs = [p.communicate(timeout=180) for p in procs]
    tally.case(n)
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert "Traceback" not in out + err, err
        assert validate(out) == [], out
        doc = json.loads(out)
        assert "error" not in doc["prtg"], doc
        assert all(ch["value"] >= 0 for ch in doc["prtg"]["result"]), doc
    [state] = (tmp_path / "state").glob("east_west-*.json")
    saved = json.loads(state.read_text())  # intact, not interleaved
    assert set(saved["data"]["ports"]) >= {f"ib:mlx5_{i}/1" for i in range(8)}
    assert not list((tmp_path / "state").glob("*.tmp")) and not list((tmp_path / "state").glob("*.corrupt"))
    # The next scan, after traffic, computes rates from what the crowd left behind.
    counter = host / "sys/class/infiniband/mlx5_0/ports/1/counters/port_rcv_data"
    counter.write_text(f"{int(counter.read_text()) + 250_000_000}\n")
    time.sleep(1.1)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    tally.case()
    doc = json.loads(proc.stdout)
    rx = {ch["channel"]: ch["value"] for ch in doc["prtg"]["result"]}.get("Port mlx5_0/1 RX")
    assert rx is not None and rx > 0, doc["prtg"].get("text")


def test_agent_under_concurrent_load_while_half_the_sensors_fail(tmp_path, tally):
    good = tmp_path / "ckpt"
    good.mkdir()
    (good / "checkpoint-1").mkdir()
    (good / "checkpoint-1" / "model.safetensors").write_bytes(b"x" * 4096)
    kmsg = tmp_path / "kmsg"
    kmsg.touch()
    host = tmp_path / "host"
    shutil.copytree(NDR, host)
    env = clean_env(tmp_path / "state", {"PYTHONPATH": str(SHIM), "PRTG_AI_FAKE_NVML": str(LOST_GPU),
                                          "PRTG_AI_SYS_ROOT": str(host / "sys"),
                                          "PRTG_AI_PROC_ROOT": str(host / "proc"),
                                          "PRTG_AI_LOG_LEVEL": "WARNING"})
    agent = AgentProcess(tmp_path, TOKEN, ["--cache-ttl", "0", "--threads", "4"], env=env)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # (target, whether PRTG must see an error, a text the answer must contain)
    mix = [
        (f"/sensors/gpu?gpu=0&xid_log={quote(str(kmsg))}", True, "stopped answering NVML"),  # GPU lost mid-sweep
        ("/sensors/checkpoint_volume?path=/nonexistent/prtg-ai/ckpt", True, "/nonexistent/prtg-ai/ckpt"),
        (f"/sensors/checkpoint_volume?path={quote(str(good))}", False, "Checkpoints"),
        ("/sensors/east_west", False, "Fabric"),
    ]
    total = sized(240, 2400)
    latencies: list[float] = []
    problems: list[str] = []

    def one(i: int) -> None:
        target, must_fail, expected = mix[i % len(mix)]
        started = time.monotonic()
        status, headers, body = http_get(agent.port, target, auth, timeout=60)
        latencies.append(time.monotonic() - started)
        text = body.decode("utf-8")
        if status != 200 or validate(text) != []:
            problems.append(f"{target}: {status} {text[:200]}")
            return
        doc = json.loads(text)
        if bool(doc["prtg"].get("error")) != must_fail or "Traceback" in text or expected not in text:
            problems.append(f"{target}: unexpected {text[:300]}")

    try:
        with ThreadPoolExecutor(max_workers=16) as pool:  # four times the agent's worker threads
            futures = [pool.submit(one, i) for i in range(total)]
            for future in as_completed(futures, timeout=sized(240, 900)):  # no deadlock: all finish
                future.result()
        tally.case(total)
        tally.fault(sum(1 for i in range(total) if mix[i % len(mix)][1]))
        assert problems == [], problems[:5]
        assert len(latencies) == total
        assert max(latencies) < 30, f"a request took {max(latencies):.1f} s under load"
        status, _, body = http_get(agent.port, "/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
        assert agent.alive()
    finally:
        agent.stop()
    log = agent.log()
    assert "Traceback" not in log and "Unexpected error" not in log, log[-3000:]
