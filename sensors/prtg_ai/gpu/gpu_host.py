"""``gpu_host``: every NVIDIA GPU of a node at a glance (the roll-up no anchor ships).

Reads: NVML through ``prtg_ai.backends.nvml`` (one sweep per GPU) and XID lines from
the kernel log through ``prtg_ai.backends.xid``; or, with ``--source dcgm``, every GPU on a
dcgm-exporter page (``prtg_ai.gpu.sources``). Keeps the previous and highest GPU count,
the XID cursor and, per GPU, its idle-but-held stretch, power-cap bit and XID history in
the state folder.

A scan runs in three steps: acquire (``sources``), evaluate each GPU (``evaluate.evaluate``,
the same verdict the ``gpu`` sensor gives), then the roll-ups and the message (here).

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

from prtg_ai.core.sensor import Sensor
from prtg_ai.core.state import StateStore
from prtg_ai.gpu import sources
from prtg_ai.gpu.evaluate import evaluate, kept_from, policy_of
from prtg_ai.gpu.health import HEALTH_LOST
from prtg_ai.maths.records import record
from prtg_ai.prtg.model import SensorResult
from prtg_ai.prtg.units import CHANNEL_LIMIT

HEALTH_TEXT = ("Ok", "Warning", "Error", "GPU lost")
ACCEPT_KEY = "accept_count"


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


@record
class Host:
    """One scan of the node: every GPU's sample with its verdict, and the node's counts."""

    acq: sources.Acquired
    verdicts: list            # one evaluate.Verdict per sample, in the same order
    view: sources.XidView
    prev_count: int | None
    missing: int

    @property
    def judged(self):
        return list(zip(self.acq.samples, self.verdicts))

    @property
    def worst(self) -> int:
        levels = [v.health for v in self.verdicts] + [HEALTH_LOST] * len(self.acq.lost)
        return max(levels, default=0)

    @property
    def utils(self) -> list:
        return [v.util for v in self.verdicts if v.util is not None]


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
    params = sources.gpu_params(single=False)

    def run(self) -> SensorResult:
        acq = sources.acquire_all(self)
        self._acquired = acq
        result = SensorResult()
        with StateStore(self.ctx.state_dir).session(self.id, self.state_identity(), max_samples=1) as state:
            host = self._judge(result, state.data, acq, self.ctx.now())
            self._build(result, host)
            for note in state.notes:
                result.note(note)
        for note in sources.trailer(acq, with_nvml=True):
            result.note(note)
        return result

    def _judge(self, result: SensorResult, data: dict, acq: sources.Acquired, now: float) -> Host:
        """Evaluate every GPU against the state, and update the state (the only step that writes it)."""
        view, cursor = sources.xids(self.ctx, self.values, acq, data.get("xid_cursor"))
        last, prev_count = data.get("t"), data.get("count")
        missing = self._missing(result, acq.count, self.values["expected_gpus"], data)
        old_idle, old_cap = _dict(data.get("idle")), _dict(data.get("power_cap"))
        old_xid = _dict(data.get("xid_recent"))
        policy, verdicts, idle, cap, xids = policy_of(self.values), [], {}, {}, {}
        for s in acq.samples:
            kept = kept_from(old_cap.get(s.uuid), _dict(old_idle.get(s.uuid)).get("since"), old_xid.get(s.uuid))
            verdict, kept = evaluate(s, kept, now=now, last_seen=last, policy=policy, xids=view.for_gpu(s.pci_bus_id))
            verdicts.append(verdict)
            idle[s.uuid], cap[s.uuid] = {"since": kept.idle_since}, kept.power_cap
            xids[s.uuid] = [list(r) for r in kept.xid_recent]
        data.update(idle=idle, power_cap=cap, xid_recent=xids, xid_cursor=cursor, count=acq.count, t=now)
        return Host(acq, verdicts, view, prev_count, missing)

    # -- channels and the message ------------------------------------------------------
    def _add(self, result: SensorResult, key: str, value, **kw) -> None:
        result.add(self.channel(key, value, **kw))

    def _build(self, result: SensorResult, host: Host) -> None:
        self._counts(result, host)
        self._rollups(result, host)
        self._per_gpu(result, host.acq.samples)
        self._message(result, host)

    def _counts(self, result: SensorResult, host: Host) -> None:
        count, expected, prev = host.acq.count, self.values["expected_gpus"], host.prev_count
        self._add(result, "gpus", count, **({"limitminerror": expected} if expected else {}))
        self._add(result, "gpu_count_change", 0 if prev is None else count - int(prev))
        self._add(result, "lost_gpus", len(host.acq.lost))
        self._add(result, "missing_gpus", host.missing)
        if prev is not None and count < int(prev):
            result.note(f"{int(prev) - count} GPU(s) disappeared since the last scan "
                        "(fallen off the bus? check dmesg for XID 79)")

    def _rollups(self, result: SensorResult, host: Host) -> None:
        add = lambda key, value: self._add(result, key, value)  # noqa: E731
        samples, verdicts = host.acq.samples, host.verdicts
        add("worst_health", host.worst)
        temps = [int(s.temperature) for s in samples if s.temperature is not None]
        if temps:
            add("max_temperature", max(temps))
        margins = [v.margin for v in verdicts if v.margin is not None]
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
        if host.utils:
            add("mean_util", round(statistics.fmean(host.utils), 2))
            add("min_util", min(host.utils))
            add("idle_gpus", sum(v.idle for v in verdicts))
            add("idle_held_gpus", sum(v.idle_held for v in verdicts))
        if any(v.throttle is not None for v in verdicts):
            add("throttled_gpus", sum(v.throttled for v in verdicts))
        if host.view.available:
            # Every GPU's XIDs count, a lost GPU's included (it is not among the samples).
            add("xid_count", sum(len(codes) for codes in host.view.new.values()))
        else:
            result.note(f"XIDs not in the health roll-up: {host.view.problem}")

    def _message(self, result: SensorResult, host: Host) -> None:
        samples = host.acq.samples
        names = sorted({s.name for s in samples if s.name})
        result.text = (f"{host.acq.count} GPU(s)" + (f" ({', '.join(names)})" if names else "")
                       + f", worst health {HEALTH_TEXT[host.worst]}"
                       + (f", mean utilisation {statistics.fmean(host.utils):.0f} %" if host.utils else ""))
        reasons = [f"GPU {s.index}: {'; '.join(v.why)}" for s, v in host.judged if v.health and v.why]
        reasons += [problem.rstrip(".") for _, problem in host.acq.lost]
        if reasons:
            result.note("; ".join(reasons[:6]))
        idle_held = [s for s, v in host.judged if v.idle_held]
        if idle_held:
            named = []
            for s in idle_held:
                pods = sources.pods_of(self.ctx, self._acquired, s)
                named.append(f"{s.index} ({', '.join(pods[:3])})" if pods else str(s.index))
            result.note(f"Idle but held (VRAM held, no work, for {self.values['idle_window'] / 60:.0f} min): GPU "
                        + ", ".join(named))
        holders = sources.top_holders(self.ctx, [p for s in samples for p in (s.processes or [])])
        if holders:
            result.note(f"Top VRAM: {holders}")
        throttled = [str(s.index) for s, v in host.judged if v.throttled]
        if throttled:
            result.note("Clocks held down on GPU " + ", ".join(throttled))
        if any(s.mig_enabled for s in samples):
            result.note("MIG GPUs have no utilisation in NVML and are left out of the utilisation roll-ups")
        self._problems(result, samples)

    @staticmethod
    def _problems(result: SensorResult, samples) -> None:
        denied = [d for s in samples for d in s.denied]
        problems = [f"GPU {s.index} {p}" for s in samples for p in s.problems]
        if denied:
            result.warning = True
            result.note(sources.permission_note(denied))
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

    def _per_gpu(self, result: SensorResult, samples: list) -> None:
        """Per-GPU channels in index order while the result stays within PRTG's 50 channels."""
        span = self.catalog["gpu_util"].v2_span
        budget = CHANNEL_LIMIT - 1 - len(result.channels)  # one slot stays for Execution Time
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
