"""node_security's GPU process list against the real NVML (marker ``gpu``; skipped without a driver).

The expected count is read straight from pynvml here (every GPU's compute and graphics
processes, distinct PIDs), independently of ``backends/nvml.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from prtg_ai.prtg.render import render
from prtg_ai.prtg.validate import validate

pytestmark = pytest.mark.gpu


def _pids_from_pynvml() -> set[int] | None:
    try:
        import pynvml
    except ImportError:
        return None
    if getattr(pynvml, "__fake__", False):
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        pids = set()
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            for fn in (pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses):
                pids.update(int(p.pid) for p in fn(h))
        return pids
    finally:
        pynvml.nvmlShutdown()


def test_node_security_counts_the_real_gpu_processes(sensor_run, make_ctx):
    expected = _pids_from_pynvml()
    if expected is None:
        pytest.skip("needs a real NVIDIA GPU with a driver that answers NVML")
    result = sensor_run("node_security", ["--probe", "no", "--auth-source", "off", "--gpu-processes", "on"],
                        make_ctx(proc_root=Path("/proc")))
    assert not result.error and validate(render(result, "prtg")) == [], result.message()
    assert result.channel("GPU Processes").value == len(expected), result.message()
    print("\n" + result.message())
