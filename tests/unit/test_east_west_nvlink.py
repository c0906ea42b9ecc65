"""east_west's NVLink totals from NVML field values, through the scenario fake."""

from __future__ import annotations

import shutil

import pytest

from fakes import nvml_fake
from fakes.gpu_cases import TESTCASES
from support import channels

FIXTURE = TESTCASES / "east_west" / "ndr_8port"
H100X8 = TESTCASES / "gpu_host" / "h100x8_load" / "nvml.json"


@pytest.fixture
def roots(tmp_path):
    proc = tmp_path / "proc"
    shutil.copytree(FIXTURE / "proc", proc)
    (proc / "driver" / "nvidia").mkdir(parents=True)
    (proc / "driver" / "nvidia" / "version").write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module 570.86.15\n")
    return FIXTURE / "sys", proc


def test_nvlink_rates_summed_over_gpus(roots, monkeypatch, sensor_run, make_ctx, clock):
    scenario = nvml_fake.load_scenario(H100X8)
    fake = nvml_fake.install(monkeypatch, scenario)
    ctx = make_ctx(sys_root=roots[0], proc_root=roots[1])
    first = sensor_run("east_west", [], ctx)
    assert "NVLink TX" not in channels(first)  # first scan: baseline
    clock.advance(60)
    fake.advance(60)
    second = sensor_run("east_west", [], ctx)
    per_second = [d["per_second"] for d in scenario["devices"]]
    expected_tx = sum(p["fields.138@4294967295"] for p in per_second) * 1024
    expected_rx = sum(p["fields.139@4294967295"] for p in per_second) * 1024
    ch = channels(second)
    assert ch["NVLink TX"] == pytest.approx(expected_tx, rel=1e-6)
    assert ch["NVLink RX"] == pytest.approx(expected_rx, rel=1e-6)
    assert "NVLink (8 GPU(s))" in second.message()
    assert len(second.channels) <= 50


def test_a_gpu_that_misses_a_scan_never_fakes_a_jump(roots, monkeypatch, sensor_run, make_ctx, clock):
    scenario = nvml_fake.load_scenario(H100X8)
    fake = nvml_fake.install(monkeypatch, scenario)
    ctx = make_ctx(sys_root=roots[0], proc_root=roots[1])
    sensor_run("east_west", [], ctx)
    fake.devices[3]["lost"] = True
    clock.advance(60)
    fake.advance(60)
    second = sensor_run("east_west", [], ctx)
    assert "did not answer" in second.message()
    fake.devices[3]["lost"] = False
    clock.advance(60)
    fake.advance(60)
    third = sensor_run("east_west", [], ctx)
    per_gpu = scenario["devices"][0]["per_second"]["fields.138@4294967295"] * 1024
    # GPU 3 was absent from the previous scan: it is left out of this rate, not counted twice.
    assert channels(third)["NVLink TX"] == pytest.approx(per_gpu * 7, rel=1e-6)


def test_hosts_without_an_nvidia_driver_never_load_nvml(monkeypatch, sensor_run, make_ctx, clock):
    import sys

    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # any import attempt would raise ImportError
    ctx = make_ctx(sys_root=FIXTURE / "sys", proc_root=FIXTURE / "proc")
    result = sensor_run("east_west", [], ctx)
    assert not result.error and "NVLink" not in result.message()
    forced = sensor_run("east_west", ["--nvlink", "on"], ctx)
    assert forced.error and "nvidia-ml-py is not installed" in forced.message()


def test_nvlink_counts_when_nvml_does_not_answer_the_link_count(roots, monkeypatch, sensor_run, make_ctx, clock):
    scenario = nvml_fake.load_scenario(H100X8)
    for dev in scenario["devices"]:
        dev["fields"]["91"] = {"error": "NotSupported"}
    scenario["devices"][1]["fields"]["91"] = 0  # this one says it has no links: left out
    fake = nvml_fake.install(monkeypatch, scenario)
    ctx = make_ctx(sys_root=roots[0], proc_root=roots[1])
    sensor_run("east_west", [], ctx)
    clock.advance(60)
    fake.advance(60)
    ch = channels(sensor_run("east_west", [], ctx))
    per_second = [d["per_second"]["fields.138@4294967295"] for i, d in enumerate(scenario["devices"]) if i != 1]
    assert ch["NVLink TX"] == pytest.approx(sum(per_second) * 1024, rel=1e-6)
