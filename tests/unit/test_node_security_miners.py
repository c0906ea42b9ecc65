"""node_security's GPU processes: NVML (scenario fake at the pynvml boundary) plus procfs.

``tests/testcases/node_security/gpu_miner``: two GPUs with a torchrun training job
(allowed: a common framework), a custom trainer (learnt during --learn), xmrig in a
Docker container, T-Rex in a Kubernetes pod and a Python script pointed at a stratum
pool; the proc tree beside the scenario says who each PID is. Expected values by hand
in that folder's SOURCE.md.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
import time
from pathlib import Path

from fakes.nvml_fake import install, load_scenario

from support import channels

CASE = Path(__file__).resolve().parents[1] / "testcases" / "node_security" / "gpu_miner"
ARGS = ["--probe=no", "--auth-source", "off", "--learn", "1h"]


def test_miners_and_an_unknown_process_are_flagged_training_is_not(tmp_path, monkeypatch, sensor_run, make_ctx, clock):
    scenario = load_scenario(CASE / "nvml.json")
    fake = install(monkeypatch, scenario)
    ctx = make_ctx(proc_root=CASE / "proc")
    first = sensor_run("node_security", ARGS, ctx)
    ch = channels(first)
    # Learning: the three miners are flagged at once; torchrun is a framework; custom-trainer is learnt.
    assert ch["Suspicious GPU Processes"] == 3 and ch["GPU Processes"] == 5
    text = first.message()
    assert "xmrig PID 4102 on GPU 0 (user nobody, container 3f4e5d6c7b8a): known cryptocurrency miner (xmrig)" in text
    assert "t-rex PID 4103 on GPU 1 (user root, container a1b2c3d4e5f6, pod 6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b): known cryptocurrency miner" in text
    assert "python3.11 PID 4106 on GPU 1 (user nobody): connects to a stratum mining pool" in text
    assert "4101" not in text and "custom-trainer" not in text
    assert "wallet" not in text and "0xabc" not in text  # arguments are never echoed
    assert fake.unscripted == []

    # After learning, a new process outside the allow-list appears on GPU 0.
    later = copy.deepcopy(scenario)
    later["devices"][0]["nvmlDeviceGetComputeRunningProcesses"].append({"pid": 4105, "usedGpuMemory": 1 << 30})
    install(monkeypatch, later)
    clock.advance(7200)
    second = sensor_run("node_security", ARGS, ctx)
    ch = channels(second)
    assert ch["Suspicious GPU Processes"] == 4 and ch["GPU Processes"] == 6
    assert "mystery-bin PID 4105 on GPU 0 (user nobody): outside the allow-list" in second.message()
    assert "custom-trainer" not in second.message()  # learnt

    clock.advance(60)
    allowed = sensor_run("node_security", [*ARGS, "--gpu-allow", "mystery-*"], ctx)
    assert channels(allowed)["Suspicious GPU Processes"] == 3 and "mystery-bin" not in allowed.message()


def test_real_processes_a_miner_and_a_training_script(tmp_path, monkeypatch, sensor_run, make_ctx):
    miner_exe = tmp_path / "xmrig"
    shutil.copy("/bin/sleep", miner_exe)
    script = tmp_path / "train.py"
    script.write_text("import time\ntime.sleep(30)\n")
    miner = subprocess.Popen([str(miner_exe), "30"])
    trainer = subprocess.Popen([sys.executable, str(script), "--epochs", "3"])
    try:
        time.sleep(0.2)  # both exec'd
        scenario = {"devices": [{"nvmlDeviceGetComputeRunningProcesses": [
            {"pid": trainer.pid, "usedGpuMemory": 1 << 34}, {"pid": miner.pid, "usedGpuMemory": 1 << 31}],
            "nvmlDeviceGetGraphicsRunningProcesses": []}]}
        install(monkeypatch, scenario)
        result = sensor_run("node_security", [*ARGS, "--gpu-processes", "on"], make_ctx(proc_root="/proc"))
    finally:
        miner.kill()
        trainer.kill()
        miner.wait()
        trainer.wait()
    ch = channels(result)
    assert ch["Suspicious GPU Processes"] == 1 and ch["GPU Processes"] == 2
    assert f"xmrig PID {miner.pid} on GPU 0 (user root" in result.message()
    assert f"PID {trainer.pid}" not in result.message()


def test_no_permission_for_process_lists_warns(tmp_path, monkeypatch, sensor_run, make_ctx):
    scenario = load_scenario(CASE / "nvml.json")
    for dev in scenario["devices"]:
        dev["nvmlDeviceGetComputeRunningProcesses"] = {"error": "NoPermission"}
        dev["nvmlDeviceGetGraphicsRunningProcesses"] = {"error": "NoPermission"}
    install(monkeypatch, scenario)
    result = sensor_run("node_security", ARGS, make_ctx(proc_root=CASE / "proc"))
    assert result.warning and "NoPermission" in result.message()
    assert channels(result)["GPU Processes"] == 0


def test_without_nvml_the_gpu_channels_are_omitted(tmp_path, monkeypatch, sensor_run, make_ctx):
    install(monkeypatch, {"init": {"error": "LibraryNotFound"}, "devices": []})
    result = sensor_run("node_security", [*ARGS, "--gpu-processes", "on"], make_ctx(proc_root=CASE / "proc"))
    assert not result.error and "Suspicious GPU Processes" not in channels(result)
    assert "GPU processes not checked: The NVML library" in result.message()
    (tmp_path / "net").mkdir()
    shutil.copy(CASE / "proc" / "net" / "tcp", tmp_path / "net" / "tcp")  # no driver/nvidia here
    auto = sensor_run("node_security", ARGS, make_ctx(proc_root=tmp_path))
    assert "No NVIDIA driver loaded" in auto.message()
