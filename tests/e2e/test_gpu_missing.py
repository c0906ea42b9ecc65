"""8 -> 7 GPUs: gpu_host stays in alarm (Missing GPUs) on every later scan, across an agent
restart, until the change is accepted with ``prtg-ai accept-gpu-count``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fakes.gpu_cases import TESTCASES
from reliability.rel_support import AgentProcess, clean_env, http_get
from support import legacy_worst

SHIM = Path(__file__).resolve().parents[1] / "fakes" / "shim"
EIGHT = TESTCASES / "gpu_host" / "h100x8_load" / "nvml.json"


def seven_of_eight(tmp_path: Path) -> Path:
    scenario = json.loads(EIGHT.read_text())
    del scenario["devices"][5]  # GPU 5 fell off the bus: NVML no longer counts it
    path = tmp_path / "nvml-7.json"
    path.write_text(json.dumps(scenario))
    return path


def missing(doc: dict) -> int:
    return next(c["value"] for c in doc["prtg"]["result"] if c["channel"] == "Missing GPUs")


def test_in_process_scans_stay_in_alarm_until_accepted(tmp_path, monkeypatch, sensor_run, make_ctx, clock):
    from fakes.gpu_cases import install
    from fakes.nvml_fake import load_scenario
    from prtg_ai.gpu.gpu_host import accept_gpu_count
    from prtg_ai.prtg.render import to_legacy

    log = tmp_path / "kmsg"
    log.touch()
    argv = ["--xid-log", str(log)]
    ctx = make_ctx()
    install(monkeypatch, load_scenario(EIGHT))
    first = to_legacy(sensor_run("gpu_host", argv, ctx))
    assert missing(first) == 0 and legacy_worst(first) == "ok"
    install(monkeypatch, load_scenario(seven_of_eight(tmp_path)))
    for _ in range(4):
        clock.advance(60)
        doc = to_legacy(sensor_run("gpu_host", argv, ctx))
        assert missing(doc) == 1 and legacy_worst(doc) == "error"
        assert "1 GPU(s) missing: 7 present, 8 expected" in doc["prtg"]["text"]
    assert accept_gpu_count(tmp_path / "state") == 1
    clock.advance(60)
    doc = to_legacy(sensor_run("gpu_host", argv, ctx))
    assert missing(doc) == 0 and "accepted" in doc["prtg"]["text"]
    clock.advance(60)
    assert missing(to_legacy(sensor_run("gpu_host", argv, ctx))) == 0


def test_expected_gpus_wins_over_the_high_water_mark(tmp_path, monkeypatch, sensor_run, make_ctx):
    from fakes.gpu_cases import install
    from fakes.nvml_fake import load_scenario
    from prtg_ai.prtg.render import to_legacy

    install(monkeypatch, load_scenario(seven_of_eight(tmp_path)))
    doc = to_legacy(sensor_run("gpu_host", ["--expected-gpus", "8", "--xid-log", str(tmp_path / "no")], make_ctx(),
                               limits={"gpus": {"limitminerror": 8}}))  # --expected-gpus: a lower error limit
    assert missing(doc) == 1 and "--expected-gpus" in doc["prtg"]["text"]


def test_agent_restart_keeps_the_alarm_until_accepted(tmp_path):
    token = "t0k3n-missing-gpu-0123456789"
    target = "/sensors/gpu_host?xid_log=/nonexistent"
    headers = {"Authorization": f"Bearer {token}"}

    def agent(scenario: Path) -> AgentProcess:
        env = clean_env(tmp_path / "state", {"PYTHONPATH": str(SHIM), "PRTG_AI_FAKE_NVML": str(scenario)})
        return AgentProcess(tmp_path, token, ["--cache-ttl", "0"], env=env)

    a = agent(EIGHT)
    try:
        assert missing(json.loads(http_get(a.port, target, headers)[2])) == 0
    finally:
        a.stop()
    seven = seven_of_eight(tmp_path)
    for _ in range(2):  # the node rebooted (agent restarted) without GPU 5, twice
        a = agent(seven)
        try:
            for _ in range(2):
                doc = json.loads(http_get(a.port, target, headers)[2])
                assert missing(doc) == 1 and legacy_worst(doc) == "error", doc
        finally:
            a.stop()
    proc = subprocess.run([sys.executable, "-m", "prtg_ai.cli", "accept-gpu-count",
                           "--state-dir", str(tmp_path / "agent-state")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "1 gpu_host sensor(s)" in proc.stdout, proc.stdout + proc.stderr
    a = agent(seven)
    try:
        assert missing(json.loads(http_get(a.port, target, headers)[2])) == 0
    finally:
        a.stop()
