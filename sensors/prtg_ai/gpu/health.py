"""Pure GPU decoding shared by ``gpu`` and ``gpu_host``: throttle reasons, XID severity,
idle-but-held tracking and the health roll-up.

The lookup values here are the ones in ``catalog/gpu.lookups.csv``; the states
(Ok/Warning/Error) live in the lookups, not in code.
"""

from __future__ import annotations

from prtg_ai.maths.records import record

# -- clock-event ("throttle") reasons --------------------------------------------------
# Bits from nvml.h (nvmlClocksEventReason*), identical in NVML 12 and 13.
BIT_GPU_IDLE = 0x1
BIT_APP_CLOCKS = 0x2
BIT_SW_POWER_CAP = 0x4
BIT_HW_SLOWDOWN = 0x8
BIT_SYNC_BOOST = 0x10
BIT_SW_THERMAL = 0x20
BIT_HW_THERMAL = 0x40
BIT_HW_POWER_BRAKE = 0x80
BIT_DISPLAY_CLOCKS = 0x100

# prtgai.gpu.throttle values, ordered from harmless to worst.
THR_NONE, THR_IDLE, THR_CLOCK_SETTING, THR_SYNC_BOOST, THR_POWER_CAP, THR_POWER_CAP_SUSTAINED, \
    THR_SW_THERMAL, THR_HW_SLOWDOWN, THR_HW_THERMAL, THR_HW_POWER_BRAKE = range(10)

_REASONS = (  # bit, lookup value, text for the sensor message
    (BIT_GPU_IDLE, THR_IDLE, "idle"),
    (BIT_APP_CLOCKS, THR_CLOCK_SETTING, "application clock setting"),
    (BIT_DISPLAY_CLOCKS, THR_CLOCK_SETTING, "display clock setting"),
    (BIT_SYNC_BOOST, THR_SYNC_BOOST, "sync boost"),
    (BIT_SW_POWER_CAP, THR_POWER_CAP, "SW power cap"),
    (BIT_SW_THERMAL, THR_SW_THERMAL, "SW thermal slowdown"),
    (BIT_HW_SLOWDOWN, THR_HW_SLOWDOWN, "HW slowdown"),
    (BIT_HW_THERMAL, THR_HW_THERMAL, "HW thermal slowdown"),
    (BIT_HW_POWER_BRAKE, THR_HW_POWER_BRAKE, "HW power brake"),
)
_KNOWN_BITS = sum(bit for bit, _, _ in _REASONS)


def decode_reasons(mask: int) -> list[str]:
    """The names of the reasons set in ``mask`` (unknown bits shown in hex)."""
    names = [text for bit, _, text in _REASONS if mask & bit]
    unknown = mask & ~_KNOWN_BITS
    if unknown:
        names.append(f"unknown reason 0x{unknown:x}")
    return names


def throttle_state(mask: int, power_cap_before: bool = False) -> int:
    """Reduce a clock-event bitmask to the worst ``prtgai.gpu.throttle`` value.

    A SW power cap is routine under full load (H100s run at their cap), so it counts
    as Warning only when it was also set at the previous scan (``power_cap_before``).
    """
    worst = THR_NONE
    for bit, value, _ in _REASONS:
        if mask & bit:
            if value == THR_POWER_CAP and power_cap_before:
                value = THR_POWER_CAP_SUSTAINED
            worst = max(worst, value)
    return worst


# -- XID severity -----------------------------------------------------------------------
# prtgai.gpu.xidseverity values. The classification follows NVIDIA's Xid catalogue as
# summarised in reference/gpu-anchors.md section (c); unknown codes count as "restart or
# reset advised" so a new code is never silently Ok.
XID_NONE, XID_INFO, XID_APP, XID_WARN, XID_ERROR, XID_LOST = range(6)
_XID_SEVERITY = {
    45: XID_INFO,
    13: XID_APP, 31: XID_APP, 43: XID_APP,
    8: XID_WARN, 63: XID_WARN, 92: XID_WARN, 94: XID_WARN,
    46: XID_ERROR, 48: XID_ERROR, 61: XID_ERROR, 62: XID_ERROR, 64: XID_ERROR, 74: XID_ERROR,
    95: XID_ERROR, 119: XID_ERROR, 120: XID_ERROR, 140: XID_ERROR, 154: XID_ERROR,
    171: XID_ERROR, 172: XID_ERROR,
    79: XID_LOST,
}


# What each alert-worthy XID means, in NVIDIA's words (Xid catalogue, as tabled by
# dcgm-exporter; reference/gpu-anchors.md section (c)). Used in messages; codes not
# listed are named by their severity (the prtgai.gpu.xidseverity lookup text).
XID_NAMES = {
    8: "GPU stopped processing", 13: "graphics engine exception", 31: "GPU memory page fault",
    43: "GPU stopped processing", 45: "preemptive cleanup after previous errors", 46: "GPU stopped processing",
    48: "double-bit ECC error", 61: "internal micro-controller breakpoint", 62: "internal micro-controller halt",
    63: "ECC page retirement or row remapping recorded", 64: "ECC page retirement or row remapper failure",
    74: "NVLink error", 79: "GPU fell off the bus", 92: "high single-bit ECC error rate",
    94: "contained ECC error", 95: "uncontained ECC error", 119: "GSP RPC timeout", 120: "GSP error",
    140: "unrecovered ECC error", 154: "GPU recovery action changed", 171: "uncorrectable DRAM error",
    172: "uncorrectable SRAM error",
}
XID_SEVERITY_TEXT = {XID_INFO: "informational XID", XID_APP: "application fault XID",
                     XID_WARN: "XID: restart or reset advised", XID_ERROR: "hardware or driver XID",
                     XID_LOST: "GPU fell off the bus"}


def xid_text(code: int) -> str:
    """``XID 79: GPU fell off the bus``: the code and what it means."""
    return f"XID {int(code)}: {XID_NAMES.get(int(code)) or XID_SEVERITY_TEXT[xid_severity(code)]}"


def worst_xid_code(codes) -> int | None:
    """The latest code among those of the worst severity (None for none)."""
    codes = [int(c) for c in codes]
    if not codes:
        return None
    worst = worst_xid(codes)
    return [c for c in codes if xid_severity(c) == worst][-1]


def xid_severity(code: int) -> int:
    """The ``prtgai.gpu.xidseverity`` value of one XID code."""
    return _XID_SEVERITY.get(int(code), XID_WARN)


def worst_xid(codes) -> int:
    """The worst severity among ``codes`` (``XID_NONE`` for none)."""
    return max((xid_severity(c) for c in codes), default=XID_NONE)


# -- idle but held ----------------------------------------------------------------------
# prtgai.gpu.idleheld values.
IDLE_IN_USE, IDLE_FREE, IDLE_HELD_SHORT, IDLE_HELD, IDLE_UNKNOWN = range(5)


@record(frozen=True)
class IdleStep:
    """The idle-but-held verdict for one scan, and what to remember for the next."""

    state: int
    held_seconds: float
    since: float | None


# A gap between scans up to this long still counts as watched: PRTG's common scan
# intervals reach 15 min, so a window at or below the scan interval can fire on the
# second idle scan instead of restarting on every gap.
MAX_WATCHED_GAP_S = 900.0


def idle_held_step(now: float, util: float | None, held: bool | None, idle_util: float, window: float,
                   since: float | None, last_seen: float | None) -> IdleStep:
    """Track "VRAM held while utilisation stays near 0" across scans.

    Args:
        now: this scan's time.
        util: kernel-busy % (None where NVML cannot tell, e.g. under MIG).
        held: whether a process holds VRAM (None where processes are not visible).
        idle_util: utilisation at or below which the GPU counts as idle.
        window: seconds the GPU must stay idle and held to count as idle-but-held.
        since: when the current idle-and-held stretch began (from the state).
        last_seen: time of the previous scan; a gap longer than both ``window`` and
            ``MAX_WATCHED_GAP_S`` restarts the stretch, because nobody watched the
            GPU in between (a gap of one scan interval never does).
    """
    if util is None or held is None:
        return IdleStep(IDLE_UNKNOWN, 0.0, None)
    if util > idle_util:
        return IdleStep(IDLE_IN_USE, 0.0, None)
    if not held:
        return IdleStep(IDLE_FREE, 0.0, None)
    if since is None or last_seen is None or since > now or now - last_seen > max(window, MAX_WATCHED_GAP_S):
        since = now
    held_for = now - since
    return IdleStep(IDLE_HELD if held_for >= window else IDLE_HELD_SHORT, held_for, since)


# -- health roll-up ---------------------------------------------------------------------
# prtgai.gpu.health values.
HEALTH_OK, HEALTH_WARNING, HEALTH_ERROR, HEALTH_LOST = range(4)


def health(*, throttle: int | None = None, remap_pending: bool | None = None, remap_failure: bool | None = None,
           retired_pending: bool | None = None, ecc_uncorrected_volatile: int | None = None,
           xid: int = XID_NONE, recovery_action: int | None = None, lost: bool = False,
           xid_code: int | None = None) -> tuple[int, list[str]]:
    """The worst ``prtgai.gpu.health`` value of one GPU and the reasons for it."""
    if lost:
        return HEALTH_LOST, ["GPU lost (not answering NVML)"]
    findings: list[tuple[int, str]] = []
    if throttle is not None and throttle >= THR_HW_SLOWDOWN:
        findings.append((HEALTH_ERROR, "hardware clock slowdown"))
    elif throttle is not None and throttle >= THR_POWER_CAP_SUSTAINED:
        findings.append((HEALTH_WARNING, "clocks held down (sustained power cap or SW thermal)"))
    if remap_failure:
        findings.append((HEALTH_ERROR, "row remapping failed"))
    if remap_pending:
        findings.append((HEALTH_WARNING, "row remap pending (reset the GPU)"))
    if retired_pending:
        findings.append((HEALTH_WARNING, "page retirement pending (reset the GPU)"))
    if ecc_uncorrected_volatile:
        findings.append((HEALTH_WARNING, f"{ecc_uncorrected_volatile} uncorrected ECC error(s) since driver load"))
    named = xid_text(xid_code) if xid_code is not None else None
    if xid >= XID_ERROR:
        findings.append((HEALTH_ERROR, named or XID_SEVERITY_TEXT[xid]))
    elif xid >= XID_APP:
        findings.append((HEALTH_WARNING, named or "XID reported"))
    if recovery_action:
        findings.append((HEALTH_ERROR, f"NVML asks for recovery action {recovery_action} "
                                       f"({RECOVERY_TEXT.get(recovery_action, 'unknown')})"))
    level = max((lvl for lvl, _ in findings), default=HEALTH_OK)
    return level, [text for _, text in findings]


RECOVERY_TEXT = {0: "none", 1: "GPU reset", 2: "node reboot", 3: "drain peer-to-peer", 4: "drain and reset",
                 5: "recover IMEX domain"}
