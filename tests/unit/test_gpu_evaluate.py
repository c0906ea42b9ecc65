"""The per-GPU evaluation (``prtg_ai.gpu.evaluate``) on hand-made samples: exact verdicts and kept state.

Every expected value here is worked out by hand from nvml.h's clock-event bits, NVIDIA's
Xid catalogue and the lookups in ``catalog/gpu.lookups.csv`` (throttle 4 = SW power cap,
5 = sustained, 8 = HW thermal; XID severity 2 app, 3 reset advised, 5 lost; health 0 Ok,
1 Warning, 2 Error; idle-held 0 in use, 1 free, 2 held within the window, 3 idle but held,
4 unknown).
"""

from __future__ import annotations

import pytest

from prtg_ai.backends.nvml import GpuSample, MemoryInfo, ProcessInfo
from prtg_ai.gpu.evaluate import GpuXids, Kept, Policy, evaluate, idle_devices, kept_from, rates

NOW = 100_000.0
LAST = NOW - 60.0          # the previous scan, one minute ago
GiB = 2**30
POLICY = Policy(idle_util=5.0, idle_window=600.0, xid_hold=3600.0)
HELD = [ProcessInfo(41872, 30 * GiB, "compute")]


def sample(**kw) -> GpuSample:
    base = dict(index=0, uuid="GPU-0", pci_bus_id="00000000:18:00.0", util_gpu=97, clocks_event_reasons=0,
                memory=MemoryInfo(total=80 * GiB, reserved=GiB, free=9 * GiB, used=70 * GiB), processes=HELD,
                mig_enabled=False, temperature=61, margin_temperature=26)
    base.update(kw)
    return GpuSample(**base)


# (id, sample overrides, kept before, xids, last_seen,
#  expected verdict fields, expected kept after)
CASES = [
    ("busy_healthy", {}, Kept(), GpuXids(True), LAST,
     dict(throttle=0, reasons=[], health=0, why=[], idle=False, idle_step=(0, 0.0, None), xid_severity=0,
          xid_held=[], margin=26), Kept(False, None, ())),
    ("power_cap_first_scan", {"clocks_event_reasons": 0x4}, Kept(), GpuXids(True), LAST,
     dict(throttle=4, reasons=["SW power cap"], health=0, why=[], throttled=False), Kept(True, None, ())),
    ("power_cap_sustained", {"clocks_event_reasons": 0x4}, Kept(power_cap=True), GpuXids(True), LAST,
     dict(throttle=5, health=1, why=["clocks held down (sustained power cap or SW thermal)"], throttled=True),
     Kept(True, None, ())),
    ("hw_thermal", {"clocks_event_reasons": 0x64}, Kept(), GpuXids(True), LAST,
     dict(throttle=8, reasons=["SW power cap", "SW thermal slowdown", "HW thermal slowdown"], health=2,
          why=["hardware clock slowdown"], throttled=True), Kept(True, None, ())),
    ("no_clock_reasons", {"clocks_event_reasons": None}, Kept(power_cap=True), GpuXids(True), LAST,
     dict(throttle=None, reasons=[], health=0, throttled=False), Kept(False, None, ())),
    ("xid_new", {}, Kept(), GpuXids(True, new=(94, 63)), LAST,
     dict(xid_new=[94, 63], xid_held=[94, 63], xid_severity=3, xid_code=63, health=1,
          why=["XID 63: ECC page retirement or row remapping recorded"]),
     Kept(False, None, ([NOW, 94], [NOW, 63]))),
    ("xid_held_from_earlier_scan", {}, Kept(xid_recent=([NOW - 1800, 79],)), GpuXids(True), LAST,
     dict(xid_new=[], xid_held=[79], xid_severity=5, xid_code=79, health=2, why=["XID 79: GPU fell off the bus"]),
     Kept(False, None, ([NOW - 1800, 79],))),
    ("xid_past_hold_dropped", {}, Kept(xid_recent=([NOW - 3601, 48], [NOW + 5, 48])), GpuXids(True), LAST,
     dict(xid_held=[], xid_severity=0, xid_code=None, health=0), Kept(False, None, ())),
    ("xid_aged_on_first_scan", {}, Kept(), GpuXids(True, aged=((600.0, 13), (7200.0, 79))), None,
     dict(xid_held=[13], xid_severity=2, xid_code=13, health=1, why=["XID 13: graphics engine exception"]),
     Kept(False, None, ([NOW - 600, 13],))),
    ("xid_source_silent_keeps_history", {}, Kept(xid_recent=([NOW - 60, 48],)), GpuXids(False), LAST,
     dict(xids=False, xid_held=[], xid_severity=0, health=0), Kept(False, None, ([NOW - 60, 48],))),
    ("ecc_uncorrected", {"ecc_uncorrected_volatile": 2}, Kept(), GpuXids(True), LAST,
     dict(health=1, why=["2 uncorrected ECC error(s) since driver load"]), Kept()),
    ("remap_pending_and_failed", {"remap_pending": True, "remap_failure": True}, Kept(), GpuXids(True), LAST,
     dict(health=2, why=["row remapping failed", "row remap pending (reset the GPU)"]), Kept()),
    ("retired_pending", {"retired_pending": True, "retired_pages": 3}, Kept(), GpuXids(True), LAST,
     dict(health=1, why=["page retirement pending (reset the GPU)"]), Kept()),
    ("recovery_action", {"recovery_action": 2}, Kept(), GpuXids(True), LAST,
     dict(health=2, why=["NVML asks for recovery action 2 (node reboot)"]), Kept()),
    ("idle_held_starts", {"util_gpu": 0}, Kept(), GpuXids(True), LAST,
     dict(idle=True, held=True, idle_step=(2, 0.0, NOW), idle_held=False), Kept(False, NOW, ())),
    ("idle_held_for_the_window", {"util_gpu": 3}, Kept(idle_since=NOW - 600), GpuXids(True), LAST,
     dict(idle=True, idle_step=(3, 600.0, NOW - 600), idle_held=True), Kept(False, NOW - 600, ())),
    ("idle_held_unwatched_gap_restarts", {"util_gpu": 0}, Kept(idle_since=NOW - 5000), GpuXids(True), NOW - 1000,
     dict(idle_step=(2, 0.0, NOW), idle_held=False), Kept(False, NOW, ())),
    ("idle_nothing_held", {"util_gpu": 0, "processes": []}, Kept(idle_since=NOW - 600), GpuXids(True), LAST,
     dict(idle=True, held=False, idle_step=(1, 0.0, None)), Kept()),
    ("busy_ends_stretch", {"util_gpu": 6}, Kept(idle_since=NOW - 600), GpuXids(True), LAST,
     dict(idle=False, idle_step=(0, 0.0, None)), Kept()),
    ("mig_has_no_utilisation", {"util_gpu": None, "mig_enabled": True}, Kept(), GpuXids(True), LAST,
     dict(util=None, idle=False, idle_step=(4, 0.0, None), idle_judged=False), Kept()),
    ("no_process_list_vram_held", {"util_gpu": 0, "processes": None}, Kept(), GpuXids(True), LAST,
     dict(held=True, idle_step=(2, 0.0, NOW), idle_judged=True), Kept(False, NOW, ())),
    ("no_process_list_vram_small", {"util_gpu": 0, "processes": None,
                                    "memory": MemoryInfo(total=80 * GiB, reserved=GiB, free=79 * GiB, used=100 * 2**20)},
     Kept(), GpuXids(True), LAST, dict(held=False, idle_step=(1, 0.0, None)), Kept()),
    ("margin_from_threshold", {"margin_temperature": None, "slowdown_threshold": 93, "temperature": 27}, Kept(),
     GpuXids(True), LAST, dict(margin=66), Kept()),
    ("margin_unknown", {"margin_temperature": None, "slowdown_threshold": None}, Kept(), GpuXids(True), LAST,
     dict(margin=None), Kept()),
]


@pytest.mark.parametrize("overrides, before, xids, last_seen, want, want_kept",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_evaluate(overrides, before, xids, last_seen, want, want_kept):
    verdict, kept = evaluate(sample(**overrides), before, now=NOW, last_seen=last_seen, policy=POLICY, xids=xids)
    for name, value in want.items():
        got = getattr(verdict, name)
        if name == "idle_step":
            got = (got.state, got.held_seconds, got.since)
        assert got == value, name
    assert kept == want_kept


def test_evaluate_worst_finding_wins_and_every_reason_is_named():
    s = sample(clocks_event_reasons=0x4, ecc_uncorrected_volatile=1, remap_pending=True, recovery_action=1)
    verdict, _ = evaluate(s, Kept(power_cap=True), now=NOW, last_seen=LAST, policy=POLICY,
                          xids=GpuXids(True, new=(31,)))
    assert verdict.health == 2
    assert verdict.why == ["clocks held down (sustained power cap or SW thermal)", "row remap pending (reset the GPU)",
                           "1 uncorrected ECC error(s) since driver load", "XID 31: GPU memory page fault",
                           "NVML asks for recovery action 1 (GPU reset)"]


def test_xid_history_is_bounded():
    before = Kept(xid_recent=tuple([NOW - 10, 13] for _ in range(199)))
    _, kept = evaluate(sample(), before, now=NOW, last_seen=LAST, policy=POLICY, xids=GpuXids(True, new=(43, 45)))
    assert len(kept.xid_recent) == 200 and kept.xid_recent[-2:] == ([NOW, 43], [NOW, 45])


# -- counters: energy in J and traffic in MB/s since the last scan ----------------------
def test_rates_first_scan_keeps_readings_and_gives_no_values():
    s = sample(energy_mj=5_000_000, pcie_tx_bytes=10**12, nvlink_rx_kib=2**30)
    values, notes, readings = rates(s, {}, None, NOW)
    assert (values, notes) == ({}, [])
    assert readings == {"energy": 5_000_000, "pcie_tx": 10**12, "nvlink_rx": 2**40}


def test_rates_over_one_minute():
    before = {"energy": 5_000_000, "pcie_tx": 10**12, "nvlink_rx": 2**30 * 1024}
    s = sample(energy_mj=5_000_000 + 36_000_000, pcie_tx_bytes=10**12 + 6_000_000_000,
               nvlink_rx_kib=2**30 + 58_593_750, power_limit_mw=700_000)
    values, notes, _ = rates(s, before, LAST, NOW)
    # 36 000 000 mJ = 36 000 J; 6e9 B / 60 s = 100 MB/s; 58 593 750 KiB * 1024 / 60 s = 1000 MB/s
    assert values == {"energy": 36000.0, "pcie_tx": 100.0, "nvlink_rx": 1000.0} and notes == []


def test_rates_reset_gives_a_note_not_a_negative():
    values, notes, readings = rates(sample(energy_mj=5_000), {"energy": 9_000_000}, LAST, NOW)
    assert values == {} and readings == {"energy": 5_000}
    assert len(notes) == 1 and notes[0].startswith("The energy counter gave no value this scan (") and "reset" in notes[0]


@pytest.mark.parametrize("power_cap, since, recent, want", [
    (True, 5.0, [[1.0, 79], "x", [1, 2, 3], [True, 79], [2, "79"]], Kept(True, 5.0, ([1.0, 79],))),
    ("yes", "noon", {"a": 1}, Kept(False, None, ())),
    (None, None, None, Kept()),
])
def test_kept_from_a_state_file(power_cap, since, recent, want):
    assert kept_from(power_cap, since, recent) == want


def test_rates_and_verdict_forget_a_malformed_state():
    s = sample(util_gpu=0, energy_mj=5_000)
    values, notes, readings = rates(s, {"energy": "9000"}, "yesterday", NOW)
    assert (values, notes, readings) == ({}, [], {"energy": 5_000})
    verdict, kept = evaluate(s, Kept(idle_since=NOW - 600), now=NOW, last_seen="yesterday", policy=POLICY,
                             xids=GpuXids(True))
    assert (verdict.idle_step.state, kept.idle_since) == (2, NOW)  # unwatched: the stretch restarts


# -- k8s_gpu: allocated devices idle for the window ------------------------------------
def test_idle_devices_for_kubernetes():
    devices = [("GPU-a", "GPU 0", 0, ["ml/train-0"]),     # idle and allocated for 600 s: counts
               ("GPU-b", "GPU 1", 0, ["ml/nb-1"]),        # idle and allocated, stretch starts now
               ("GPU-c", "GPU 2", 88, ["ml/train-2"]),    # busy
               ("GPU-d", "GPU 3", 0, [])]                 # idle but no pod: not "allocated but idle"
    idle, kept = idle_devices(devices, {"GPU-a": NOW - 600, "GPU-c": NOW - 900}, LAST, NOW, POLICY)
    assert idle == [("GPU 0", ["ml/train-0"], 600.0)]
    assert kept == {"GPU-a": NOW - 600, "GPU-b": NOW}


def test_gpu_host_judges_with_the_evaluation_not_with_the_gpu_sensor():
    import subprocess
    import sys

    code = ("import sys, prtg_ai.gpu.gpu_host; "
            "print('prtg_ai.gpu.evaluate' in sys.modules, 'prtg_ai.gpu.gpu' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["True", "False"]
