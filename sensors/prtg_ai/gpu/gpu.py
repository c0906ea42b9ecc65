"""``gpu``: one NVIDIA GPU in depth (utilisation, VRAM, thermals, power, clocks, throttle
reasons, ECC and row remapping, XIDs, PCIe/NVLink traffic, processes, idle-but-held, MIG).

Reads: NVML through ``prtg_ai.backends.nvml`` (one sweep of the GPU named by ``--gpu``),
and XID lines from the kernel log through ``prtg_ai.backends.xid`` (``/dev/kmsg`` by
default, or ``--xid-log FILE``); or, with ``--source dcgm``, a dcgm-exporter page through
``prtg_ai.gpu.sources`` (same channels, XIDs from DCGM). Keeps per-GPU samples (energy, PCIe/NVLink byte
counters, idle-but-held stretch, XID history) in the state folder.

A scan runs in three steps: acquire (``sources``), evaluate (``evaluate.evaluate``: the
same per-GPU verdict ``gpu_host`` uses, and ``evaluate.rates`` for the counters), then
channels and the summary message (here).

Needs: the NVIDIA driver and nvidia-ml-py. No root, except that reading ``/dev/kmsg``
needs root where ``kernel.dmesg_restrict=1`` (without it the XID channels are omitted
and the message says why), and per-process VRAM inside containers needs the host's
PID namespace (NVML answers NoPermission: a warning, not an outage).

Error tiers: a metric this GPU does not support is omitted (logged once); NoPermission
turns the sensor to Warning with a hint; a lost GPU (XID 79) or a missing driver is a
whole-sensor error with a hint; a bad ``--gpu`` names the parameter.
"""

from __future__ import annotations

from prtg_ai.backends import nvml
from prtg_ai.core.params import format_duration
from prtg_ai.core.sensor import Sensor
from prtg_ai.core.state import StateStore
from prtg_ai.gpu import sources
from prtg_ai.gpu.evaluate import KIB, MB, Verdict, evaluate, kept_from, policy_of, rates
from prtg_ai.gpu.health import IDLE_HELD, xid_text
from prtg_ai.maths.records import field, record
from prtg_ai.prtg.model import SensorResult
from prtg_ai.prtg.units import CHANNEL_LIMIT


@record
class Scan:
    """One scan of one GPU: the sample, its verdict and what came from the counters and the XID source."""

    sample: nvml.GpuSample
    verdict: Verdict
    view: sources.XidView
    rates: dict = field(default_factory=dict)        # energy (J), pcie_tx/rx, nvlink_tx/rx (MB/s)
    rate_notes: list = field(default_factory=list)
    first: bool = False                              # no previous scan: counters set their baseline


class GpuSensor(Sensor):
    id = "gpu"
    title = "NVIDIA GPU"
    summary = "One NVIDIA GPU in depth over NVML: load, VRAM, thermals, power, throttling, ECC, XIDs, processes."
    interval = 60
    params = sources.gpu_params(single=True)

    def run(self) -> SensorResult:
        selector = self.values["gpu"]
        nvml.parse_selector(selector)  # a malformed --gpu is a ConfigError even without a driver
        acq = sources.acquire_one(self, selector)
        self._acquired = acq
        result = SensorResult()
        with StateStore(self.ctx.state_dir).session(self.id, self.state_identity(), max_samples=1) as state:
            if state.data.get("uuid") not in (None, acq.samples[0].uuid):
                result.note(f"--gpu {selector} is now {acq.samples[0].uuid} (was {state.data['uuid']}): "
                            "rates restart")
                state.data = {}
            scan = self._judge(state.data, acq, self.ctx.now())
            self._build(result, scan)
            for note in state.notes:
                result.note(note)
        for note in sources.trailer(acq):
            result.note(note)
        return result

    def _judge(self, data: dict, acq: sources.Acquired, now: float) -> Scan:
        """Evaluate the GPU against the state, and update the state (the only step that writes it)."""
        s, last = acq.samples[0], data.get("t")
        view, cursor = sources.xids(self.ctx, self.values, acq, data.get("xid_cursor"))
        kept = kept_from(data.get("power_cap"), data.get("idle_since"), data.get("xid_recent"))
        verdict, kept = evaluate(s, kept, now=now, last_seen=last, policy=policy_of(self.values),
                                 xids=view.for_gpu(s.pci_bus_id))
        values, notes, readings = rates(s, data, last, now)
        data.update(readings, power_cap=kept.power_cap, idle_since=kept.idle_since,
                    xid_recent=[list(r) for r in kept.xid_recent], xid_cursor=cursor, uuid=s.uuid, t=now)
        return Scan(s, verdict, view, values, notes, first=last is None)

    # -- channels and the message ------------------------------------------------------
    def _add(self, result: SensorResult, key: str, value, **kw) -> None:
        result.add(self.channel(key, value, **kw))

    def _build(self, result: SensorResult, scan: Scan) -> None:
        s = scan.sample
        summary = [f"{s.name or 'GPU'} (GPU {s.index}, {s.pci_bus_id or s.uuid})"]
        self._load(result, s, summary)
        self._thermals_power(result, scan, summary)
        self._clocks(result, scan, summary)
        self._memory_errors(result, s)
        self._xids(result, scan)
        self._traffic(result, scan)
        self._processes(result, scan)
        self._mig(result, s)
        self._health(result, scan)
        result.text = ", ".join(summary)
        del result.channels[CHANNEL_LIMIT - 1:]  # leave room for Execution Time; the catalogue keeps this unreachable

    def _load(self, result: SensorResult, s: nvml.GpuSample, summary: list[str]) -> None:
        add = lambda key, value: self._add(result, key, value)  # noqa: E731
        if s.util_gpu is not None:
            add("util_gpu", s.util_gpu)
            summary.append(f"{s.util_gpu} % busy")
        for key, value in (("util_memory", s.util_memory), ("sm_activity", s.sm_activity),
                           ("tensor_activity", s.tensor_activity)):
            if value is not None:
                add(key, value if key == "util_memory" else round(value, 2))
        if s.memory is not None:
            add("vram_used", s.memory.used)
            add("vram_free", s.memory.free)
            add("vram_total", s.memory.total)
            if s.memory.used_percent is not None:
                add("vram_used_percent", round(s.memory.used_percent, 2))
            summary.append(f"{s.memory.used / 2**30:.1f} of {s.memory.total / 2**30:.1f} GiB VRAM used")

    def _thermals_power(self, result: SensorResult, scan: Scan, summary: list[str]) -> None:
        add = lambda key, value: self._add(result, key, value)  # noqa: E731
        s = scan.sample
        for key, value in (("temperature", s.temperature), ("hbm_temperature", s.memory_temperature),
                           ("slowdown_margin", scan.verdict.margin), ("fan", s.fan_speed)):
            if value is not None:
                add(key, int(value))
        if s.power_mw is not None:
            add("power", round(s.power_mw / 1000.0, 3))
        if s.power_limit_mw:
            add("power_limit", round(s.power_limit_mw / 1000.0, 3))
            if s.power_mw is not None:
                add("power_percent", round(100.0 * s.power_mw / s.power_limit_mw, 2))
                summary.append(f"{s.power_mw / 1000:.0f} W of {s.power_limit_mw / 1000:.0f} W")
        if "energy" in scan.rates:
            add("energy", scan.rates["energy"])

    def _clocks(self, result: SensorResult, scan: Scan, summary: list[str]) -> None:
        s, v = scan.sample, scan.verdict
        for key, value in (("clock_sm", s.clock_sm), ("clock_mem", s.clock_mem), ("pstate", s.pstate)):
            if value is not None:
                self._add(result, key, int(value))
        if v.throttle is not None:
            self._add(result, "throttle", v.throttle)
            summary.append("clocks limited by " + ", ".join(v.reasons) if v.reasons else "clocks not limited")

    def _memory_errors(self, result: SensorResult, s: nvml.GpuSample) -> None:
        add = lambda key, value: self._add(result, key, value)  # noqa: E731
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

    def _xids(self, result: SensorResult, scan: Scan) -> None:
        v, view = scan.verdict, scan.view
        if not v.xids:
            result.note(f"XID channels omitted: {view.problem}")
            return
        self._add(result, "xid_count", len(v.xid_new))
        self._add(result, "xid_last", v.xid_held[-1] if v.xid_held else 0)
        self._add(result, "xid_severity", v.xid_severity)
        if not view.baseline:
            result.note(f"XIDs from {view.source}")
        else:
            past = view.history.get(view.pci(scan.sample.pci_bus_id), [])
            tail = f"; {len(past)} earlier XID(s) in the log since boot, last {past[-1]}" if past else ""
            result.note(f"XIDs from {view.source}: first scan sets the baseline{tail}")
            early = [f"{xid_text(c)} {format_duration(round(age))} ago"
                     for age, c in view.for_gpu(scan.sample.pci_bus_id).aged if age <= self.values["xid_hold"]]
            if early:
                result.note(f"Within --xid-hold before the first scan: {'; '.join(early[-5:])}")
        if v.xid_new:
            result.note(f"New XID(s) since the last scan: {', '.join(map(str, v.xid_new[-10:]))}")

    def _traffic(self, result: SensorResult, scan: Scan) -> None:
        s = scan.sample
        for key, counter, instant in (("pcie_tx", s.pcie_tx_bytes, s.pcie_tx_kbs),
                                      ("pcie_rx", s.pcie_rx_bytes, s.pcie_rx_kbs)):
            value = scan.rates.get(key)
            if counter is None and instant is not None:
                value = round(instant * KIB / MB, 3)  # NVML's 20 ms sample where there is no counter
            if value is not None:
                self._add(result, key, value)
        if s.pcie_replays is not None:
            self._add(result, "pcie_replays", int(s.pcie_replays))
        for key in ("nvlink_tx", "nvlink_rx"):
            if key in scan.rates:
                self._add(result, key, scan.rates[key])
        for note in scan.rate_notes:
            result.note(note)
        if s.nvlink_tx_kib is not None and s.nvlink_links is None:
            result.note("NVML did not answer the NVLink link count: NVLink throughput comes from the data "
                        "counters alone")
        if scan.first and (s.energy_mj is not None or s.pcie_tx_bytes is not None or s.nvlink_tx_kib is not None):
            result.note("Collecting a baseline for energy and PCIe/NVLink throughput: values from the next scan")

    def _processes(self, result: SensorResult, scan: Scan) -> None:
        s, v = scan.sample, scan.verdict
        if s.processes is not None:
            self._add(result, "processes", len(s.processes))
            self._add(result, "process_vram", s.process_bytes or 0)
            holders = sources.top_holders(self.ctx, s.processes)
            if holders:
                result.note(f"Top VRAM: {holders}")
        if not v.idle_judged:
            return
        self._add(result, "idle_held", v.idle_step.state)
        self._add(result, "idle_held_minutes", round(v.idle_step.held_seconds / 60.0, 2))
        if v.idle_step.state == IDLE_HELD:
            who = sources.holders(self.ctx, self._acquired, s)
            result.note(f"Idle but held for {format_duration(round(v.idle_step.held_seconds))}: VRAM is held"
                        + (f" by {who}" if who else "") + " while the GPU does no work")
        if s.processes is None:
            result.note("Idle-but-held judged from VRAM in use (processes not visible)")

    def _mig(self, result: SensorResult, s: nvml.GpuSample) -> None:
        if s.mig_enabled is not None:
            self._add(result, "mig_mode", int(s.mig_enabled))
        if not s.mig_enabled:
            return
        result.note(f"MIG is enabled with {len(s.mig_instances)} instance(s): GPU utilisation is not "
                    "supported under MIG (NVML), so per-instance VRAM is shown instead")
        for inst in s.mig_instances[: self.catalog["mig_vram"].v2_span]:
            if inst.memory is not None and inst.memory.used_percent is not None:
                label = f"GI{inst.gpu_instance_id} CI{inst.compute_instance_id}"
                self._add(result, "mig_vram", round(inst.memory.used_percent, 2), instance=label, index=inst.slot)

    def _health(self, result: SensorResult, scan: Scan) -> None:
        s, v = scan.sample, scan.verdict
        self._add(result, "health", v.health)
        if v.why:
            result.note("Health: " + "; ".join(v.why))
        if s.denied:
            result.warning = True
            result.note(sources.permission_note(s.denied))
        if s.problems:
            result.warning = True
            result.note("NVML did not answer for " + "; ".join(s.problems[:4]))
        if s.absent:
            result.note(f"{len(set(s.absent))} metric(s) not supported by this GPU are omitted")
