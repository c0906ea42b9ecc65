"""Attack 11: state files with valid JSON of the wrong types, which used to fail every later scan.

Real parts: real state files in the sensors' folder, mutated in place between real
scans of checkpoint_volume (a real folder), inference (a real model server on
127.0.0.1), gpu_host (NVML through the scenario fake) and a --baseline file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakes import nvml_fake
from fakes.inference_server import FakeModelServer
from prtg_ai.core.context import Context
from prtg_ai.core.runtime import run_sensor
from security.sec_support import attack, leak_check
from support import check_result

ROOT = Path(__file__).resolve().parents[1] / "testcases"
PAGE = (ROOT / "inference" / "vllm" / "metrics.1.prom").read_text()
H100 = ROOT / "gpu_host" / "h100x8_load" / "nvml.json"
GARBAGE = ["x", 7, -1.5, None, True, [], {}, [None, 1, 2, 3], ["a", "b"], {"t": "x"}, [[None, None]],
           [[1, "x", 2, 3]], {"sig": 5, "since": "x"}, [1e308, -1e308]]


def mutations(doc: dict):
    """Every (path, value) replacement of the file's top-level samples and data keys by garbage."""
    keys = [("samples",)] + [("data", k) for k in doc.get("data", {})]
    for key in keys:
        for value in GARBAGE:
            yield key, value


def scan(sensor: str, argv: list, ctx: Context):
    result = run_sensor(sensor, [str(a) for a in argv], ctx)
    check_result(sensor, result)
    return result


def run_mutations(sensor: str, argv: list, ctx: Context) -> int:
    state = Path(ctx.state_path)
    scan(sensor, argv, ctx)
    scan(sensor, argv, ctx)
    files = sorted(p for p in state.rglob("*.json"))
    assert files, "the sensor keeps state"
    tried = 0
    for file in files:
        pristine = json.loads(file.read_text())
        for key, value in mutations(pristine):
            doc = json.loads(json.dumps(pristine))
            target = doc
            for part in key[:-1]:
                target = target[part]
            target[key[-1]] = value
            file.write_text(json.dumps(doc))
            attack()
            tried += 1
            first = scan(sensor, argv, ctx)
            second = scan(sensor, argv, ctx)
            for result in (first, second):
                leak_check("Internal error" not in result.message(), f"{sensor} {key}={value!r}: {result.message()}")
            file.write_text(json.dumps(pristine))
            for aside in state.rglob("*.corrupt"):
                aside.unlink()
    return tried


def test_11_checkpoint_volume(tmp_path):
    ckpt = tmp_path / "ckpt"
    (ckpt / "checkpoint-1").mkdir(parents=True)
    ctx = Context(state_dir=tmp_path / "state", env={})
    assert run_mutations("checkpoint_volume", ["--path", ckpt, "--baseline", "Free Space"], ctx) > 20


@pytest.mark.slow
def test_11_inference(tmp_path):
    with FakeModelServer(page=PAGE) as server:
        ctx = Context(state_dir=tmp_path / "state", env={})
        assert run_mutations("inference", ["--url", server.url, "--process", "python*"], ctx) > 20


def test_11_gpu_host(tmp_path, monkeypatch):
    nvml_fake.install(monkeypatch, nvml_fake.load_scenario(H100))
    log = tmp_path / "kern.log"
    log.write_text("")
    ctx = Context(state_dir=tmp_path / "state", env={}, proc_root=tmp_path / "proc")
    assert run_mutations("gpu_host", ["--xid-log", log], ctx) > 20
