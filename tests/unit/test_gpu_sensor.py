"""The ``gpu`` sensor against the NVML fake: numbers, error tiers, per-case expectations and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fakes import nvml_fake
from fakes.gpu_cases import TESTCASES, case_dirs, check_expectations, prepare, run_two_scans
from support import REPO, channels, cli_env, run_cli

H100 = TESTCASES / "gpu" / "h100_sxm_load"
GiB = 1024 ** 3


def scenario(case: str) -> dict:
    return nvml_fake.load_scenario(TESTCASES / "gpu" / case / "nvml.json")


@pytest.fixture
def run_gpu(monkeypatch, sensor_run, make_ctx, tmp_path):
    """Run ``gpu`` once on a scenario dict; returns (result, fake)."""
    ctx_holder = {}

    def _run(scen: dict, *args: str, xid_log: Path | None = None):
        fake = nvml_fake.install(monkeypatch, scen)
        if "ctx" not in ctx_holder:
            ctx_holder["ctx"] = make_ctx(proc_root=tmp_path / "proc")
        log = xid_log or (tmp_path / "empty-kmsg")
        if xid_log is None:
            log.touch()
        return sensor_run("gpu", [*args, "--xid-log", log], ctx_holder["ctx"]), fake
    return _run


# -- every case: expected output, validated ----------------------------------------------
@pytest.mark.parametrize("case", case_dirs("gpu"), ids=lambda p: p.name)
def test_case_meets_its_expectations(case, tmp_path, monkeypatch, sensor_run, make_ctx, clock):
    fake, first, second = run_two_scans("gpu", case, tmp_path, monkeypatch, sensor_run, make_ctx, clock)
    check_expectations(case, second)
    if not second.error:
        # a complete capture scripts every call the sensor makes: a typo in a key cannot hide
        assert fake.unscripted == [], fake.unscripted


# -- the numbers -------------------------------------------------------------------------
def test_vram_comes_from_memory_info_v2(run_gpu):
    scen = scenario("h100_sxm_load")
    v2 = scen["devices"][0]["nvmlDeviceGetMemoryInfo:v2"]
    v1 = scen["devices"][0]["nvmlDeviceGetMemoryInfo"]
    assert v1["used"] != v2["used"]  # v1 counts the 330 MiB reserved by the driver as used
    result, fake = run_gpu(scen)
    ch = channels(result)
    assert ch["VRAM Used"] == v2["used"] == int(72.5 * GiB)
    assert ch["VRAM Free"] == v2["free"]
    assert ch["VRAM Total"] == 81559 * 1024 ** 2
    assert ch["VRAM Used %"] == round(100 * v2["used"] / (v2["total"] - v2["reserved"]), 2) == 91.4
    assert "nvmlDeviceGetMemoryInfo" in fake.calls


def test_power_thermals_and_clocks(run_gpu):
    ch = channels(run_gpu(scenario("h100_sxm_load"))[0])
    assert ch["Power Draw"] == 612.345 and ch["Power Limit"] == 700.0
    assert ch["Power % Of Limit"] == 87.48
    assert (ch["Temperature"], ch["HBM Temperature"], ch["Slowdown Margin"]) == (61, 70, 26)
    assert (ch["SM Clock"], ch["Memory Clock"], ch["Performance State"]) == (1980, 2619, 0)
    assert "Fan Speed" not in ch  # H100 answers NotSupported: omitted, never a fake 0
    assert "Retired Pages" not in ch


def test_slowdown_margin_falls_back_to_threshold_minus_temperature(run_gpu):
    ch = channels(run_gpu(scenario("t4_older"))[0])
    assert ch["Slowdown Margin"] == 93 - 27
    assert ch["Retired Pages"] == 2 and ch["Retired Pages Pending"] == 0
    assert "Remapped Rows (Correctable)" not in ch and "HBM Temperature" not in ch
    assert ch["Throttle Reason"] == 1  # read through the pre-535 ThrottleReasons name


def test_fan_present_on_a_consumer_card(run_gpu):
    ch = channels(run_gpu(scenario("rtx3090_consumer"))[0])
    assert ch["Fan Speed"] == 67
    assert not any(name.startswith("ECC") for name in ch)  # no ECC hardware: omitted
    # graphics and compute processes are both counted
    assert ch["Processes"] == 2 and ch["Process VRAM"] == 20_447_232_000 + 312_475_648


@pytest.mark.parametrize("mask, expected", [(0x0, 0), (0x1, 1), (0x4, 4), (0x24, 6), (0x64, 8), (0x88, 9)])
def test_throttle_lookup_value_for_a_bitmask(run_gpu, mask, expected):
    scen = scenario("h100_sxm_load")
    scen["devices"][0]["nvmlDeviceGetCurrentClocksEventReasons"] = mask
    result, _ = run_gpu(scen)
    assert channels(result)["Throttle Reason"] == expected


def test_power_cap_turns_warning_only_when_sustained(run_gpu, clock):
    scen = scenario("h100_sxm_load")
    scen["devices"][0]["nvmlDeviceGetCurrentClocksEventReasons"] = 0x4
    assert channels(run_gpu(scen)[0])["Throttle Reason"] == 4
    clock.advance(60)
    result, _ = run_gpu(scen)
    assert channels(result)["Throttle Reason"] == 5
    assert "SW power cap" in result.message()


def test_energy_since_last_scan_in_joules(run_gpu, clock):
    scen = scenario("h100_sxm_load")
    first, fake = run_gpu(scen)
    assert "Energy Since Last Scan" not in channels(first)
    assert "Collecting a baseline" in first.message()
    scen["devices"][0]["nvmlDeviceGetTotalEnergyConsumption"] += 36_000_000  # 36 kJ in mJ
    clock.advance(60)
    second, _ = run_gpu(scen)
    assert channels(second)["Energy Since Last Scan"] == 36000.0


def test_energy_counter_reset_is_omitted_not_negative(run_gpu, clock):
    scen = scenario("h100_sxm_load")
    run_gpu(scen)
    scen["devices"][0]["nvmlDeviceGetTotalEnergyConsumption"] = 5_000  # driver reloaded
    clock.advance(60)
    result, _ = run_gpu(scen)
    assert "Energy Since Last Scan" not in channels(result)
    assert "counter reset" in result.message()


def test_pcie_and_nvlink_rates_from_counters(run_gpu, clock):
    scen = scenario("h100_sxm_load")
    run_gpu(scen)
    dev = scen["devices"][0]
    dev["fields"]["197"] += 6_000_000_000           # bytes in 60 s -> 100 MB/s
    dev["fields"]["138@4294967295"] += 58_593_750   # KiB in 60 s -> 1000 MB/s
    clock.advance(60)
    ch = channels(run_gpu(scen)[0])
    assert ch["PCIe TX"] == 100.0 and ch["PCIe RX"] == 0.0
    assert ch["NVLink TX"] == 1000.0 and ch["NVLink RX"] == 0.0
    assert ch["PCIe Replays"] == 0


def test_pcie_falls_back_to_nvml_sample_without_counters(run_gpu):
    ch = channels(run_gpu(scenario("a100_mig"))[0])
    assert ch["PCIe TX"] == round(21400 * 1024 / 1e6, 3) and ch["PCIe RX"] == round(184300 * 1024 / 1e6, 3)
    assert "NVLink TX" not in ch  # the 535 driver answers NotSupported for the throughput fields


def test_gpm_activity_only_when_asked(run_gpu):
    ch = channels(run_gpu(scenario("h100_sxm_load"))[0])
    assert "SM Activity" not in ch
    ch = channels(run_gpu(scenario("h100_sxm_load"), "--activity-window", "0.05s")[0])
    assert (ch["SM Activity"], ch["Tensor Activity"]) == (71.25, 38.5)


def test_idle_but_held_after_the_window(run_gpu, clock):
    scen = scenario("idle_held")
    args = ("--idle-window", "10m")
    states = []
    for _ in range(11):  # 0 .. 10 minutes
        result, _ = run_gpu(scen, *args)
        states.append((channels(result)["Idle But Held"], channels(result)["Idle-Held Time"]))
        clock.advance(60)
    assert states[0] == (2, 0.0) and states[9] == (2, 9.0)
    assert states[10] == (3, 10.0)
    assert "Idle but held for 10m" in result.message() and "PID 41872" in result.message()
    # the process starts working again: back to "in use"
    scen["devices"][0]["nvmlDeviceGetUtilizationRates"] = {"gpu": 80, "memory": 30}
    result, _ = run_gpu(scen, *args)
    assert channels(result)["Idle But Held"] == 0


def test_mig_reports_instances_and_says_utilisation_is_unsupported(run_gpu):
    result, _ = run_gpu(scenario("a100_mig"))
    ch = channels(result)
    assert "GPU Utilization" not in ch and ch["MIG Mode"] == 1
    assert ch["MIG GI1 CI0 VRAM Used"] == round(100 * 8_629_780_480 / 20_937_965_568, 2)
    assert ch["MIG GI3 CI0 VRAM Used"] == round(100 * 13_631_488 / 10_468_982_784, 2)
    assert "not supported under MIG" in result.message()
    assert "Idle But Held" not in ch  # no utilisation, no verdict
    assert "Remapped Rows (Correctable)" not in ch  # NotSupported while MIG is on


def test_xids_since_the_last_scan(run_gpu, tmp_path, clock):
    log = tmp_path / "kmsg"
    log.write_text("4,10,100,-;NVRM: Xid (PCI:0000:18:00): 13, pid=1, name=x, Graphics Exception\n")
    first, _ = run_gpu(scenario("h100_sxm_load"), xid_log=log)
    ch = channels(first)
    assert (ch["XID Errors"], ch["Last XID"], ch["XID Severity"]) == (0, 0, 0)
    assert "1 earlier XID(s) in the log since boot, last 13" in first.message()
    with log.open("a") as fh:
        fh.write("4,11,200,-;NVRM: Xid (PCI:0000:2a:00): 79, pid=1, name=x, other GPU\n"
                 "4,12,300,-;NVRM: Xid (PCI:0000:18:00): 31, pid=9, name=python, MMU Fault\n"
                 "4,13,400,-;NVRM: Xid (PCI:0000:18:00): 94, pid=9, name=python, Contained\n")
    clock.advance(60)
    second, _ = run_gpu(scenario("h100_sxm_load"), xid_log=log)
    ch = channels(second)
    assert (ch["XID Errors"], ch["Last XID"], ch["XID Severity"]) == (2, 94, 3)
    assert ch["GPU Health"] == 1
    # the next scan has no new XID, but the severity is held for --xid-hold (1 h)
    clock.advance(60)
    ch = channels(run_gpu(scenario("h100_sxm_load"), xid_log=log)[0])
    assert (ch["XID Errors"], ch["Last XID"], ch["XID Severity"]) == (0, 94, 3)
    clock.advance(3600)
    ch = channels(run_gpu(scenario("h100_sxm_load"), xid_log=log)[0])
    assert (ch["XID Errors"], ch["Last XID"], ch["XID Severity"]) == (0, 0, 0)


def test_unreadable_kernel_log_omits_xid_channels(run_gpu, tmp_path):
    result, _ = run_gpu(scenario("h100_sxm_load"), xid_log=tmp_path / "missing")
    assert "XID Errors" not in channels(result)
    assert "XID channels omitted" in result.message()
    assert not result.error


def test_remap_failure_and_recovery_action(run_gpu):
    result, _ = run_gpu(scenario("h100_thermal_remap_failure"))
    ch = channels(result)
    assert (ch["Remapped Rows (Correctable)"], ch["Remapped Rows (Uncorrectable)"]) == (3, 2)
    assert (ch["Row Remap Pending"], ch["Row Remap Failure"], ch["Recovery Action"]) == (1, 1, 1)
    assert ch["Throttle Reason"] == 8 and ch["GPU Health"] == 2 and ch["Slowdown Margin"] == -2
    assert result.channel("Slowdown Margin").limit_state() == "error"
    assert "Row remapping FAILED" in result.message()


# -- error tiers -------------------------------------------------------------------------
def test_no_permission_on_processes_is_a_warning_with_a_hint(run_gpu):
    result, _ = run_gpu(scenario("no_permission_processes"))
    assert not result.error and result.warning
    ch = channels(result)
    assert "Processes" not in ch and ch["GPU Utilization"] == 97
    assert "No permission for nvmlDeviceGetComputeRunningProcesses" in result.message()
    assert "hostPID" in result.message()
    assert ch["Idle But Held"] == 0  # still judged, from VRAM in use


@pytest.mark.parametrize("case, words", [
    ("no_driver", "kernel driver is not loaded"),
    ("version_mismatch", "different versions"),
    ("h100_lost", "fallen off the bus"),
])
def test_whole_sensor_errors_carry_a_hint(run_gpu, case, words):
    result, _ = run_gpu(scenario(case))
    assert result.error and words in result.message()


def test_library_not_found(run_gpu):
    result, _ = run_gpu({"init": {"error": "LibraryNotFound"}, "devices": []})
    assert result.error and "Install the NVIDIA driver" in result.message()


def test_nvidia_ml_py_missing(monkeypatch, sensor_run, make_ctx):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    result = sensor_run("gpu", ["--gpu", "0"], make_ctx())
    assert result.error and "pip install nvidia-ml-py" in result.message()


@pytest.mark.parametrize("value, words", [
    ("99", "GPU index 99 does not exist: this host has 8 GPU(s) (indices 0-7"),
    ("GPU-00000000-1111-2222-3333-444444444444", "no GPU with UUID GPU-00000000-1111-2222-3333-444444444444"),
    ("GPU-12345", "neither a GPU index"),
    ("-1", "neither a GPU index"),
    ("MIG-8e3c1f2a-7b45-5c9d-a0e1-3f6b2d4c8a71", "MIG device UUID"),
])
def test_bad_gpu_parameter_names_the_parameter(run_gpu, value, words):
    result, _ = run_gpu(scenario("h100_sxm_load"), "--gpu", value)
    assert result.error
    assert result.message().startswith("Parameter --gpu:") and words in result.message()


def test_gpu_by_uuid(run_gpu):
    scen = scenario("h100_sxm_load")
    uuid = scen["devices"][3]["nvmlDeviceGetUUID"]
    result, _ = run_gpu(scen, "--gpu", uuid)
    assert "(GPU 3, 00000000:5D:00.0)" in result.text
    assert channels(result)["ECC Corrected (Aggregate)"] == 2


def test_index_now_pointing_at_another_gpu_restarts_rates(run_gpu, clock):
    scen = scenario("h100_sxm_load")
    run_gpu(scen)
    scen["devices"][0], scen["devices"][1] = scen["devices"][1], scen["devices"][0]
    clock.advance(60)
    result, _ = run_gpu(scen)
    assert "rates restart" in result.message()
    assert "Energy Since Last Scan" not in channels(result)


# -- whole process, as PRTG runs it ------------------------------------------------------
def shim_env(tmp_path: Path, scenario_path: Path) -> dict:
    env = cli_env(tmp_path / "state", {"PRTG_AI_FAKE_NVML": str(scenario_path)})
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests" / "fakes" / "shim"), env.get("PYTHONPATH", "")])
    return env


def test_cli_run_gpu_on_the_fake(tmp_path):
    log = tmp_path / "kmsg"
    log.write_text("")
    doc, proc = run_cli(["run", "gpu", "--gpu", "1", "--xid-log", log], shim_env(tmp_path, H100 / "nvml.json"))
    values = channels(doc)
    assert values["GPU Utilization"] == 96 and values["Temperature"] == 63
    assert "(GPU 1, 00000000:2A:00.0)" in doc["prtg"]["text"]


@pytest.mark.parametrize("value, words", [
    ("99", "GPU index 99 does not exist"),
    ("GPU-deadbeef-0000-0000-0000-000000000000", "no GPU with UUID"),
    ("gpu0", "neither a GPU index"),
])
def test_cli_bad_gpu_exits_0_with_a_clear_error(tmp_path, value, words):
    doc, proc = run_cli(["run", "gpu", "--gpu", value, "--xid-log", tmp_path / "none"],
                        shim_env(tmp_path, H100 / "nvml.json"))
    assert doc["prtg"]["error"] == 1 and words in doc["prtg"]["text"]


def test_cli_no_driver_exits_0_with_a_hint(tmp_path):
    doc, _ = run_cli(["run", "gpu", "--format", "prtg"],
                     shim_env(tmp_path, TESTCASES / "gpu" / "no_driver" / "nvml.json"))
    assert doc["prtg"]["error"] == 1 and "modprobe nvidia" in doc["prtg"]["text"]


@pytest.mark.parametrize("sensor", ["gpu", "gpu_host"])
def test_gpu_sensors_never_import_boto3_or_requests(tmp_path, sensor):
    code = ("import sys, runpy; sys.argv=['prtg-ai','run','" + sensor + "','--xid-log','" + str(tmp_path / "k") + "'];"
            "from prtg_ai.cli import main; main(sys.argv[1:]);"
            "bad=[m for m in ('boto3','botocore','requests') if m in sys.modules];"
            "print('IMPORTED', bad, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=shim_env(tmp_path, H100 / "nvml.json"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "IMPORTED []" in proc.stderr, proc.stderr
    assert json.loads(proc.stdout)["prtg"]["result"]


# Run in a fresh interpreter: every ``import pynvml`` (statement or importlib) is traced to the
# pack module that asked for it, while every module of the pack is imported and both GPU sensors
# scan the NVML fake.
_WHO_IMPORTS_PYNVML = r"""
import builtins, importlib, pkgutil, sys
askers = set()

def _asker(depth):
    frame = sys._getframe(depth)
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in ("importlib", "builtins"):
        frame = frame.f_back
    return frame.f_globals.get("__name__") if frame is not None else None

_import, _import_module = builtins.__import__, importlib.import_module

def traced_import(name, *args, **kwargs):
    if name.split(".")[0] == "pynvml":
        askers.add(_asker(2))
    return _import(name, *args, **kwargs)

def traced_import_module(name, *args, **kwargs):
    if name.split(".")[0] == "pynvml":
        askers.add(_asker(2))
    return _import_module(name, *args, **kwargs)

builtins.__import__, importlib.import_module = traced_import, traced_import_module
import prtg_ai
for mod in pkgutil.walk_packages(prtg_ai.__path__, "prtg_ai."):
    importlib.import_module(mod.name)
from prtg_ai.core.context import Context
from prtg_ai.core.runtime import run_sensor
for sensor in ("gpu", "gpu_host"):
    result = run_sensor(sensor, ["--xid-log", sys.argv[1]], Context(state_dir=sys.argv[2]))
    assert not result.error, result.message()
print(sorted(a for a in askers if a and a.startswith("prtg_ai")))
"""


def test_pynvml_is_imported_only_by_the_nvml_backend(tmp_path):
    (tmp_path / "kmsg").write_text("")
    proc = subprocess.run([sys.executable, "-c", _WHO_IMPORTS_PYNVML, str(tmp_path / "kmsg"), str(tmp_path / "state")],
                          capture_output=True, text=True, env=shim_env(tmp_path, H100 / "nvml.json"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['prtg_ai.backends.nvml']"
