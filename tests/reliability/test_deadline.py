"""Every scan is bounded: a wedged NVML call (blocks for minutes) never holds PRTG or the agent.

The NVML fake's ``block`` scenario key makes one call sleep for ten minutes, standing in
for a driver call on a GPU that fell off the bus (``nvidia-smi`` hangs the same way).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fakes.gpu_cases import TESTCASES
from prtg_ai.prtg.validate import validate
from reliability.rel_support import AgentProcess, clean_env, http_get

pytestmark = pytest.mark.reliability  # runs with the reliability suite; no counted group

SHIM = Path(__file__).resolve().parents[1] / "fakes" / "shim"
BLOCK_S = 600  # "minutes": far beyond any deadline under test


def hung_scenario(tmp_path: Path, case: str = "h100x8_load", gpu: int | None = 3,
                  function: str = "nvmlDeviceGetTemperature", armed_by: Path | None = None) -> Path:
    scenario = json.loads((TESTCASES / "gpu_host" / case / "nvml.json").read_text())
    scenario["block"] = {"function": function, "gpu": gpu, "seconds": BLOCK_S}
    if armed_by is not None:
        scenario["block"]["armed_by"] = str(armed_by)
    path = tmp_path / "nvml-hung.json"
    path.write_text(json.dumps(scenario))
    return path


def test_run_gpu_answers_a_prtg_error_naming_the_hung_call_within_its_deadline(tmp_path):
    scenario = hung_scenario(tmp_path)
    log = tmp_path / "kmsg"
    log.touch()
    env = clean_env(tmp_path / "state", {"PYTHONPATH": str(SHIM), "PRTG_AI_FAKE_NVML": str(scenario)})
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "prtg_ai.cli", "run", "gpu", "--gpu", "3", "--xid-log", str(log),
                           "--deadline", "3s"], capture_output=True, text=True, env=env, timeout=60)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert validate(proc.stdout) == [], proc.stdout
    doc = json.loads(proc.stdout)
    assert doc["prtg"]["error"] == 1
    text = doc["prtg"]["text"]
    assert "3 s deadline" in text
    assert "NVML nvmlDeviceGetTemperature on GPU 3" in text
    assert "Traceback" not in proc.stdout + proc.stderr
    assert 3.0 <= took < 10.0, took  # on time: the blocked call (600 s) did not hold the process
    log = (tmp_path / "state" / "prtg-ai.log").read_text()
    assert "did not finish within its 3 s deadline" in log and "nvmlDeviceGetTemperature on GPU 3" in log


def test_run_deadline_from_the_environment_and_script_v2(tmp_path):
    scenario = hung_scenario(tmp_path, function="nvmlDeviceGetCount", gpu=None)
    env = clean_env(tmp_path / "state", {"PYTHONPATH": str(SHIM), "PRTG_AI_FAKE_NVML": str(scenario),
                                         "PRTG_AI_DEADLINE": "2s"})
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "prtg_ai.cli", "run", "gpu_host", "--format", "v2",
                           "--xid-log", str(tmp_path / "none")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0
    assert time.monotonic() - started < 8.0
    doc = json.loads(proc.stdout)
    assert doc["status"] == "error" and "NVML nvmlDeviceGetCount" in doc["message"], doc


def test_a_bad_deadline_is_a_parameter_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "prtg_ai.cli", "run", "checkpoint_volume", "--path", str(tmp_path),
                           "--deadline", "0.1s"], capture_output=True, text=True,
                          env=clean_env(tmp_path / "state"), timeout=60)
    doc = json.loads(proc.stdout)
    assert doc["prtg"]["error"] == 1 and "--deadline" in doc["prtg"]["text"]


def _get(port: int, target: str, token: str, out: list, timeout: float = 60.0) -> None:
    started = time.monotonic()
    try:
        status, _, body = http_get(port, target, {"Authorization": f"Bearer {token}"}, timeout=timeout)
        out.append((status, body, time.monotonic() - started))
    except OSError as exc:  # recorded, asserted on by the test
        out.append((0, repr(exc).encode(), time.monotonic() - started))


def test_agent_with_every_worker_stuck_still_answers_other_sensors_and_health(tmp_path):
    arm = tmp_path / "wedge-now"
    scenario = hung_scenario(tmp_path, function="nvmlDeviceGetTemperature", gpu=None, armed_by=arm)  # every GPU
    env = clean_env(tmp_path / "state", {"PYTHONPATH": str(SHIM), "PRTG_AI_FAKE_NVML": str(scenario)})
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "step-1.pt").write_bytes(b"x" * 1024)
    token = "t0k3n-deadline-test-0123456789"
    agent = AgentProcess(tmp_path, token, ["--threads", "2", "--deadline", "4s", "--cache-ttl", "0",
                                           "--sensor-defaults", f"checkpoint_volume=--path {folder}"], env=env)
    try:
        warm: list = []  # one healthy scan first: pynvml is imported once, before threads race on it
        _get(agent.port, "/sensors/gpu?gpu=0&xid_log=/nonexistent", token, warm)
        assert b'"error"' not in warm[0][1], warm
        arm.touch()
        hung: list = []
        # Twice as many hung requests as workers, over 4 distinct scans, plus repeats of one.
        targets = [f"/sensors/gpu?gpu={i}&xid_log=/nonexistent" for i in range(4)] * 2
        threads = [threading.Thread(target=_get, args=(agent.port, t, token, hung)) for t in targets]
        for t in threads:
            t.start()
        time.sleep(1.0)  # every worker is now waiting on a wedged NVML call
        started = time.monotonic()
        status, _, body = http_get(agent.port, "/health", timeout=5)
        assert status == 200 and time.monotonic() - started < 1.0
        t0 = time.monotonic()
        other: list = []
        _get(agent.port, "/sensors/checkpoint_volume", token, other, timeout=10)
        assert other[0][0] == 200
        assert other[0][2] < 2.0, f"another sensor waited {other[0][2]:.1f} s behind the hung ones"
        doc = json.loads(other[0][1])
        assert "error" not in doc["prtg"], doc
        assert time.monotonic() - t0 < 2.0
        for t in threads:
            t.join(30)
        assert len(hung) == len(targets)
        for status, body, took in hung:
            assert status == 200, body
            doc = json.loads(body)
            assert doc["prtg"]["error"] == 1
            assert "nvmlDeviceGetTemperature" in doc["prtg"]["text"], doc
            assert took < 4.0 + 3.0, took
        # /health, measured, while the scans are stuck: answered at once and reporting them.
        started = time.monotonic()
        status, _, body = http_get(agent.port, "/health", {"Authorization": f"Bearer {token}"}, timeout=5)
        assert time.monotonic() - started < 1.0
        health = json.loads(body)
        assert health["status"] == "degraded"
        # One stuck thread per distinct scan: the repeated requests shared the in-flight call.
        assert health["stuck_scans"] == 4, health
        assert {s["sensor"] for s in health["stuck"]} == {"gpu"}
        assert all("nvmlDeviceGetTemperature" in s["waiting_on"] for s in health["stuck"])
        # A further request for a stuck scan is answered at once, sharing it (no new thread).
        again: list = []
        _get(agent.port, "/sensors/gpu?gpu=0&xid_log=/nonexistent", token, again)
        assert again[0][2] < 1.0 and b"stuck" in again[0][1]
        status, _, body = http_get(agent.port, "/health", {"Authorization": f"Bearer {token}"}, timeout=5)
        assert json.loads(body)["stuck_scans"] == 4
    finally:
        agent.stop()


def test_run_inference_against_a_server_that_trickles_bytes_ends_on_time_naming_the_server(tmp_path):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def trickle() -> None:  # headers, then one byte a second, for as long as the client stays
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n")
                try:
                    while not stop.wait(1.0):
                        conn.sendall(b"#")
                except OSError:
                    pass

    server = threading.Thread(target=trickle, daemon=True)
    server.start()
    try:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "prtg_ai.cli", "run", "inference", "--url",
                               f"http://127.0.0.1:{port}", "--timeout", "50s", "--deadline", "2s"],
                              capture_output=True, text=True, env=clean_env(tmp_path / "state"), timeout=60)
        took = time.monotonic() - started
    finally:
        stop.set()
        listener.close()
    assert proc.returncode == 0 and validate(proc.stdout) == []
    text = json.loads(proc.stdout)["prtg"]["text"]
    assert f"HTTP GET of http://127.0.0.1:{port}" in text and "2 s deadline" in text, text
    assert took < 8.0, took


def test_push_answers_a_hung_scan_with_a_prtg_error_and_shares_the_stuck_call(tmp_path, monkeypatch):
    from fakes.nvml_fake import install
    from prtg_ai.agent.push import Pusher, parse_targets
    from prtg_ai.core.context import Context

    scenario = json.loads(hung_scenario(tmp_path, gpu=0).read_text())
    scenario["block"]["seconds"] = 20  # ends within the test session; far past the 1 s deadline
    fake = install(monkeypatch, scenario)
    [target] = parse_targets(["gpu=push-token-0123456789"], ['gpu=--gpu 0 --xid-log /nonexistent'])
    pusher = Pusher("http://127.0.0.1:9", [target], ctx=Context(env={"PRTG_AI_DEADLINE": "1s"},
                                                                 state_dir=tmp_path / "state"))
    started = time.monotonic()
    body = json.loads(pusher.body_for(target))
    assert 1.0 <= time.monotonic() - started < 4.0
    assert body["prtg"]["error"] == 1 and "NVML nvmlDeviceGetTemperature on GPU 0" in body["prtg"]["text"]
    started = time.monotonic()
    again = json.loads(pusher.body_for(target))
    assert time.monotonic() - started < 0.5 and "still stuck" in again["prtg"]["text"]
    assert fake.blocked == 1  # one stuck call, shared
