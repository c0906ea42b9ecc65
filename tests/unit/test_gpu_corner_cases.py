"""GPU corner cases from real hosts: short idle windows, NVLink without a link count,
who holds the VRAM, XIDs that happened just before the first scan, XID 79's name."""

from __future__ import annotations

import pytest

from fakes import nvml_fake
from fakes.gpu_cases import TESTCASES
from prtg_ai.backends import procinfo
from prtg_ai.gpu.health import IDLE_HELD, IDLE_HELD_SHORT, idle_held_step, xid_text
from support import channels

CONTAINER = "4f9c6d1e2b3a" + "0" * 52  # 64 hex digits, as runc names containers
POD = "1a2b3c4d-5e6f-4a1b-9c8d-0123456789ab"


def scenario(sensor: str, case: str) -> dict:
    return nvml_fake.load_scenario(TESTCASES / sensor / case / "nvml.json")


@pytest.fixture
def run(monkeypatch, sensor_run, make_ctx, tmp_path):
    """run(sensor, scenario, *args, log_text=None) on one context (proc root tmp_path/proc)."""
    holder = {}

    def _run(sensor: str, scen: dict, *args: str, log_text: str | None = None):
        nvml_fake.install(monkeypatch, scen)
        holder.setdefault("ctx", make_ctx(proc_root=tmp_path / "proc"))
        log = tmp_path / "kmsg"
        if log_text is not None or not log.exists():
            log.write_text(log_text or "")
        return sensor_run(sensor, [*args, "--xid-log", log], holder["ctx"])
    return _run


# -- idle but held with a window at or below the scan interval ------------------------------

@pytest.mark.parametrize("interval", [60, 61, 300])
def test_idle_held_fires_when_the_window_is_not_longer_than_the_scan_interval(run, clock, interval):
    scen = scenario("gpu", "idle_held")
    first = run("gpu", scen, "--idle-window", "1m")
    assert channels(first)["Idle But Held"] == IDLE_HELD_SHORT
    clock.advance(interval)
    second = run("gpu", scen, "--idle-window", "1m")
    assert channels(second)["Idle But Held"] == IDLE_HELD
    assert channels(second)["Idle-Held Time"] == round(interval / 60, 2)


def test_a_long_unwatched_gap_still_restarts_the_stretch():
    step = idle_held_step(0.0, 0, True, 5, 1800, None, None)
    step = idle_held_step(7200.0, 0, True, 5, 1800, step.since, 0.0)  # 2 h without a scan
    assert (step.state, step.held_seconds) == (IDLE_HELD_SHORT, 0.0)


# -- NVLink when NVML does not answer the link count -----------------------------------------

def test_nvlink_channels_from_the_counters_when_the_link_count_is_not_answered(run, clock):
    scen = scenario("gpu", "h100_sxm_load")
    scen["devices"][0]["fields"]["91"] = {"error": "NotSupported"}
    first = run("gpu", scen)
    assert "NVML did not answer the NVLink link count" in first.message()
    scen["devices"][0]["fields"]["138@4294967295"] += 58_593_750  # KiB in 60 s -> 1000 MB/s
    clock.advance(60)
    ch = channels(run("gpu", scen))
    assert ch["NVLink TX"] == 1000.0 and ch["NVLink RX"] == 0.0


def test_zero_links_still_means_no_nvlink(run, clock):
    scen = scenario("gpu", "h100_sxm_load")
    scen["devices"][0]["fields"]["91"] = 0
    run("gpu", scen)
    clock.advance(60)
    result = run("gpu", scen)
    assert "NVLink TX" not in channels(result) and "link count" not in result.message()


# -- who holds the VRAM ----------------------------------------------------------------------

def test_top_vram_holders_are_named_with_pid_size_and_pod(run, tmp_path):
    proc = tmp_path / "proc" / "41872"
    proc.mkdir(parents=True)
    (proc / "comm").write_text("python3\n")
    (proc / "cgroup").write_text(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        f"{POD.replace('-', '_')}.slice/cri-containerd-{CONTAINER}.scope\n")
    result = run("gpu", scenario("gpu", "h100_sxm_load"))
    gib = channels(result)["Process VRAM"] / 2**30
    assert (f"Top VRAM: python3 (PID 41872, {gib:.1f} GiB, pod {POD}, container 4f9c6d1e2b3a)"
            in result.message())


def test_gpu_host_names_the_biggest_holders_across_gpus_bounded(run):
    result = run("gpu_host", scenario("gpu_host", "h100x8_load"))
    note = next(n for n in result.notes if n.startswith("Top VRAM: "))
    assert note.count("PID ") == 3 and note.endswith("more")


@pytest.mark.parametrize("text,expected", [
    (f"12:memory:/docker/{CONTAINER}\n", "container 4f9c6d1e2b3a"),
    (f"0::/system.slice/docker-{CONTAINER}.scope\n", "container 4f9c6d1e2b3a"),
    (f"11:cpu,cpuacct:/kubepods/burstable/pod{POD}/{CONTAINER}\n", f"pod {POD}, container 4f9c6d1e2b3a"),
    ("0::/user.slice/user-1000.slice/session-3.scope\n", None),
])
def test_container_and_pod_from_cgroup(text, expected):
    assert procinfo.container_of(text) == expected


def test_process_names_are_cleaned_and_capped():
    assert procinfo.clean("evil\x1b[31mname" + "x" * 50) == ("evil?[31mname" + "x" * 50)[:32]


# -- XIDs already in the log at the first scan ------------------------------------------------

XID79 = "3,2201,{usec},-;NVRM: Xid (PCI:0000:18:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n"


def test_an_xid_79_ten_minutes_before_the_first_scan_is_reported(run, tmp_path):
    (tmp_path / "proc").mkdir(exist_ok=True)
    (tmp_path / "proc" / "uptime").write_text("1000.00 7000.00\n")
    # 400 s after boot, the first scan at 1000 s: 10 minutes ago, within --xid-hold (1 h)
    result = run("gpu", scenario("gpu", "h100_sxm_load"), log_text=XID79.format(usec=400_000_000))
    ch = channels(result)
    assert (ch["Last XID"], ch["XID Severity"]) == (79, 5)
    assert ch["XID Errors"] == 0  # none since a previous scan: there was none
    assert "Within --xid-hold before the first scan: XID 79: GPU fell off the bus 10m ago" in result.message()
    assert "Health: XID 79: GPU fell off the bus" in result.message()


def test_an_old_xid_before_the_first_scan_stays_a_baseline(run, tmp_path):
    (tmp_path / "proc").mkdir(exist_ok=True)
    (tmp_path / "proc" / "uptime").write_text("10000.00 7000.00\n")
    result = run("gpu", scenario("gpu", "h100_sxm_load"), log_text=XID79.format(usec=100_000_000))
    ch = channels(result)
    assert (ch["Last XID"], ch["XID Severity"]) == (0, 0)  # 9900 s ago, beyond --xid-hold
    assert "1 earlier XID(s) in the log since boot, last 79" in result.message()


def test_gpu_host_names_xid_79(run, tmp_path):
    (tmp_path / "proc").mkdir(exist_ok=True)
    (tmp_path / "proc" / "uptime").write_text("1000.00 7000.00\n")
    result = run("gpu_host", scenario("gpu_host", "h100x8_load"), log_text=XID79.format(usec=400_000_000))
    assert "GPU 0: XID 79: GPU fell off the bus" in result.message()
    assert "hardware or driver XID" not in result.message()
    assert xid_text(48) == "XID 48: double-bit ECC error" and xid_text(999) == "XID 999: XID: restart or reset advised"
