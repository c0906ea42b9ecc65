"""``gpu``: one NVIDIA GPU in depth (utilisation, VRAM, thermals, power, clocks, throttle
reasons, ECC and row remapping, XIDs, PCIe/NVLink traffic, processes, idle-but-held, MIG).

Reads: NVML through ``prtg_ai.backends.nvml`` (one sweep of the GPU named by ``--gpu``),
and XID lines from the kernel log through ``prtg_ai.backends.xid`` (``/dev/kmsg`` by
default, or ``--xid-log FILE``); or, with ``--source dcgm``, a dcgm-exporter page through
``prtg_ai.gpu.sources`` (same channels, XIDs from DCGM). Keeps per-GPU samples (energy, PCIe/NVLink byte
counters, idle-but-held stretch, XID cursor) in the state folder.

Needs: the NVIDIA driver and nvidia-ml-py. No root, except that reading ``/dev/kmsg``
needs root where ``kernel.dmesg_restrict=1`` (without it the XID channels are omitted
and the message says why), and per-process VRAM inside containers needs the host's
PID namespace (NVML answers NoPermission: a warning, not an outage).

Error tiers: a metric this GPU does not support is omitted (logged once); NoPermission
turns the sensor to Warning with a hint; a lost GPU (XID 79) or a missing driver is a
whole-sensor error with a hint; a bad ``--gpu`` names the parameter.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prtg_ai.gpu import sources as gpu_sources
from prtg_ai.backends import nvml, xid
from prtg_ai.core.params import Param, format_duration
from prtg_ai.core.sensor import Sensor
from prtg_ai.core.state import StateStore
from prtg_ai.maths.counters import counter_rate
from prtg_ai.gpu.health import (
    BIT_SW_POWER_CAP, IDLE_HELD, decode_reasons, health, idle_held_step, throttle_state, worst_xid,
    worst_xid_code, xid_text,
)
from prtg_ai.prtg.model import SensorResult
from prtg_ai.maths.records import field, record

MB = 1_000_000
KIB = 1024
# Physical ceilings for counter rates (bytes/s): PCIe 6.0 x16 is ~128 GB/s per direction,
# NVLink 5 is 900 GB/s per direction. A higher "rate" is a counter reset or clock step.
PCIE_MAX_BPS = 130e9
NVLINK_MAX_BPS = 1.0e12
# Without a process list (NoPermission), VRAM in use above this counts as "held".
HELD_FALLBACK_BYTES = 256 * 1024 * 1024
MAX_CHANNELS = 50


def gpu_params(single: bool) -> tuple[Param, ...]:
    """Parameters shared by ``gpu`` and ``gpu_host`` (``single`` adds ``--gpu``)."""
    common = (
        Param("idle_window", "duration", "how long a GPU must stay idle with VRAM held to count as idle-but-held",
              default=1800.0, minimum=60.0, maximum=7 * 86400.0, metavar="DURATION"),
        Param("idle_util", "float", "utilisation (%) at or below which a GPU counts as idle",
              default=5.0, minimum=0.0, maximum=100.0, metavar="PERCENT"),
        Param("xid_log", "path", "kernel log to read XIDs from (default /dev/kmsg; a dmesg or journalctl -k dump works)",
              default=None, metavar="FILE"),
        Param("xid_hold", "duration", "how long an XID keeps its severity and code on the channels",
              default=3600.0, minimum=0.0, maximum=7 * 86400.0, metavar="DURATION"),
        *gpu_sources.PARAMS,
    )
    if not single:
        return common + (
            Param("expected_gpus", "int", "GPUs this node should have (fewer is an error)", default=None,
                  minimum=1, maximum=1024, metavar="N"),
        )
    return (
        Param("gpu", "str", "GPU index (0, 1, ...) or UUID (GPU-...) as nvidia-smi -L shows", default="0",
              state_key=True, metavar="INDEX|UUID"),
        Param("activity_window", "duration", "sample SM / tensor activity (GPM, Hopper+) over this long; 0 = off",
              default=0.0, minimum=0.0, maximum=5.0, metavar="DURATION"),
    ) + common


# -- XIDs -------------------------------------------------------------------------------
@record
class XidView:
    """XIDs for one scan: per normalised PCI address, the codes since the last scan."""

    available: bool
    source: str
    problem: str | None = None
    baseline: bool = False
    new: dict[str, list[int]] = field(default_factory=dict)
    history: dict[str, list[int]] = field(default_factory=dict)  # everything in the log now
    # first scan only: (age in seconds, code) of the XIDs in the log whose stamp can be dated
    aged: dict[str, list[tuple[float, int]]] = field(default_factory=dict)


def collect_xids(ctx, path: Path | None, cursor: dict | None) -> tuple[XidView, dict | None]:
    """Read the kernel log and split its XIDs into "new since ``cursor``" and "in the log"."""
    if path is None:
        if not sys.platform.startswith("linux"):
            return XidView(False, "none", "XIDs are read from the Linux kernel log; this host is not Linux"), cursor
        path = xid.KMSG
    policy = getattr(ctx, "policy", None)
    read = xid.read_log(Path(path), policy.paths if policy is not None else None)
    if read.text is None:
        return XidView(False, read.source, read.problem), cursor
    events = xid.parse(read.text)
    fresh, new_cursor = xid.since(events, cursor, xid.boot_id(ctx.proc_root))
    view = XidView(True, read.source, baseline=fresh is None)
    up = xid.uptime(ctx.proc_root) if fresh is None else None
    for e in events:
        view.history.setdefault(e.pci, []).append(e.code)
        if up is not None and e.mono is not None and 0 <= up - e.mono:
            view.aged.setdefault(e.pci, []).append((up - e.mono, e.code))
    for e in fresh or []:
        view.new.setdefault(e.pci, []).append(e.code)
    return view, new_cursor


def held_codes(recent: list, now: float, hold: float, new_codes: list[int],
               aged: list[tuple[float, int]] = ()) -> list:
    """The ``[time, code]`` pairs still within the hold window, with this scan's codes added.

    ``aged`` (first scan only) are XIDs already in the log with their age: those younger
    than the hold window count as if seen when they happened, so an XID 79 ten minutes
    before the sensor was set up is not "No XID".
    """
    kept = [r for r in recent if isinstance(r, list) and len(r) == 2 and now - hold <= r[0] <= now]
    kept += [[now - age, int(c)] for age, c in aged if age <= hold]
    kept += [[now, int(c)] for c in new_codes]
    return kept[-200:]


def top_holders(ctx, processes, limit: int = 3) -> str | None:
    """``python3 (PID 41872, 38.2 GiB, pod ns/name, container ...)`` for the biggest VRAM holders.

    A pod is named ``namespace/name`` where the Kubernetes API resolves its UID
    (``backends.k8s_pods``, cached), else by its UID.
    """
    from prtg_ai.backends import k8s_pods, procinfo

    ranked = sorted((p for p in processes or [] if p.used_bytes), key=lambda p: (-p.used_bytes, p.pid))
    if not ranked:
        return None
    shown = ranked[:limit]
    cgroups = {p.pid: procinfo.cgroup_of(ctx.proc_root, p.pid) for p in shown}
    uids = {u for u in (procinfo.pod_uid_in(text) for text in cgroups.values() if text) if u}
    names = k8s_pods.resolve(ctx, uids)
    parts = []
    for p in shown:
        where = procinfo.container_of(cgroups[p.pid], names) if cgroups[p.pid] else None
        detail = [f"PID {p.pid}", f"{p.used_bytes / 2**30:.1f} GiB"] + ([where] if where else [])
        parts.append(f"{procinfo.comm_of(ctx.proc_root, p.pid) or 'process'} ({', '.join(detail)})")
    more = len(ranked) - limit
    return "; ".join(parts) + (f"; {more} more" if more > 0 else "")


def is_held(sample: nvml.GpuSample) -> bool | None:
    """Whether a process holds VRAM on this GPU (None when that cannot be told)."""
    if sample.processes is not None:
        return any((p.used_bytes or 0) > 0 or p.used_bytes is None for p in sample.processes)
    if sample.memory is not None:
        return sample.memory.used > HELD_FALLBACK_BYTES
    return None


def margin(sample: nvml.GpuSample) -> int | None:
    """Degrees C to the slowdown threshold (NVML's own margin, else threshold - temperature)."""
    if sample.margin_temperature is not None:
        return int(sample.margin_temperature)
    if sample.slowdown_threshold is not None and sample.temperature is not None:
        return int(sample.slowdown_threshold) - int(sample.temperature)
    return None


def permission_note(denied: list[str]) -> str:
    what = ", ".join(sorted(set(denied))[:6])
    return (f"No permission for {what}: run the sensor as root or a member of the video group; in a "
            "container, share the host PID namespace (hostPID) to see processes")


class GpuSensor(Sensor):
    id = "gpu"
    title = "NVIDIA GPU"
    summary = "One NVIDIA GPU in depth over NVML: load, VRAM, thermals, power, throttling, ECC, XIDs, processes."
    interval = 60
    params = gpu_params(single=True)

    def run(self) -> SensorResult:
        selector = self.values["gpu"]
        nvml.parse_selector(selector)  # a malformed --gpu is a ConfigError even without a driver
        acq = gpu_sources.acquire_one(self, selector)
        system, sample = acq.system, acq.samples[0]
        self._acquired = acq
        now = self.ctx.now()
        result = SensorResult()
        store = StateStore(self.ctx.state_dir)
        with store.session(self.id, self.state_identity(), max_samples=1) as state:
            if state.data.get("uuid") not in (None, sample.uuid):
                result.note(f"--gpu {selector} is now {sample.uuid} (was {state.data['uuid']}): rates restart")
                state.data = {}
            view, cursor = gpu_sources.xids(self.ctx, self.values, acq, state.data.get("xid_cursor"))
            self._build(result, sample, state.data, now, view)
            state.data["xid_cursor"] = cursor
            state.data.update(uuid=sample.uuid, t=now)
            for note in state.notes:
                result.note(note)
        for note in gpu_sources.notes(acq):
            result.note(note)
        versions = ", ".join(f"{k} {v}" for k, v in (("driver", system.driver), ("CUDA", system.cuda)) if v)
        if versions:
            result.note(versions[0].upper() + versions[1:])
        return result

    # -- channels ---------------------------------------------------------------------
    def _build(self, result: SensorResult, s: nvml.GpuSample, data: dict, now: float, view: XidView) -> None:
        add = lambda key, value, **kw: result.add(self.channel(key, value, **kw))  # noqa: E731
        prev_t = data.get("t")
        summary = [f"{s.name or 'GPU'} (GPU {s.index}, {s.pci_bus_id or s.uuid})"]

        # Load
        if s.util_gpu is not None:
            add("util_gpu", s.util_gpu)
            summary.append(f"{s.util_gpu} % busy")
        if s.util_memory is not None:
            add("util_memory", s.util_memory)
        if s.sm_activity is not None:
            add("sm_activity", round(s.sm_activity, 2))
        if s.tensor_activity is not None:
            add("tensor_activity", round(s.tensor_activity, 2))

        # VRAM
        if s.memory is not None:
            add("vram_used", s.memory.used)
            add("vram_free", s.memory.free)
            add("vram_total", s.memory.total)
            if s.memory.used_percent is not None:
                add("vram_used_percent", round(s.memory.used_percent, 2))
            summary.append(f"{s.memory.used / 2**30:.1f} of {s.memory.total / 2**30:.1f} GiB VRAM used")

        # Thermals
        if s.temperature is not None:
            add("temperature", int(s.temperature))
        if s.memory_temperature is not None:
            add("hbm_temperature", int(s.memory_temperature))
        m = margin(s)
        if m is not None:
            add("slowdown_margin", m)
        if s.fan_speed is not None:
            add("fan", int(s.fan_speed))

        # Power
        if s.power_mw is not None:
            add("power", round(s.power_mw / 1000.0, 3))
        if s.power_limit_mw:
            add("power_limit", round(s.power_limit_mw / 1000.0, 3))
            if s.power_mw is not None:
                add("power_percent", round(100.0 * s.power_mw / s.power_limit_mw, 2))
                summary.append(f"{s.power_mw / 1000:.0f} W of {s.power_limit_mw / 1000:.0f} W")
        if s.energy_mj is not None:
            ceiling = (s.power_limit_mw or 2_000_000) * 2.0  # mJ per second = mW
            joules = self._delta(result, data, "energy", int(s.energy_mj), prev_t, now, ceiling, "energy counter")
            if joules is not None:
                add("energy", round(joules / 1000.0, 3))

        # Clocks and throttling
        if s.clock_sm is not None:
            add("clock_sm", int(s.clock_sm))
        if s.clock_mem is not None:
            add("clock_mem", int(s.clock_mem))
        if s.pstate is not None:
            add("pstate", int(s.pstate))
        thr = None
        if s.clocks_event_reasons is not None:
            mask = int(s.clocks_event_reasons)
            thr = throttle_state(mask, bool(data.get("power_cap")))
            data["power_cap"] = bool(mask & BIT_SW_POWER_CAP)
            add("throttle", thr)
            reasons = decode_reasons(mask)
            summary.append("clocks limited by " + ", ".join(reasons) if reasons else "clocks not limited")

        # Memory errors
        for key, value in (("ecc_corrected_volatile", s.ecc_corrected_volatile),
                           ("ecc_uncorrected_volatile", s.ecc_uncorrected_volatile),
                           ("ecc_corrected_aggregate", s.ecc_corrected_aggregate),
                           ("ecc_uncorrected_aggregate", s.ecc_uncorrected_aggregate)):
            if value is not None:
                add(key, int(value))
        if s.ecc_enabled is False:
            result.note("ECC is disabled on this GPU: no ECC error counts")
        if s.retired_pages is not None:
            add("retired_pages", s.retired_pages)
            if s.retired_pending is not None:
                add("retired_pending", int(s.retired_pending))
        if s.remapped_correctable is not None:
            add("remapped_correctable", s.remapped_correctable)
            add("remapped_uncorrectable", s.remapped_uncorrectable)
            add("remap_pending", int(bool(s.remap_pending)))
            add("remap_failure", int(bool(s.remap_failure)))
            if s.remap_failure:
                result.note("Row remapping FAILED: the GPU has run out of spare rows; plan an RMA")
            elif s.remap_pending:
                result.note("A row remap is pending: reset the GPU (or reboot) to apply it")
        if s.recovery_action is not None:
            add("recovery", int(s.recovery_action))

        # XIDs
        xid_sev, xid_code = 0, None
        if view.available:
            pci = xid.normalise_pci(s.pci_bus_id) if s.pci_bus_id else None
            new_codes = view.new.get(pci, []) if pci else []
            aged = view.aged.get(pci, []) if pci and view.baseline else []
            recent = held_codes(data.get("xid_recent", []), now, self.values["xid_hold"], new_codes, aged)
            data["xid_recent"] = recent
            held = [c for _, c in recent]
            xid_sev = worst_xid(held)
            xid_code = worst_xid_code(held)
            add("xid_count", len(new_codes))
            add("xid_last", held[-1] if held else 0)
            add("xid_severity", xid_sev)
            if view.baseline:
                past = view.history.get(pci, []) if pci else []
                tail = f"; {len(past)} earlier XID(s) in the log since boot, last {past[-1]}" if past else ""
                result.note(f"XIDs from {view.source}: first scan sets the baseline{tail}")
                early = [f"{xid_text(c)} {format_duration(round(age))} ago" for age, c in aged
                         if age <= self.values["xid_hold"]]
                if early:
                    result.note(f"Within --xid-hold before the first scan: {'; '.join(early[-5:])}")
            else:
                result.note(f"XIDs from {view.source}")
            if new_codes:
                result.note(f"New XID(s) since the last scan: {', '.join(map(str, new_codes[-10:]))}")
        else:
            result.note(f"XID channels omitted: {view.problem}")

        # Traffic
        self._traffic(result, s, data, prev_t, now)
        if prev_t is None and (s.energy_mj is not None or s.pcie_tx_bytes is not None or s.nvlink_tx_kib is not None):
            result.note("Collecting a baseline for energy and PCIe/NVLink throughput: values from the next scan")

        # Processes and idle-but-held
        if s.processes is not None:
            add("processes", len(s.processes))
            add("process_vram", s.process_bytes or 0)
            holders = top_holders(self.ctx, s.processes)
            if holders:
                result.note(f"Top VRAM: {holders}")
        held_now = is_held(s)
        util = None if s.mig_enabled else s.util_gpu
        step = idle_held_step(now, util, held_now, self.values["idle_util"], self.values["idle_window"],
                              data.get("idle_since"), prev_t)
        data["idle_since"] = step.since
        if util is not None and held_now is not None:
            add("idle_held", step.state)
            add("idle_held_minutes", round(step.held_seconds / 60.0, 2))
            if step.state == IDLE_HELD:
                who = gpu_sources.holders(self.ctx, self._acquired, s)
                result.note(f"Idle but held for {format_duration(round(step.held_seconds))}: VRAM is held"
                            + (f" by {who}" if who else "") + " while the GPU does no work")
            if s.processes is None:
                result.note("Idle-but-held judged from VRAM in use (processes not visible)")

        # MIG
        if s.mig_enabled is not None:
            add("mig_mode", int(s.mig_enabled))
        if s.mig_enabled:
            result.note(f"MIG is enabled with {len(s.mig_instances)} instance(s): GPU utilisation is not "
                        "supported under MIG (NVML), so per-instance VRAM is shown instead")
            for inst in s.mig_instances[: self.catalog["mig_vram"].v2_span]:
                if inst.memory is not None and inst.memory.used_percent is not None:
                    label = f"GI{inst.gpu_instance_id} CI{inst.compute_instance_id}"
                    add("mig_vram", round(inst.memory.used_percent, 2), instance=label, index=inst.slot)

        # Health
        level, why = health(throttle=thr, remap_pending=s.remap_pending, remap_failure=s.remap_failure,
                            retired_pending=s.retired_pending, ecc_uncorrected_volatile=s.ecc_uncorrected_volatile,
                            xid=xid_sev, recovery_action=s.recovery_action, xid_code=xid_code)
        add("health", level)
        if why:
            result.note("Health: " + "; ".join(why))

        # Permission and transient problems
        if s.denied:
            result.warning = True
            result.note(permission_note(s.denied))
        if s.problems:
            result.warning = True
            result.note("NVML did not answer for " + "; ".join(s.problems[:4]))
        if s.absent:
            result.note(f"{len(set(s.absent))} metric(s) not supported by this GPU are omitted")
        result.text = ", ".join(summary)
        del result.channels[MAX_CHANNELS - 1:]  # leave room for Execution Time; the catalogue keeps this unreachable

    def _delta(self, result: SensorResult, data: dict, key: str, value: int, prev_t, now: float,
               max_rate: float, what: str) -> float | None:
        """Increase of counter ``key`` since the last scan (None on the first scan or a reset)."""
        prev = data.get(key)
        data[key] = value
        if prev is None or prev_t is None:
            return None
        rate = counter_rate(int(prev), float(prev_t), value, now, max_rate=max_rate)
        if rate.value is None:
            result.note(f"The {what} gave no value this scan ({rate.reason})")
            return None
        return rate.delta

    def _traffic(self, result: SensorResult, s: nvml.GpuSample, data: dict, prev_t, now: float) -> None:
        add = lambda key, value: result.add(self.channel(key, value))  # noqa: E731
        for key, counter, instant in (("pcie_tx", s.pcie_tx_bytes, s.pcie_tx_kbs),
                                      ("pcie_rx", s.pcie_rx_bytes, s.pcie_rx_kbs)):
            if counter is not None:
                delta = self._delta(result, data, key, int(counter), prev_t, now, PCIE_MAX_BPS, "PCIe byte counter")
                if delta is not None:
                    add(key, round(delta / (now - prev_t) / MB, 3))
            elif instant is not None:
                add(key, round(instant * KIB / MB, 3))
        if s.pcie_replays is not None:
            add("pcie_replays", int(s.pcie_replays))
        if s.nvlink_tx_kib is not None and s.nvlink_links is None:
            result.note("NVML did not answer the NVLink link count: NVLink throughput comes from the data "
                        "counters alone")
        for key, counter in (("nvlink_tx", s.nvlink_tx_kib), ("nvlink_rx", s.nvlink_rx_kib)):
            if counter is not None:
                delta = self._delta(result, data, key, int(counter) * KIB, prev_t, now, NVLINK_MAX_BPS,
                                    "NVLink byte counter")
                if delta is not None:
                    add(key, round(delta / (now - prev_t) / MB, 3))
