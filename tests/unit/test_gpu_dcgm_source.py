"""``gpu`` / ``gpu_host --source dcgm``: dcgm-exporter pages captured on real GPUs, served over real
HTTP on 127.0.0.1, give the same channels as the NVML path fed the same quantities.

Each agreement test scripts an NVML scenario BY HAND from the page's numbers (converted:
MiB -> bytes, W -> mW, bytes/s -> KB/s), runs both sources and compares channel by channel.
The captures and the conversions are described in tests/testcases/dcgm/SOURCE.md.
"""

from __future__ import annotations

import pytest

from fakes import nvml_fake
from fakes.inference_server import FakeModelServer
from fakes.gpu_cases import TESTCASES
from support import channels

DCGM = TESTCASES / "dcgm"
MiB = 1024 ** 2


def message(result) -> str:
    return " ".join([result.text, *result.notes])


def page(case: str) -> str:
    return (DCGM / case / "metrics.txt").read_text(encoding="utf-8")


def device(uuid: str, name: str, bus: str, **calls) -> dict:
    dev = {"nvmlDeviceGetUUID": uuid, "nvmlDeviceGetName": name, "nvmlDeviceGetIndex": 0,
           "nvmlDeviceGetPciInfo_v3": {"bus": 0, "busId": bus, "device": 0, "domain": 0, "pciDeviceId": 0,
                                       "pciSubSystemId": 0},
           "nvmlDeviceGetMigMode": [0, 0], "nvmlDeviceGetComputeRunningProcesses": {"error": "NoPermission"},
           "nvmlDeviceGetGraphicsRunningProcesses": {"error": "NoPermission"},
           "nvmlDeviceGetEccMode": {"error": "NotSupported"}}
    dev.update(calls)
    return dev


# By hand from l4_kops/metrics.txt: FB free 22563, used 0, reserved 470 MiB (total = their sum, as
# NVML's memory v2 total is); power 16.365 W; energy 4742776 mJ; PCIe 112603 and 17544 B/s, which
# NVML's integer KB/s reading would give as 110 and 17 (112603/1024 = 109.96, 17544/1024 = 17.13).
L4_NVML = {"system": {"nvmlSystemGetDriverVersion": "580.105.08"}, "devices": [device(
    "GPU-c2f76b33-7953-256e-8f33-1343419b1a1c", "NVIDIA L4", "00000000:31:00.0",
    **{"nvmlDeviceGetUtilizationRates": {"gpu": 0, "memory": 0},
       "nvmlDeviceGetMemoryInfo:v2": {"total": (22563 + 470) * MiB, "reserved": 470 * MiB, "free": 22563 * MiB,
                                      "used": 0},
       "nvmlDeviceGetTemperature:0": 31, "fields": {"82": 0},
       "nvmlDeviceGetPowerUsage": 16365, "nvmlDeviceGetTotalEnergyConsumption": 4742776,
       "nvmlDeviceGetClockInfo:1": 210, "nvmlDeviceGetClockInfo:2": 405,
       "nvmlDeviceGetPcieReplayCounter": 0, "nvmlDeviceGetRemappedRows": [0, 0, 0, 0],
       "nvmlDeviceGetPcieThroughput:0": 110, "nvmlDeviceGetPcieThroughput:1": 17})]}
# By hand from t4_datadog/metrics.txt: FB free 15109, used 0 MiB, no reserved row; power 8.969 W.
T4_NVML = {"system": {"nvmlSystemGetDriverVersion": "460.106.00"}, "devices": [device(
    "GPU-20c56d28-0da5-6d26-a36a-e7af1ce2586e", "Tesla T4", "00000000:00:1E.0",
    **{"nvmlDeviceGetUtilizationRates": {"gpu": 0, "memory": 0},
       "nvmlDeviceGetMemoryInfo:v2": {"total": 15109 * MiB, "reserved": 0, "free": 15109 * MiB, "used": 0},
       "nvmlDeviceGetTemperature:0": 25, "nvmlDeviceGetPowerUsage": 8969,
       "nvmlDeviceGetTotalEnergyConsumption": 128996013,
       "nvmlDeviceGetClockInfo:1": 300, "nvmlDeviceGetClockInfo:2": 405, "nvmlDeviceGetPcieReplayCounter": 0})]}

# What one source has and the other cannot: asserted, so a dropped mapping shows.
ONLY_DCGM = {"l4_kops": {"Tensor Activity"}, "t4_datadog": set()}
ONLY_NVML = {"l4_kops": {"XID Errors", "Last XID", "XID Severity"},
             "t4_datadog": {"XID Errors", "Last XID", "XID Severity"}}
TOLERANCE = {"PCIe TX": 0.001, "PCIe RX": 0.001}  # NVML's KB/s is an integer


@pytest.fixture
def two_sources(monkeypatch, sensor_run, make_ctx, tmp_path, clock):
    def _run(case: str, scenario: dict, sensor: str = "gpu", extra=()):
        log = tmp_path / "kmsg"
        log.write_text("", encoding="utf-8")
        nvml_fake.install(monkeypatch, scenario)
        nv = sensor_run(sensor, ["--xid-log", log, *extra], make_ctx(state_dir=tmp_path / "s1"))
        with FakeModelServer(page=page(case)) as srv:
            dc = sensor_run(sensor, ["--source", "dcgm", "--dcgm-url", srv.url + "/metrics", *extra],
                            make_ctx(state_dir=tmp_path / "s2"))
        return nv, dc
    return _run


@pytest.mark.parametrize("case,scenario", [("l4_kops", L4_NVML), ("t4_datadog", T4_NVML)])
def test_dcgm_channels_agree_with_nvml(case, scenario, two_sources):
    nv, dc = two_sources(case, scenario)
    a, b = channels(nv), channels(dc)
    common = set(a) & set(b) - {"Execution Time"}
    assert len(common) >= 12, sorted(common)
    for name in sorted(common):
        assert b[name] == pytest.approx(a[name], abs=TOLERANCE.get(name, 0)), name
    # XID Errors/Health: NVML reads this host's kernel log; the captures lack DCGM_FI_DEV_XID_ERRORS
    # (L4) or a pci_bus_id label to tie it to a GPU (T4, dcgm-exporter 2.x), so those are omitted.
    assert set(b) - set(a) == ONLY_DCGM[case]
    assert set(a) - set(b) == ONLY_NVML[case], sorted(set(a) - set(b))


def test_l4_numbers_by_hand(two_sources):
    _, dc = two_sources("l4_kops", L4_NVML)
    ch = channels(dc)
    assert ch["VRAM Free"] == 22563 * MiB and ch["VRAM Used"] == 0
    assert ch["VRAM Total"] == (22563 + 470) * MiB
    assert ch["Power Draw"] == 16.365
    assert (ch["Temperature"], ch["SM Clock"], ch["Memory Clock"]) == (31, 210, 405)
    assert ch["PCIe TX"] == round(112603 / 1e6, 3) and ch["PCIe RX"] == round(17544 / 1e6, 3)
    assert ch["Tensor Activity"] == 0.0
    assert "NVIDIA L4" in dc.text and "Source: dcgm-exporter at http://127.0.0.1:" in message(dc)
    assert "DCGM_FI_DEV_XID_ERRORS" in message(dc)  # named as missing from the page


def test_mig_instances_from_gpu_instance_labels(monkeypatch, sensor_run, make_ctx, tmp_path):
    """A30 with four 1g.6gb instances (dcgm-exporter#317): per-instance VRAM as NVML names it."""
    with FakeModelServer(page=page("a30_mig")) as srv:
        res = sensor_run("gpu", ["--source", "dcgm", "--dcgm-url", srv.url + "/metrics", "--gpu", "0"])
        host = sensor_run("gpu_host", ["--source", "dcgm", "--dcgm-url", srv.url + "/metrics"],
                          make_ctx(state_dir=tmp_path / "host"))
    ch = channels(res)
    # used 3 MiB of (3 + 6012) MiB in each instance, by hand: 100 * 3 / 6015 = 0.0499 -> 0.05
    for gi in (3, 4, 5, 6):
        assert ch[f"MIG GI{gi} CI0 VRAM Used"] == 0.05
    assert ch["MIG Mode"] == 1 and "GPU Utilization" not in ch
    assert ch["VRAM Used"] == 4 * 3 * MiB and ch["VRAM Free"] == 4 * 6012 * MiB
    hc = channels(host)
    assert hc["GPUs"] == 2 and "Mean Utilization" not in hc
    # GPU 0: 12 MiB of 24060; GPU 1: 3 of 6015 -> total 15 / 30075 MiB = 0.0499 %
    assert hc["Total VRAM Used %"] == round(100 * 15 / 30075, 2)


def test_mig_agrees_with_nvml_mig_scenario(monkeypatch, sensor_run, make_ctx, tmp_path):
    inst = {"nvmlDeviceGetComputeInstanceId": 0, "nvmlDeviceGetUUID": "MIG-x",
            "nvmlDeviceGetMemoryInfo:v2": {"total": 6015 * MiB, "reserved": 0, "free": 6012 * MiB, "used": 3 * MiB}}
    dev = device("GPU-265c9814-6156-355b-e589-ff2064894f16", "NVIDIA A30", "00000000:17:00.0",
                 **{"nvmlDeviceGetMigMode": [1, 1], "nvmlDeviceGetMaxMigDeviceCount": 4,
                    "mig": {str(i): dict(inst, nvmlDeviceGetGpuInstanceId=gi) for i, gi in enumerate((3, 4, 5, 6))},
                    "nvmlDeviceGetMemoryInfo:v2": {"total": 4 * 6015 * MiB, "reserved": 0, "free": 4 * 6012 * MiB,
                                                   "used": 4 * 3 * MiB}})
    log = tmp_path / "kmsg"
    log.write_text("")
    nvml_fake.install(monkeypatch, {"system": {}, "devices": [dev]})
    nv = channels(sensor_run("gpu", ["--xid-log", log], make_ctx(state_dir=tmp_path / "a")))
    with FakeModelServer(page=page("a30_mig")) as srv:
        dc = channels(sensor_run("gpu", ["--source", "dcgm", "--dcgm-url", srv.url + "/metrics"],
                                 make_ctx(state_dir=tmp_path / "b")))
    mig = {k for k in nv if k.startswith("MIG ")}
    assert len(mig) == 5  # MIG Mode + four instances
    for name in mig | {"VRAM Used", "VRAM Free", "VRAM Total", "VRAM Used %"}:
        assert dc[name] == nv[name], name


def test_dcgm_xid_gauge_change_is_a_new_xid(sensor_run, make_ctx, clock):
    text = page("l4_kops") + ("# HELP DCGM_FI_DEV_XID_ERRORS Value of the last XID error encountered.\n"
                              "# TYPE DCGM_FI_DEV_XID_ERRORS gauge\n"
                              'DCGM_FI_DEV_XID_ERRORS{gpu="0",UUID="GPU-c2f76b33-7953-256e-8f33-1343419b1a1c",'
                              'pci_bus_id="00000000:31:00.0",device="nvidia0",modelName="NVIDIA L4"} {code}\n')
    ctx = make_ctx()
    with FakeModelServer(page=text.replace("{code}", "13")) as srv:
        argv = ["--source", "dcgm", "--dcgm-url", srv.url + "/metrics"]
        first = channels(sensor_run("gpu", argv, ctx))
        clock.advance(60)
        srv.page = text.replace("{code}", "79")
        second = sensor_run("gpu", argv, ctx)
    assert first["XID Errors"] == 0  # the first scan sets the baseline
    ch = channels(second)
    assert ch["XID Errors"] == 1 and ch["Last XID"] == 79


def test_pods_named_from_dcgm_labels_when_idle_but_held(sensor_run, make_ctx, clock):
    """dcgm-exporter's Kubernetes mapping labels (namespace/pod/container) name the holder."""
    text = page("l4_kops").replace('DCGM_FI_DRIVER_VERSION="580.105.08"}',
                                   'DCGM_FI_DRIVER_VERSION="580.105.08",container="main",namespace="ml",'
                                   'pod="notebook-7f9c"}')
    # A notebook holding 20000 MiB (taken from the free memory) while the GPU does nothing.
    text = text.replace('"notebook-7f9c"} 0\n# HELP DCGM_FI_DEV_FB_RESERVED', '"notebook-7f9c"} 20000\n# HELP DCGM_FI_DEV_FB_RESERVED')
    text = text.replace('"notebook-7f9c"} 22563\n', '"notebook-7f9c"} 2563\n')
    ctx = make_ctx()
    with FakeModelServer(page=text) as srv:
        argv = ["--source", "dcgm", "--dcgm-url", srv.url + "/metrics", "--idle-window", "60s"]
        for _ in range(2):
            sensor_run("gpu", argv, ctx)
            sensor_run("gpu_host", argv, ctx)
            clock.advance(50)
        res = sensor_run("gpu", argv, ctx)
        host = sensor_run("gpu_host", argv, ctx)
    assert channels(res)["VRAM Used"] == 20000 * MiB
    assert "VRAM is held by ml/notebook-7f9c" in message(res)
    assert "GPU 0 (ml/notebook-7f9c)" in message(host)


@pytest.mark.parametrize("argv,expected", [
    (["--source", "dcgm"], "Parameter --dcgm-url: is required"),
    (["--source", "dcgm", "--dcgm-url", "ftp://x/metrics"], "Parameter --dcgm-url"),
    (["--source", "dcgm", "--dcgm-url", "http://user:pw@127.0.0.1:9/metrics"], "credentials"),
])
def test_bad_dcgm_parameters_name_the_parameter(argv, expected, sensor_run):
    res = sensor_run("gpu", argv)
    assert res.error and expected in res.text


def test_dcgm_faults_are_prtg_errors(sensor_run, make_ctx, tmp_path):
    with FakeModelServer(page="<html>not metrics</html>") as srv:
        bad = sensor_run("gpu_host", ["--source", "dcgm", "--dcgm-url", srv.url + "/metrics"])
    assert bad.error and ("not a Prometheus metrics page" in bad.text or "lists no GPU" in bad.text)
    with FakeModelServer(page="# HELP up x\n# TYPE up gauge\nup 1\n") as srv:
        empty = sensor_run("gpu_host", ["--source", "dcgm", "--dcgm-url", srv.url + "/metrics"],
                           make_ctx(state_dir=tmp_path / "e"))
    assert empty.error and "lists no GPU" in empty.text
    with FakeModelServer(page=page("l4_kops")) as srv:
        port = srv.url.rsplit(":", 1)[1]
    gone = sensor_run("gpu", ["--source", "dcgm", "--dcgm-url", f"http://127.0.0.1:{port}/metrics"],
                      make_ctx(state_dir=tmp_path / "g"))
    assert gone.error and "refused" in gone.text
    with FakeModelServer(page=page("l4_kops")) as srv:
        missing = sensor_run("gpu", ["--source", "dcgm", "--dcgm-url", srv.url + "/metrics", "--gpu", "3"],
                             make_ctx(state_dir=tmp_path / "m"))
    assert missing.error and "Parameter --gpu" in missing.text and "lists GPU 0" in missing.text


@pytest.mark.parametrize("case,scenario", [("l4_kops", L4_NVML), ("t4_datadog", T4_NVML)])
def test_gpu_host_rollups_agree_with_nvml(case, scenario, two_sources):
    nv, dc = two_sources(case, scenario, sensor="gpu_host")
    a, b = channels(nv), channels(dc)
    common = set(a) & set(b) - {"Execution Time"}
    assert {"GPUs", "Total Power", "Max Temperature", "Total VRAM Used %", "GPU 0 Utilization"} <= common
    for name in sorted(common):
        assert b[name] == a[name], name
    assert set(a) - set(b) == {"XID Errors"} and set(b) - set(a) == set()


def test_limits_pstate_and_throttle_reasons_agree_with_nvml(two_sources):
    """T4 on driver 470: power limit 70 W, P8, clock-event mask 1 (GPU idle), slowdown at 93 C."""
    scenario = {"system": {}, "devices": [device(
        "GPU-9ef1b6d0-3643-5dd7-b823-c0ec20dcf2d5", "Tesla T4", "00000000:00:1E.0",
        **{"nvmlDeviceGetEnforcedPowerLimit": 70000, "nvmlDeviceGetPerformanceState": 8,
           "nvmlDeviceGetCurrentClocksEventReasons": 1, "nvmlDeviceGetTemperatureThreshold:1": 93})]}
    nv, dc = two_sources("t4_datadog_470", scenario)
    a, b = channels(nv), channels(dc)
    for name in ("Power Limit", "Performance State", "Throttle Reason", "GPU Health", "MIG Mode"):
        assert b[name] == a[name], name
    assert (b["Power Limit"], b["Performance State"]) == (70.0, 8)
    assert "clocks limited by idle" in dc.text and "clocks limited by idle" in nv.text  # mask bit 0
    assert "CUDA 12.1" in message(dc)  # DCGM_FI_CUDA_DRIVER_VERSION="12010"


def test_field_mapping_and_units():
    """The mapping table on a synthetic page: ECC, retired pages, legacy PCIe KB/s, newer names winning."""
    from prtg_ai.backends import dcgm

    labels = 'gpu="1",UUID="GPU-x",pci_bus_id="00000000:3B:00.0",modelName="NVIDIA A100-SXM4-80GB"'
    rows = {"DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": 5, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": 1, "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL": 50,
            "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL": 2, "DCGM_FI_DEV_RETIRED_SBE": 3, "DCGM_FI_DEV_RETIRED_DBE": 1,
            "DCGM_FI_DEV_RETIRED_PENDING": 1, "DCGM_FI_DEV_PCIE_TX_THROUGHPUT": 2048,
            "DCGM_FI_DEV_PCIE_RX_THROUGHPUT": 1024, "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS": 8,
            "DCGM_FI_DEV_CLOCKS_EVENT_REASONS": 4, "DCGM_FI_DEV_ENFORCED_POWER_LIMIT": 400,
            "DCGM_FI_DEV_POWER_MGMT_LIMIT": 500, "DCGM_FI_PROF_SM_ACTIVE": 0.25, "DCGM_FI_DEV_FAN_SPEED": 30}
    text = "".join(f"{k}{{{labels}}} {v}\n" for k, v in rows.items())
    [gpu] = dcgm.parse(text).gpus
    s = gpu.sample
    assert (s.ecc_corrected_volatile, s.ecc_uncorrected_volatile) == (5, 1)
    assert (s.ecc_corrected_aggregate, s.ecc_uncorrected_aggregate) == (50, 2)
    assert s.retired_pages == 4 and s.retired_pending is True
    assert (s.pcie_tx_kbs, s.pcie_rx_kbs) == (2048, 1024)  # the legacy field is KB/s already
    assert s.clocks_event_reasons == 4  # the newer name wins over CLOCK_THROTTLE_REASONS
    assert s.power_limit_mw == 400_000  # enforced beats the management limit
    assert s.sm_activity == 25.0 and s.fan_speed == 30 and s.index == 1
