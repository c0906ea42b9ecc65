"""NVML failing mid-sweep: every ``pynvml.NVMLError_*`` class, injected at different calls.

The scenario fake (``tests/fakes/nvml_fake.py``) answers every call from a real
capture; here a wrapper around it makes the N-th NVML call of a scan raise one of
the error classes the real ``pynvml`` defines (31 in nvidia-ml-py 13, plus an
error code pynvml has no class for). Whatever is hit — ``nvmlInit``, the handle
lookup, a reading in the middle of the sweep, ``nvmlShutdown`` — the sensor must
give valid PRTG JSON, never a traceback and never the guard's "Internal error"
(which would mean an NVML outcome nobody sorted into the error tiers). A lost GPU
or a failed init may be an error result; anything else must still report.

Quick: every class at two call positions for ``gpu`` and two for ``gpu_host``,
plus a few whole processes through the pynvml shim. Full
(``PRTG_AI_RELIABILITY=full``): every class at every call position of both
sensors, and every class through a real process.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fakes import nvml_fake
from fakes.gpu_cases import TESTCASES
from prtg_ai.core.context import Context
from prtg_ai.core.runtime import run_sensor
from reliability.rel_support import FULL, clean_env
from support import check_result

pytestmark = pytest.mark.reliability("faults: NVML errors mid-sweep")

REAL = nvml_fake.REAL
ERROR_CLASSES = sorted(n[len("NVMLError_"):] for n in dir(REAL)
                       if n.startswith("NVMLError_") and isinstance(getattr(REAL, n), type))
UNMAPPED = "code-999"  # an error code newer than this nvidia-ml-py: pynvml raises the base NVMLError
ALL_ERRORS = ERROR_CLASSES + [UNMAPPED]
SCENARIOS = {"gpu": TESTCASES / "gpu" / "h100_sxm_load" / "nvml.json",
             "gpu_host": TESTCASES / "gpu_host" / "h100x8_load" / "nvml.json"}
SHIM = Path(__file__).resolve().parents[1] / "fakes" / "shim"


def make_error(name: str) -> Exception:
    if name == UNMAPPED:
        return REAL.NVMLError(999)
    return nvml_fake.nvml_error(name)


class Injector:
    """Makes the ``at``-th NVML call (1-based, over every served function) raise ``error``."""

    def __init__(self, fake: nvml_fake.FakeNvml, error: str | None, at: int | None):
        self.error, self.at = error, at
        self.count = itertools.count(1)
        self.hit: str | None = None
        for name in sorted(fake.served):
            setattr(fake, name, self._wrap(name, getattr(fake, name)))

    def _wrap(self, name, fn):
        def wrapper(*args, **kwargs):
            n = next(self.count)
            if n == self.at:
                self.hit = name
                raise make_error(self.error)
            return fn(*args, **kwargs)
        wrapper.__name__ = name
        return wrapper


def scan(monkeypatch, sensor: str, tmp: Path, error: str | None = None, at: int | None = None):
    fake = nvml_fake.install(monkeypatch, nvml_fake.load_scenario(SCENARIOS[sensor]))
    injector = Injector(fake, error, at)
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "kmsg"
    log.touch()
    ctx = Context(proc_root=tmp / "proc", env={}, state_dir=tmp / "state")
    argv = (["--gpu", "0"] if sensor == "gpu" else []) + ["--xid-log", str(log)]
    result = run_sensor(sensor, argv, ctx)
    return result, injector


_CALLS: dict[str, int] = {}


def calls_per_scan(sensor: str, tmp_path_factory) -> int:
    """How many NVML calls one clean scan makes (the positions faults can be injected at)."""
    if sensor not in _CALLS:
        mp = pytest.MonkeyPatch()
        try:
            result, injector = scan(mp, sensor, tmp_path_factory.mktemp(f"count-{sensor}"))
        finally:
            mp.undo()
        assert not result.error, result.message()
        _CALLS[sensor] = next(injector.count) - 1
    return _CALLS[sensor]


def positions(sensor: str, total: int, index: int) -> list[int]:
    """Quick: two positions per class, rotating so the classes together hit calls all over the sweep."""
    if FULL:
        return list(range(1, total + 1))
    return sorted({1 + (index * 7) % total, 1 + (index * 13 + total // 2) % total})


def check(result, sensor: str, error: str, at: int, hit: str | None) -> None:
    doc = check_result(sensor, result)  # valid legacy and Script v2 JSON under PRTG's rules
    text = json.dumps(doc)
    where = f"{error} at call {at} ({hit})"
    assert "Traceback" not in text, where
    assert "Internal error" not in result.message(), f"{where}: unsorted NVML outcome: {result.message()}"
    if result.error:
        # Only a failed start, a lost GPU or an unusable handle may cost the whole result.
        assert hit in ("nvmlInit", "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex",
                       "nvmlDeviceGetHandleByUUID") or error in ("GpuIsLost", "ResetRequired"), \
            f"{where}: a failed reading cost the whole result: {result.message()}"


@pytest.mark.parametrize("sensor", sorted(SCENARIOS))
@pytest.mark.parametrize("error", ALL_ERRORS)
def test_every_nvml_error_class_mid_sweep_gives_valid_prtg_output(sensor, error, monkeypatch, tmp_path,
                                                                  tmp_path_factory, tally):
    total = calls_per_scan(sensor, tmp_path_factory)
    assert total > 20, "the scenario should make a full sweep"
    for at in positions(sensor, total, ALL_ERRORS.index(error)):
        result, injector = scan(monkeypatch, sensor, tmp_path / f"at{at}", error, at)
        tally.case()
        assert injector.hit is not None, f"call {at} of {total} was never made"
        tally.fault()
        check(result, sensor, error, at, injector.hit)


def test_the_injector_reaches_the_sensor(monkeypatch, tmp_path, tally):
    """Guard against a vacuous suite: a lost GPU at the first reading must fail the gpu result."""
    baseline, _ = scan(monkeypatch, "gpu", tmp_path / "ok")
    assert not baseline.error
    at = __import__("sys").modules["pynvml"].calls.index("nvmlDeviceGetUtilizationRates") + 1
    lost, injector = scan(monkeypatch, "gpu", tmp_path / "lost", "GpuIsLost", at)
    tally.case()
    tally.fault()
    assert injector.hit == "nvmlDeviceGetUtilizationRates"
    assert lost.error and "stopped answering NVML" in lost.message(), lost.message()
    # A reading that times out mid-sweep costs that reading only, and says so.
    slow, injector = scan(monkeypatch, "gpu", tmp_path / "timeout", "Timeout", at)
    tally.case()
    tally.fault()
    assert not slow.error and "GPU Utilization" not in [c.name for c in slow.channels]
    assert "NVML did not answer" in slow.message(), slow.message()


# -- whole processes through the pynvml shim ------------------------------------------------
DEVICE_KEYS = ["nvmlDeviceGetUUID", "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetTemperature",
               "nvmlDeviceGetPowerUsage", "nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetEccMode",
               "nvmlDeviceGetComputeRunningProcesses", "fields"]
SUBPROCESS_ERRORS = ERROR_CLASSES if FULL else ["GpuIsLost", "NoPermission", "Timeout"]


@pytest.mark.parametrize("error", SUBPROCESS_ERRORS)
def test_a_real_process_with_nvml_failing_prints_prtg_json_and_exits_0(error, tmp_path, tally):
    scenario = nvml_fake.load_scenario(SCENARIOS["gpu_host"])
    key = DEVICE_KEYS[ERROR_CLASSES.index(error) % len(DEVICE_KEYS)]
    scenario["devices"][3][key] = {"error": error}  # GPU 3 of 8 fails mid-sweep
    path = tmp_path / "nvml.json"
    path.write_text(json.dumps(scenario))
    log = tmp_path / "kmsg"
    log.touch()
    env = clean_env(tmp_path / "state", {"PYTHONPATH": str(SHIM), "PRTG_AI_FAKE_NVML": str(path)})
    proc = subprocess.run([sys.executable, "-m", "prtg_ai.cli", "run", "gpu_host", "--xid-log", str(log)],
                          capture_output=True, text=True, env=env, timeout=120)
    tally.case()
    tally.fault()
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    from prtg_ai.prtg.validate import validate

    assert validate(proc.stdout) == [], proc.stdout
    doc = json.loads(proc.stdout)
    assert "Internal error" not in doc["prtg"].get("text", "")
    if error not in ("GpuIsLost", "ResetRequired"):
        assert "error" not in doc["prtg"], doc  # one failed reading never costs the host result
