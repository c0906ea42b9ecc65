"""The NVML fake stays true to the real pynvml, and the backend sorts NVML outcomes into tiers."""

from __future__ import annotations

import inspect
import logging

import pytest

from fakes import nvml_fake
from fakes.gpu_cases import TESTCASES
from prtg_ai.backends import nvml
from prtg_ai.core.errors import ConfigError, SensorError
from support import channels

REAL = nvml_fake.REAL
H100 = nvml_fake.load_scenario(TESTCASES / "gpu" / "h100_sxm_load" / "nvml.json")


def test_everything_the_fake_serves_exists_in_the_real_module():
    fake = nvml_fake.FakeNvml(H100)
    assert len(fake.served) > 40
    assert all(inspect.isfunction(getattr(REAL, n, None)) for n in fake.served)
    assert set(nvml_fake.SHAPES) <= set(dir(REAL))


def test_a_typo_is_an_attribute_error_as_with_the_real_module():
    fake = nvml_fake.FakeNvml(H100)
    with pytest.raises(AttributeError):
        fake.nvmlDeviceGetPowerUsag3  # noqa: B018
    with pytest.raises(AttributeError):
        nvml_fake.FakeNvml(H100)._serve("nvmlDeviceGetPowerUsag3", lambda h: 0)


def test_calls_are_checked_against_the_real_signatures():
    fake = nvml_fake.FakeNvml(H100)
    fake.nvmlInit()
    handle = fake.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(TypeError):
        fake.nvmlDeviceGetClockInfo(handle)  # the real function needs the clock type
    with pytest.raises(TypeError):
        fake.nvmlDeviceGetMemoryInfo(handle, versoin=2)
    assert fake.nvmlDeviceGetClockInfo(handle, REAL.NVML_CLOCK_SM) == 1980


def test_unserved_functions_fail_loudly_and_calls_need_init():
    fake = nvml_fake.FakeNvml(H100)
    with pytest.raises(REAL.NVMLError_Uninitialized):
        fake.nvmlDeviceGetCount()
    fake.nvmlInit()
    with pytest.raises(AssertionError, match="does not serve nvmlDeviceGetBAR1MemoryInfo"):
        fake.nvmlDeviceGetBAR1MemoryInfo(fake.nvmlDeviceGetHandleByIndex(0))


def test_errors_and_structures_are_the_real_ones():
    fake = nvml_fake.FakeNvml(H100)
    fake.nvmlInit()
    handle = fake.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(REAL.NVMLError_NotSupported) as info:
        fake.nvmlDeviceGetFanSpeed(handle)
    assert info.value.value == REAL.NVML_ERROR_NOT_SUPPORTED
    mem = fake.nvmlDeviceGetMemoryInfo(handle, version=REAL.nvmlMemory_v2)
    assert isinstance(mem, REAL.c_nvmlMemory_v2_t) and mem.version == REAL.nvmlMemory_v2
    values = fake.nvmlDeviceGetFieldValues(handle, [82, (138, 0xFFFFFFFF), 999])
    assert isinstance(values[0], REAL.c_nvmlFieldValue_t)
    assert (values[0].nvmlReturn, values[0].value.ullVal) == (0, 70)
    assert values[2].nvmlReturn == REAL.NVML_ERROR_NOT_SUPPORTED
    with pytest.raises(REAL.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetHandleByIndex(8)


def test_backend_sweep_returns_typed_data(monkeypatch):
    nvml_fake.install(monkeypatch, H100)
    with nvml.Nvml() as lib:
        index, handle = lib.select("0")
        s = lib.sweep(index, handle)
        system = lib.system()
    assert (system.driver, system.cuda, system.nvml) == ("550.54.15", "12.4", "12.550.54.15")
    assert s.memory == nvml.MemoryInfo(85520809984, 346030080, 85520809984 - 346030080 - 77846282240, 77846282240)
    assert (s.util_gpu, s.temperature, s.memory_temperature, s.margin_temperature) == (97, 61, 70, 26)
    assert (s.power_mw, s.power_limit_mw, s.clocks_event_reasons) == (612345, 700000, 0)
    assert (s.nvlink_links, s.nvlink_tx_kib, s.recovery_action) == (18, 4_112_345_678_901, 0)
    assert s.processes == [nvml.ProcessInfo(41872, 77846282240, "compute")]
    assert s.fan_speed is None and "nvmlDeviceGetFanSpeed" in s.absent and s.denied == []
    assert (s.sm_activity, s.mig_enabled) == (None, False)


def test_not_supported_is_logged_once_per_gpu_and_call(monkeypatch, caplog):
    nvml._LOGGED_ABSENT.clear()
    nvml_fake.install(monkeypatch, H100)
    with caplog.at_level(logging.INFO, logger="prtg_ai.nvml"):
        for _ in range(3):
            with nvml.Nvml() as lib:
                lib.sweep(0, lib.handle_by_index(0))
    fan = [r for r in caplog.records if "nvmlDeviceGetFanSpeed" in r.getMessage()]
    assert len(fan) == 1


def test_transient_errors_are_problems_not_outages(monkeypatch):
    scen = nvml_fake.load_scenario(TESTCASES / "gpu" / "h100_sxm_load" / "nvml.json")
    scen["devices"][0]["nvmlDeviceGetPowerUsage"] = {"error": "Timeout"}
    nvml_fake.install(monkeypatch, scen)
    with nvml.Nvml() as lib:
        s = lib.sweep(0, lib.handle_by_index(0))
    assert s.power_mw is None and s.problems == ["nvmlDeviceGetPowerUsage: Timeout"]


def test_gpu_is_lost_raises(monkeypatch):
    scen = nvml_fake.load_scenario(TESTCASES / "gpu" / "h100_lost" / "nvml.json")
    nvml_fake.install(monkeypatch, scen)
    with nvml.Nvml() as lib, pytest.raises(nvml.GpuLostError, match="GPU 0 .* stopped answering"):
        lib.sweep(0, lib.handle_by_index(0))


@pytest.mark.parametrize("text, expected", [("0", ("index", 0)), (" 7 ", ("index", 7)),
                                            ("GPU-5a4e1b6c-0000-7c1e-9f7a-0c3d1e2f0000",
                                             ("uuid", "GPU-5a4e1b6c-0000-7c1e-9f7a-0c3d1e2f0000"))])
def test_parse_selector(text, expected):
    assert nvml.parse_selector(text) == expected


@pytest.mark.parametrize("text", ["", "-1", "1.5", "GPU-xyz", "all", "MIG-1d9a4e6b-2c38-5f70-b8d2-9e4a1c6f0b23"])
def test_parse_selector_refuses(text):
    with pytest.raises(ConfigError) as info:
        nvml.parse_selector(text)
    assert info.value.param == "gpu"


def test_probe_keeps_working_for_doctor(monkeypatch):
    nvml_fake.install(monkeypatch, H100)
    assert nvml.probe() == (True, "driver 550.54.15, 8 GPU(s)")
    nvml_fake.install(monkeypatch, {"init": {"error": "DriverNotLoaded"}})
    ok, detail = nvml.probe()
    assert not ok and "Driver Not Loaded" in detail


def test_recorder_writes_a_scenario_that_replays_to_the_same_channels(monkeypatch, sensor_run, make_ctx, tmp_path):
    """The device check records the real NVML with Recorder; here it records the fake instead."""
    log = tmp_path / "kmsg"
    log.write_text("")
    recorder = nvml_fake.Recorder(real=nvml_fake.FakeNvml(H100))
    monkeypatch.setitem(__import__("sys").modules, "pynvml", recorder)
    original = sensor_run("gpu", ["--gpu", "2", "--activity-window", "0.05s", "--xid-log", log],
                          make_ctx(state_dir=tmp_path / "a"))
    captured = recorder.scenario
    assert captured["devices"][2]["nvmlDeviceGetName"] == "NVIDIA H100 80GB HBM3"
    assert captured["devices"][2]["fields"]["138@4294967295"] == 4_112_345_678_903
    nvml_fake.install(monkeypatch, captured)
    replay = sensor_run("gpu", ["--gpu", "2", "--activity-window", "0.05s", "--xid-log", log],
                        make_ctx(state_dir=tmp_path / "b"))
    strip = lambda r: {k: v for k, v in channels(r).items() if k != "Execution Time"}  # noqa: E731
    assert strip(replay) == strip(original) and len(strip(original)) > 30


def test_missing_library_message(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)
    with pytest.raises(SensorError, match="nvidia-ml-py is not installed"):
        nvml.Nvml()
