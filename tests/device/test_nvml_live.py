"""Both GPU sensors against the real NVML (marker ``gpu``; skipped where no NVIDIA driver answers).

Each run is validated against PRTG's rules. With ``PRTG_AI_CAPTURE_DIR`` set, the NVML
answers are recorded (``tests/fakes/nvml_fake.Recorder``) in the scenario format of
``tests/testcases/gpu*/<case>/nvml.json``, beside the sensor output, so a real GPU
becomes a new test case: copy the folder under ``tests/testcases/<sensor>/`` and write its
``expect.json`` from the capture by hand (``tests/testcases/gpu/SOURCE.md`` says how).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from prtg_ai.prtg.render import render
from prtg_ai.prtg.validate import validate

pytestmark = pytest.mark.gpu


def _nvml_gpu_count() -> tuple[int, str]:
    try:
        import pynvml
    except ImportError:
        return 0, "nvidia-ml-py is not installed"
    if getattr(pynvml, "__fake__", False):
        return 0, "pynvml is the test fake here"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return 0, f"no NVIDIA driver answers NVML on this host ({exc})"
    try:
        return int(pynvml.nvmlDeviceGetCount()), ""
    finally:
        pynvml.nvmlShutdown()


COUNT, WHY = _nvml_gpu_count()
skip_without_gpu = pytest.mark.skipif(COUNT == 0, reason=f"needs a real NVIDIA GPU: {WHY or 'NVML sees no GPU'}")


def _capture(recorder, sensor: str, name: str, argv: list[str], result) -> None:
    root = os.environ.get("PRTG_AI_CAPTURE_DIR")
    if not root:
        return
    folder = Path(root) / sensor / name
    folder.mkdir(parents=True, exist_ok=True)
    recorder.scenario["description"] = f"Real capture from {os.uname().nodename if hasattr(os, 'uname') else 'host'}"
    recorder.write(folder / "nvml.json")
    (folder / "case.json").write_text(json.dumps({"args": argv, "xid_log": None}, indent=1) + "\n")
    (folder / "output.json").write_text(render(result, "prtg") + "\n")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40] or "gpu"


@skip_without_gpu
@pytest.mark.parametrize("index", range(min(COUNT, 8)) if COUNT else [0])
def test_gpu_sensor_on_real_nvml(index, monkeypatch, sensor_run, make_ctx, tmp_path):
    from fakes.nvml_fake import Recorder

    recorder = Recorder()
    monkeypatch.setitem(sys.modules, "pynvml", recorder)
    argv = ["--gpu", str(index), "--activity-window", "0.2s"]
    ctx = make_ctx(proc_root=Path("/proc"))
    first = sensor_run("gpu", argv, ctx)  # baseline for rates
    result = sensor_run("gpu", argv, ctx)
    assert not first.error and not result.error, result.message()
    assert validate(render(result, "prtg")) == [] and validate(render(result, "v2")) == []
    names = {c.name for c in result.channels}
    assert {"VRAM Used", "VRAM Total", "Temperature", "GPU Health"} <= names, names
    print(f"\nGPU {index}: {result.message()}\n" + "\n".join(f"  {c.name} = {c.value}" for c in result.channels))
    name = result.text.split(" (GPU")[0]
    _capture(recorder, "gpu", f"live_{_slug(name)}_{index}", argv, result)


@skip_without_gpu
def test_gpu_host_sensor_on_real_nvml(monkeypatch, sensor_run, make_ctx):
    from fakes.nvml_fake import Recorder

    recorder = Recorder()
    monkeypatch.setitem(sys.modules, "pynvml", recorder)
    result = sensor_run("gpu_host", [], make_ctx(proc_root=Path("/proc")))
    assert not result.error, result.message()
    assert validate(render(result, "prtg")) == [] and len(result.channels) <= 50
    assert result.channel("GPUs").value == COUNT
    print(f"\n{result.message()}\n" + "\n".join(f"  {c.name} = {c.value}" for c in result.channels))
    _capture(recorder, "gpu_host", f"live_{COUNT}gpu", [], result)
