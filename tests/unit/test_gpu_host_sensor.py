"""The ``gpu_host`` roll-up against the NVML fake."""

from __future__ import annotations

import pytest

from fakes import nvml_fake
from fakes.gpu_cases import TESTCASES, case_dirs, check_expectations, run_two_scans
from support import channels


def scenario(case: str) -> dict:
    return nvml_fake.load_scenario(TESTCASES / "gpu_host" / case / "nvml.json")


@pytest.fixture
def run_host(monkeypatch, sensor_run, make_ctx, tmp_path):
    holder = {}

    def _run(scen: dict, *args: str, xid_log=None, limits=None):
        fake = nvml_fake.install(monkeypatch, scen)
        holder.setdefault("ctx", make_ctx(proc_root=tmp_path / "proc"))
        log = xid_log or tmp_path / "empty-kmsg"
        if xid_log is None:
            log.touch()
        return sensor_run("gpu_host", [*args, "--xid-log", log], holder["ctx"], limits=limits), fake
    return _run


@pytest.mark.parametrize("case", case_dirs("gpu_host"), ids=lambda p: p.name)
def test_case_meets_its_expectations(case, tmp_path, monkeypatch, sensor_run, make_ctx, clock):
    fake, first, second = run_two_scans("gpu_host", case, tmp_path, monkeypatch, sensor_run, make_ctx, clock)
    check_expectations(case, second)
    assert len(second.channels) <= 50


def test_roll_up_of_eight_h100s(run_host):
    scen = scenario("h100x8_load")
    result, _ = run_host(scen)
    ch = channels(result)
    utils = [97, 96, 98, 95, 97, 99, 94, 96]
    assert (ch["GPUs"], ch["GPU Count Change"], ch["Lost GPUs"], ch["Worst Health"]) == (8, 0, 0, 0)
    assert ch["Max Temperature"] == 65 and ch["Min Slowdown Margin"] == 87 - 65
    assert ch["Total Power"] == round((612345 + 598120 + 640002 + 587300 + 622110 + 655400 + 571900 + 604800) / 1000, 3)
    assert ch["Mean Utilization"] == round(sum(utils) / 8, 2) and ch["Min Utilization"] == 94
    assert ch["Idle GPUs"] == 0 and ch["Idle-Held GPUs"] == 0 and ch["Throttled GPUs"] == 0
    v2 = [d["nvmlDeviceGetMemoryInfo:v2"] for d in scen["devices"]]
    assert ch["Total VRAM Used %"] == round(100 * sum(m["used"] for m in v2) / sum(m["total"] - m["reserved"] for m in v2), 2)
    assert ch["Max VRAM Used %"] == 91.4
    assert [ch[f"GPU {i} Utilization"] for i in range(8)] == utils
    assert ch["GPU 7 VRAM Used %"] == 91.4
    assert len(result.channels) == 17 + 16  # roll-ups + Execution Time, then two per GPU
    assert "Driver 550.54.15, CUDA 12.4, NVML 12.550.54.15" in result.message()


def test_a_lost_gpu_is_counted_not_fatal(run_host, tmp_path, clock):
    log = tmp_path / "kmsg"
    log.write_text("")
    run_host(scenario("h100x8_load"), xid_log=log)
    log.write_text("3,2201,901223344,-;NVRM: Xid (PCI:0000:AB:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n")
    clock.advance(60)
    result, _ = run_host(scenario("h100x8_one_lost"), xid_log=log)
    ch = channels(result)
    assert not result.error
    assert (ch["GPUs"], ch["Lost GPUs"], ch["Worst Health"], ch["XID Errors"]) == (8, 1, 3, 1)
    assert "GPU 5 Utilization" not in ch and ch["GPU 4 Utilization"] == 97 and ch["GPU 6 Utilization"] == 94
    assert ch["Idle GPUs"] == 1 and ch["Min Utilization"] == 0  # GPU 2 went to 0 % in this case
    assert result.channel("Lost GPUs").limit_state() == "error"
    assert "GPU 5 stopped answering NVML (GPU is lost in nvmlDeviceGetUUID)" in result.message()


def test_gpu_count_change_and_expected_gpus(run_host, clock):
    scen = scenario("h100x8_load")
    expected = {"gpus": {"limitminerror": 8}}  # --expected-gpus 8: a lower error limit on GPUs
    run_host(scen, "--expected-gpus", "8", limits=expected)
    scen["devices"].pop()
    clock.advance(60)
    result, _ = run_host(scen, "--expected-gpus", "8", limits=expected)
    ch = channels(result)
    assert (ch["GPUs"], ch["GPU Count Change"]) == (7, -1)
    assert result.channel("GPUs").limitminerror == 8 and result.channel("GPUs").limit_state() == "error"
    assert result.channel("GPU Count Change").limit_state() == "error"
    assert "1 GPU(s) disappeared" in result.message()


def test_idle_and_idle_held_gpus(run_host, clock):
    scen = scenario("h100x8_load")
    for i in (1, 4):
        scen["devices"][i]["nvmlDeviceGetUtilizationRates"] = {"gpu": 0, "memory": 0}
    scen["devices"][4]["nvmlDeviceGetComputeRunningProcesses"] = []
    for minute in range(31):
        result, _ = run_host(scen)
        clock.advance(60)
    ch = channels(result)
    assert (ch["Idle GPUs"], ch["Idle-Held GPUs"]) == (2, 1)  # GPU 4 is idle but holds nothing
    assert result.channel("Idle-Held GPUs").limit_state() == "warning"
    assert "Idle but held (VRAM held, no work, for 30 min): GPU 1" in result.message()


def test_large_hosts_stay_within_50_channels(run_host):
    result, _ = run_host(scenario("synthetic_24gpu"))
    ch = channels(result)
    # 16 roll-ups + Execution Time leave 33 slots: two per GPU for GPUs 0-15 (a prefix, never a gap).
    assert len(result.channels) == 49
    assert ch["GPUs"] == 24 and "GPU 15 Utilization" in ch and "GPU 16 Utilization" not in ch
    assert ch["Mean Utilization"] == round(sum(50 + i for i in range(24)) / 24, 2)  # roll-ups cover all 24
    assert "GPU 16-23 appear in the roll-ups only" in result.message()


def test_throttled_and_unhealthy_gpu_drive_the_worst_health(run_host, clock):
    scen = scenario("h100x8_load")
    scen["devices"][6]["nvmlDeviceGetCurrentClocksEventReasons"] = 0x40
    scen["devices"][6]["nvmlDeviceGetRemappedRows"] = [0, 1, 1, 0]
    result, _ = run_host(scen)
    ch = channels(result)
    assert ch["Worst Health"] == 2 and ch["Throttled GPUs"] == 1
    assert "GPU 6: hardware clock slowdown; row remap pending" in result.message()


def test_mig_gpus_are_left_out_of_utilisation(run_host):
    a100 = nvml_fake.load_scenario(TESTCASES / "gpu" / "a100_mig" / "nvml.json")
    scen = scenario("h100x8_load")
    scen["devices"] = scen["devices"][:2] + a100["devices"]
    result, _ = run_host(scen)
    ch = channels(result)
    assert ch["GPUs"] == 3 and ch["Mean Utilization"] == 96.5 and "GPU 2 Utilization" not in ch
    assert "GPU 2 VRAM Used %" in ch
    assert "MIG GPUs have no utilisation" in result.message()


def test_no_driver_is_a_whole_sensor_error(run_host):
    result, _ = run_host(scenario("no_driver"))
    assert result.error and "libnvidia-ml.so.1" in result.message()


@pytest.mark.parametrize("case", ["h100_thermal_remap_failure", "a100_ecc_remap_pending", "rtx3090_consumer"])
def test_gpu_and_gpu_host_give_one_gpu_the_same_verdict(case, tmp_path, monkeypatch, sensor_run, make_ctx, clock):
    """Both sensors judge a GPU with evaluate.evaluate: same health, reasons, throttle and XIDs."""
    folder = TESTCASES / "gpu" / case
    log = tmp_path / "kmsg"
    log.write_text("")
    nvml_fake.install(monkeypatch, nvml_fake.load_scenario(folder / "nvml.json"))
    ctx = make_ctx(proc_root=tmp_path / "proc")
    for sensor in ("gpu", "gpu_host"):
        sensor_run(sensor, ["--xid-log", log], ctx)  # baselines: XID cursor, power-cap bit
    clock.advance(60)
    log.write_text((folder / "kmsg.txt").read_text())
    one, host = (sensor_run(sensor, ["--xid-log", log], ctx) for sensor in ("gpu", "gpu_host"))
    single, roll = channels(one), channels(host)
    # (health, throttle) by hand: 0x64 = SW cap + SW thermal + HW thermal -> 8, Error; remap pending,
    # 1 uncorrected ECC, XIDs 94/63 -> Warning; SW power cap at both scans -> 5 (sustained), Warning
    expected = {"h100_thermal_remap_failure": (2, 8), "a100_ecc_remap_pending": (1, 0), "rtx3090_consumer": (1, 5)}
    assert (single["GPU Health"], single["Throttle Reason"]) == expected[case]
    assert roll["Worst Health"] == single["GPU Health"]
    assert roll["Throttled GPUs"] == int(single["Throttle Reason"] >= 5)
    assert roll["XID Errors"] == single["XID Errors"] == len((folder / "kmsg.txt").read_text().splitlines())
    reasons = one.message().split("Health: ")[1].split(". ")[0]
    assert f"GPU 0: {reasons}" in host.message()
