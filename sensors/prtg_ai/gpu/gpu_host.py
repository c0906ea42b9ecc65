"""``gpu_host``: every NVIDIA GPU of a node at a glance (the roll-up no anchor ships).

Reads: NVML through ``prtg_ai.backends.nvml`` (one sweep per GPU) and XID lines from
the kernel log through ``prtg_ai.backends.xid``; or, with ``--source dcgm``, every GPU on a
dcgm-exporter page (``prtg_ai.gpu.sources``). Keeps the previous GPU count, the
XID cursor and each GPU's idle-but-held stretch in the state folder.

Needs: the NVIDIA driver and nvidia-ml-py; root (or ``kernel.dmesg_restrict=0``) for
the XID part of the health roll-up.

Channels: roll-ups (GPU count and its change, lost GPUs, missing GPUs, worst health, max
temperature, min slowdown margin, total power, total and max VRAM %, mean and min
utilisation, idle, idle-but-held and throttled GPUs, XIDs since the last scan), then
per-GPU utilisation and VRAM % channels.

Aggregation rule for large hosts (PRTG allows 50 channels): the roll-up channels always
come first; per-GPU channels follow in GPU index order, two per GPU, as long as the
result stays within 50 channels including Execution Time. With every roll-up present
that is 16 GPUs; GPUs beyond that are in the roll-ups only, the message names them,
and a ``gpu`` sensor per GPU gives their detail. A lost GPU (XID 79) counts in "Lost
GPUs" and the worst health instead of failing the whole sensor.
"""

from __future__ import annotations

import statistics

from prtg_ai.gpu import sources as gpu_sources
from prtg_ai.backends import nvml, xid
from prtg_ai.core.sensor import Sensor
from prtg_ai.core.state import StateStore
from prtg_ai.gpu.gpu import MAX_CHANNELS, held_codes, is_held, margin, permission_note, top_holders
from prtg_ai.gpu.health import (
    BIT_SW_POWER_CAP, HEALTH_LOST, IDLE_HELD, THR_POWER_CAP_SUSTAINED, health, idle_held_step, throttle_state,
    worst_xid, worst_xid_code,
)
from prtg_ai.gpu.gpu import gpu_params
from prtg_ai.prtg.model import SensorResult

HEALTH_TEXT = ("Ok", "Warning", "Error", "GPU lost")
ACCEPT_KEY = "accept_count"


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def accept_gpu_count(folder) -> int:
    """Mark every ``gpu_host`` state in ``folder`` so its next scan takes the present count as normal.

    Returns how many sensor instances were marked. The state files are changed under
    the same lock a scan takes, so a running scan never loses the mark.
    """
    marked = 0
    store = StateStore(folder)
    for identity in store.identities(GpuHostSensor.id):
        with store.session(GpuHostSensor.id, identity, max_samples=1) as state:
            if state.fresh:
                continue
            state.data[ACCEPT_KEY] = True
            marked += 1
    return marked


class GpuHostSensor(Sensor):
    id = "gpu_host"
    title = "NVIDIA GPU host"
    summary = "All NVIDIA GPUs of a node rolled up: count, worst health, hottest, power, VRAM, idle and idle-held GPUs."
    interval = 60
    params = gpu_params(single=False)

    def run(self) -> SensorResult:
        acq = gpu_sources.acquire_all(self)
        system, count, samples, lost = acq.system, acq.count, acq.samples, acq.lost
        self._acquired = acq
        now = self.ctx.now()
        result = SensorResult()
        store = StateStore(self.ctx.state_dir)
        with store.session(self.id, self.state_identity(), max_samples=1) as state:
            view, cursor = gpu_sources.xids(self.ctx, self.values, acq, state.data.get("xid_cursor"))
            self._build(result, count, samples, lost, state.data, now, view)
            state.data["xid_cursor"] = cursor
            state.data.update(count=count, t=now)
            for note in state.notes:
                result.note(note)
        for note in gpu_sources.notes(acq):
            result.note(note)
        versions = ", ".join(f"{k} {v}" for k, v in (("driver", system.driver), ("CUDA", system.cuda),
                                                     ("NVML", system.nvml)) if v)
        if versions:
            result.note(versions[0].upper() + versions[1:])
        return result

    def _build(self, result: SensorResult, count: int, samples: list[nvml.GpuSample],
               lost: list[tuple[int, str]], data: dict, now: float, view) -> None:
        add = lambda key, value, **kw: result.add(self.channel(key, value, **kw))  # noqa: E731
        prev_t, prev_count = data.get("t"), data.get("count")
        idle_util, window = self.values["idle_util"], self.values["idle_window"]
        expected = self.values["expected_gpus"]

        add("gpus", count, **({"limitminerror": expected} if expected else {}))
        add("gpu_count_change", 0 if prev_count is None else count - int(prev_count))
        add("lost_gpus", len(lost))
        add("missing_gpus", self._missing(result, count, expected, data))
        if prev_count is not None and count < int(prev_count):
            result.note(f"{int(prev_count) - count} GPU(s) disappeared since the last scan "
                        "(fallen off the bus? check dmesg for XID 79)")

        # Per-GPU verdicts
        old_idle = data.get("idle", {}) if isinstance(data.get("idle"), dict) else {}
        old_cap = data.get("power_cap", {}) if isinstance(data.get("power_cap"), dict) else {}
        old_xid = data.get("xid_recent", {}) if isinstance(data.get("xid_recent"), dict) else {}
        new_idle, new_cap, new_xid = {}, {}, {}
        levels, idle, idle_held, throttled = [], [], [], []
        denied, problems = [], []
        worst_reasons: list[str] = []
        for s in samples:
            thr = None
            if s.clocks_event_reasons is not None:
                mask = int(s.clocks_event_reasons)
                thr = throttle_state(mask, bool(old_cap.get(s.uuid)))
                new_cap[s.uuid] = bool(mask & BIT_SW_POWER_CAP)
                if thr >= THR_POWER_CAP_SUSTAINED:
                    throttled.append(s.index)
            sev, code = 0, None
            if view.available and s.pci_bus_id:
                pci = xid.normalise_pci(s.pci_bus_id)
                codes = view.new.get(pci, [])
                aged = view.aged.get(pci, []) if view.baseline else []
                recent = held_codes(old_xid.get(s.uuid, []), now, self.values["xid_hold"], codes, aged)
                new_xid[s.uuid] = recent
                sev = worst_xid(c for _, c in recent)
                code = worst_xid_code(c for _, c in recent)
            level, why = health(throttle=thr, remap_pending=s.remap_pending, remap_failure=s.remap_failure,
                                retired_pending=s.retired_pending,
                                ecc_uncorrected_volatile=s.ecc_uncorrected_volatile, xid=sev,
                                recovery_action=s.recovery_action, xid_code=code)
            levels.append(level)
            if level and why:
                worst_reasons.append(f"GPU {s.index}: {'; '.join(why)}")
            util = None if s.mig_enabled else s.util_gpu
            old = old_idle.get(s.uuid, {})
            step = idle_held_step(now, util, is_held(s), idle_util, window, old.get("since"), prev_t)
            new_idle[s.uuid] = {"since": step.since}
            if util is not None and util <= idle_util:
                idle.append(s.index)
            if step.state == IDLE_HELD:
                idle_held.append(s.index)
            denied += s.denied
            problems += [f"GPU {s.index} {p}" for p in s.problems]
        data.update(idle=new_idle, power_cap=new_cap, xid_recent=new_xid)
        for index, problem in lost:
            levels.append(HEALTH_LOST)
            worst_reasons.append(problem.rstrip("."))

        worst = max(levels, default=0)
        add("worst_health", worst)

        temps = [int(s.temperature) for s in samples if s.temperature is not None]
        if temps:
            add("max_temperature", max(temps))
        margins = [m for m in (margin(s) for s in samples) if m is not None]
        if margins:
            add("min_margin", min(margins))
        powers = [s.power_mw for s in samples if s.power_mw is not None]
        if powers:
            add("total_power", round(sum(powers) / 1000.0, 3))
        mems = [s.memory for s in samples if s.memory is not None]
        usable = sum(m.total - m.reserved for m in mems)
        if mems and usable > 0:
            add("vram_used_percent", round(100.0 * sum(m.used for m in mems) / usable, 2))
            add("max_vram_percent", round(max(m.used_percent or 0.0 for m in mems), 2))
        utils = [s.util_gpu for s in samples if s.util_gpu is not None and not s.mig_enabled]
        if utils:
            add("mean_util", round(statistics.fmean(utils), 2))
            add("min_util", min(utils))
            add("idle_gpus", len(idle))
            add("idle_held_gpus", len(idle_held))
        if any(s.clocks_event_reasons is not None for s in samples):
            add("throttled_gpus", len(throttled))
        if view.available:
            # Every GPU's XIDs count, a lost GPU's included (it is not among the samples).
            add("xid_count", sum(len(codes) for codes in view.new.values()))
        else:
            result.note(f"XIDs not in the health roll-up: {view.problem}")

        self._per_gpu(result, samples, count)

        names = sorted({s.name for s in samples if s.name})
        summary = f"{count} GPU(s)" + (f" ({', '.join(names)})" if names else "")
        summary += f", worst health {HEALTH_TEXT[worst]}"
        if utils:
            summary += f", mean utilisation {statistics.fmean(utils):.0f} %"
        result.text = summary
        if worst_reasons:
            result.note("; ".join(worst_reasons[:6]))
        if idle_held:
            by_index = {s.index: s for s in samples}
            named = []
            for i in idle_held:
                pods = gpu_sources.pods_of(self.ctx, self._acquired, by_index[i])
                named.append(f"{i} ({', '.join(pods[:3])})" if pods else str(i))
            result.note(f"Idle but held (VRAM held, no work, for {window / 60:.0f} min): GPU " + ", ".join(named))
        held_procs = [p for s in samples for p in (s.processes or [])]
        holders = top_holders(self.ctx, held_procs)
        if holders:
            result.note(f"Top VRAM: {holders}")
        if throttled:
            result.note("Clocks held down on GPU " + ", ".join(map(str, throttled)))
        if any(s.mig_enabled for s in samples):
            result.note("MIG GPUs have no utilisation in NVML and are left out of the utilisation roll-ups")
        if denied:
            result.warning = True
            result.note(permission_note(denied))
        if problems:
            result.warning = True
            result.note("NVML did not answer for " + "; ".join(problems[:4]))

    def _missing(self, result: SensorResult, count: int, expected: int | None, data: dict) -> int:
        """Expected GPUs minus present ones; the high-water mark lives in the state (survives reboots).

        Without ``--expected-gpus`` the expectation is the most GPUs this host has ever
        shown: a GPU that falls off the bus (or is missing after a reboot, the classic
        case) stays missing on every later scan, not for one scan only. A permanent
        change is accepted deliberately with ``prtg-ai accept-gpu-count``.
        """
        high = max(_int(data.get("max_count")), _int(data.get("count")), count)
        if data.pop(ACCEPT_KEY, False):
            high = count
            result.note(f"{count} GPU(s) accepted as this host's normal count (prtg-ai accept-gpu-count)")
        data["max_count"] = high
        want = expected or high
        missing = max(0, want - count)
        if missing:
            source = ("--expected-gpus" if expected else
                      "the most this host has shown; if the change is permanent run prtg-ai accept-gpu-count")
            result.note(f"{missing} GPU(s) missing: {count} present, {want} expected ({source})")
        return missing

    def _per_gpu(self, result: SensorResult, samples: list[nvml.GpuSample], count: int) -> None:
        """Per-GPU channels in index order while the result stays within PRTG's 50 channels."""
        span = self.catalog["gpu_util"].v2_span
        budget = MAX_CHANNELS - 1 - len(result.channels)  # one slot stays for Execution Time
        shown, left_out = 0, []
        for s in sorted(samples, key=lambda x: x.index):
            wanted = []
            if s.util_gpu is not None and not s.mig_enabled:
                wanted.append(("gpu_util", int(s.util_gpu)))
            if s.memory is not None and s.memory.used_percent is not None:
                wanted.append(("gpu_vram", round(s.memory.used_percent, 2)))
            if s.index >= span or len(wanted) > budget:
                left_out.append(s.index)
                budget = -1  # keep the rule simple: a prefix of GPUs, never a gap
                continue
            for key, value in wanted:
                result.add(self.channel(key, value, instance=str(s.index), index=s.index))
            budget -= len(wanted)
            shown += 1
        if left_out:
            result.note(f"GPU {left_out[0]}-{left_out[-1]} appear in the roll-ups only (PRTG's 50-channel limit); "
                        "add a gpu sensor per GPU for their detail")
