"""Judge one GPU for one scan: its sample and what was kept about it -> a verdict and what to keep.

Pure: no I/O and no clock (the scan's time comes in as ``now``). ``gpu`` and ``gpu_host``
judge every GPU here, so a GPU gets the same throttle, XID, idle-but-held and health
verdict from both; ``k8s_gpu`` judges its allocated devices' idle stretches with
``idle_devices``; ``rates`` turns the ``gpu`` sensor's counters (energy, PCIe, NVLink)
into values since the last scan. What to keep between scans (``Kept``, counter
readings) is returned, never written: the sensors put it in their state files.

The verdict's rules live in ``health`` (throttle reasons, XID severity, idle-but-held,
health roll-up); this module applies them to one sample and carries the state across.
"""

from __future__ import annotations

from prtg_ai.gpu.health import (
    BIT_SW_POWER_CAP, IDLE_HELD, THR_POWER_CAP_SUSTAINED, IdleStep, decode_reasons, health, idle_held_step,
    throttle_state, worst_xid, worst_xid_code,
)
from prtg_ai.maths.counters import counter_rate
from prtg_ai.maths.records import field, record

# Without a process list (NoPermission), VRAM in use above this counts as "held".
HELD_FALLBACK_BYTES = 256 * 1024 * 1024
XID_KEPT = 200  # [time, code] pairs kept per GPU (a flapping GPU cannot grow the state file)
MB = 1_000_000
KIB = 1024
# Physical ceilings for counter rates (bytes/s): PCIe 6.0 x16 is ~128 GB/s per direction,
# NVLink 5 is 900 GB/s per direction. A higher "rate" is a counter reset or clock step.
PCIE_MAX_BPS = 130e9
NVLINK_MAX_BPS = 1.0e12


@record(frozen=True)
class Policy:
    """The sensor's settings that a verdict depends on."""

    idle_util: float      # utilisation (%) at or below which a GPU counts as idle
    idle_window: float    # seconds idle with VRAM held before "idle but held"
    xid_hold: float       # seconds an XID keeps its severity


@record(frozen=True)
class GpuXids:
    """What the XID source says about one GPU this scan."""

    available: bool = False
    new: tuple = ()       # codes since the last scan, oldest first
    aged: tuple = ()      # first scan only: (age in seconds, code) of XIDs already in the log


@record(frozen=True)
class Kept:
    """What is remembered about one GPU between scans."""

    power_cap: bool = False          # the SW power cap bit was set at the last scan
    idle_since: float | None = None  # start of the current idle-and-held stretch
    xid_recent: tuple = ()           # [time, code] pairs within --xid-hold


def policy_of(values) -> Policy:
    """The policy from a sensor's parameter values (``--idle-util``, ``--idle-window``, ``--xid-hold``)."""
    return Policy(values["idle_util"], values["idle_window"], values.get("xid_hold", 0.0))


def _time(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def kept_from(power_cap, idle_since, xid_recent) -> Kept:
    """``Kept`` from values read back from a state file (anything malformed is forgotten)."""
    recent = tuple(r for r in xid_recent if isinstance(r, (list, tuple)) and len(r) == 2
                   and _time(r[0]) is not None and _time(r[1]) is not None) if isinstance(xid_recent, list) else ()
    return Kept(power_cap is True, _time(idle_since), recent)


@record
class Verdict:
    """One GPU judged for one scan."""

    throttle: int | None = None               # prtgai.gpu.throttle (None: no clock-event reasons)
    reasons: list = field(default_factory=list)  # the clock-event reasons set, in words
    xids: bool = False                        # the XID source answered
    xid_new: list = field(default_factory=list)
    xid_held: list = field(default_factory=list)  # codes within --xid-hold, oldest first
    xid_severity: int = 0
    xid_code: int | None = None
    held: bool | None = None                  # a process holds VRAM (None: cannot tell)
    util: float | None = None                 # utilisation that counts (None under MIG)
    idle: bool = False                        # utilisation at or below --idle-util
    idle_step: IdleStep = IdleStep(0, 0.0, None)
    margin: int | None = None                 # degrees C to thermal slowdown
    health: int = 0
    why: list = field(default_factory=list)

    @property
    def throttled(self) -> bool:
        """Clocks held down (a sustained power cap or worse)."""
        return self.throttle is not None and self.throttle >= THR_POWER_CAP_SUSTAINED

    @property
    def idle_held(self) -> bool:
        return self.idle_step.state == IDLE_HELD

    @property
    def idle_judged(self) -> bool:
        """Both utilisation and VRAM holding are known: the idle-but-held channels are shown."""
        return self.util is not None and self.held is not None


def evaluate(sample, kept: Kept, *, now: float, last_seen: float | None, policy: Policy,
             xids: GpuXids) -> tuple[Verdict, Kept]:
    """Judge ``sample`` (an ``nvml.GpuSample``) against what was kept from the last scan."""
    v, power_cap, last_seen = Verdict(), False, _time(last_seen)
    if sample.clocks_event_reasons is not None:
        mask = int(sample.clocks_event_reasons)
        v.throttle = throttle_state(mask, kept.power_cap)
        v.reasons = decode_reasons(mask)
        power_cap = bool(mask & BIT_SW_POWER_CAP)
    recent = kept.xid_recent  # a silent XID source forgets nothing
    if xids.available:
        recent = held_codes(kept.xid_recent, now, policy.xid_hold, xids.new, xids.aged)
        v.xids, v.xid_new, v.xid_held = True, list(xids.new), [c for _, c in recent]
        v.xid_severity, v.xid_code = worst_xid(v.xid_held), worst_xid_code(v.xid_held)
    v.margin = margin(sample)
    v.held = is_held(sample)
    v.util = None if sample.mig_enabled else sample.util_gpu
    v.idle = v.util is not None and v.util <= policy.idle_util
    v.idle_step = idle_held_step(now, v.util, v.held, policy.idle_util, policy.idle_window, kept.idle_since,
                                 last_seen)
    v.health, v.why = health(
        throttle=v.throttle, remap_pending=sample.remap_pending, remap_failure=sample.remap_failure,
        retired_pending=sample.retired_pending, ecc_uncorrected_volatile=sample.ecc_uncorrected_volatile,
        xid=v.xid_severity, recovery_action=sample.recovery_action, xid_code=v.xid_code)
    return v, Kept(power_cap, v.idle_step.since, tuple(recent))


def held_codes(recent, now: float, hold: float, new_codes, aged=()) -> tuple:
    """The ``[time, code]`` pairs still within the hold window, with this scan's codes added.

    ``aged`` (first scan only) are XIDs already in the log with their age: those younger
    than the hold window count as if seen when they happened, so an XID 79 ten minutes
    before the sensor was set up is not "No XID".
    """
    kept = [list(r) for r in recent if now - hold <= r[0] <= now]
    kept += [[now - age, int(c)] for age, c in aged if age <= hold]
    kept += [[now, int(c)] for c in new_codes]
    return tuple(kept[-XID_KEPT:])


def is_held(sample) -> bool | None:
    """Whether a process holds VRAM on this GPU (None when that cannot be told)."""
    if sample.processes is not None:
        return any((p.used_bytes or 0) > 0 or p.used_bytes is None for p in sample.processes)
    if sample.memory is not None:
        return sample.memory.used > HELD_FALLBACK_BYTES
    return None


def margin(sample) -> int | None:
    """Degrees C to the slowdown threshold (NVML's own margin, else threshold - temperature)."""
    if sample.margin_temperature is not None:
        return int(sample.margin_temperature)
    if sample.slowdown_threshold is not None and sample.temperature is not None:
        return int(sample.slowdown_threshold) - int(sample.temperature)
    return None


# -- counters (``gpu``: energy and PCIe/NVLink traffic since the last scan) ---------------
def counters(sample) -> dict[str, tuple[int, float, str]]:
    """This scan's counter readings: key -> (value in J/1000 or bytes, ceiling per second, what)."""
    out = {}
    if sample.energy_mj is not None:
        out["energy"] = (int(sample.energy_mj), (sample.power_limit_mw or 2_000_000) * 2.0, "energy counter")
    for key, value in (("pcie_tx", sample.pcie_tx_bytes), ("pcie_rx", sample.pcie_rx_bytes)):
        if value is not None:
            out[key] = (int(value), PCIE_MAX_BPS, "PCIe byte counter")
    for key, value in (("nvlink_tx", sample.nvlink_tx_kib), ("nvlink_rx", sample.nvlink_rx_kib)):
        if value is not None:
            out[key] = (int(value) * KIB, NVLINK_MAX_BPS, "NVLink byte counter")
    return out


def rates(sample, before: dict, last_seen: float | None, now: float) -> tuple[dict, list[str], dict]:
    """Energy (J) and traffic (MB/s) since the last scan, notes on counters that gave none, and the readings.

    ``before`` holds the last scan's readings by key; a first scan, a reset or an
    impossible rate gives no value for that counter (never a negative or a spike).
    """
    values, notes, readings, last_seen = {}, [], {}, _time(last_seen)
    for key, (value, ceiling, what) in counters(sample).items():
        readings[key] = value
        prev = before.get(key)
        if not isinstance(prev, int) or isinstance(prev, bool) or last_seen is None:
            continue  # first scan, or a reading the state file does not hold as a count
        rate = counter_rate(int(prev), float(last_seen), value, now, max_rate=ceiling)
        if rate.value is None:
            notes.append(f"The {what} gave no value this scan ({rate.reason})")
        elif key == "energy":
            values[key] = round(rate.delta / 1000.0, 3)
        else:
            values[key] = round(rate.delta / (now - last_seen) / MB, 3)
    return values, notes, readings


def idle_devices(devices, before: dict, last_seen: float | None, now: float, policy: Policy):
    """``k8s_gpu``: allocated devices idle for ``policy.idle_window``, and the stretches to keep.

    ``devices`` are ``(key, label, utilisation %, [pods])``; a device counts as held
    while a pod is allocated to it. Returns ``([(label, pods, seconds idle)], {key: since})``.
    """
    idle, kept = [], {}
    for key, label, util, pods in devices:
        step = idle_held_step(now, util, bool(pods), policy.idle_util, policy.idle_window, _time(before.get(key)),
                              _time(last_seen))
        if step.since is not None:
            kept[key] = step.since
        if step.state == IDLE_HELD:
            idle.append((label, pods, step.held_seconds))
    return idle, kept
