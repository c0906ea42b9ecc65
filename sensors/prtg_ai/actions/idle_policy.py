"""Pure rules of ``prtg-ai act stop-idle-gpus``: tags, maintenance windows, idle evidence, the cap.

Nothing here touches AWS, the disk or the clock: the orchestrator (``stop_idle_gpus.py``)
reads instances and CloudWatch points through the backend and hands them in.

An instance is stopped only when every rule holds, checked in this order (the first
that fails is the reason recorded):

1. a GPU/accelerator instance (the ``gpu_spend`` catalogue: ``spend_model.is_gpu_type``);
2. opted in by tag (default ``prtg-ai:auto-stop`` = ``true``, case-insensitive);
3. not protected (tag ``prtg-ai:protect`` present, whatever its value);
4. outside every maintenance window (``--maintenance-window`` and the instance's
   ``prtg-ai:maintenance-window`` tag; an unreadable tag counts as "inside": fail safe);
5. running for at least ``--min-age`` (``LaunchTime``);
6. idle for ``--idle-for`` by CloudWatch: GPU utilisation (CWAgent
   ``nvidia_smi_utilization_gpu``, every GPU) when it covers the window, otherwise
   ``CPUUtilization`` and ``NetworkIn``/``NetworkOut``; any point at or above its
   threshold is "busy", too few points is "no evidence" (never idle);
7. within ``--max-instances`` for this run (the most expensive idle instances first).

Maintenance window format (UTC; only characters AWS allows in tag values):
``[DAYS@]HH:MM-HH:MM``, several separated by spaces. ``DAYS`` is a day (``Mon``),
a range (``Mon-Fri``, ``Fri-Mon`` wraps), a ``+`` list (``Sat+Sun``) or ``daily``;
without ``DAYS@`` every day. An end at or before the start runs past midnight into
the next day (``Fri@22:00-06:00`` is Friday 22:00 to Saturday 06:00); equal times
mean the whole day. Examples: ``Mon-Fri@08:00-18:00``, ``daily@02:00-04:00 Sat+Sun@00:00-00:00``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone

from prtg_ai.gpu_spend import spend_model as sm

DEFAULT_OPT_IN_KEY = "prtg-ai:auto-stop"
DEFAULT_OPT_IN_VALUE = "true"
DEFAULT_PROTECT_KEY = "prtg-ai:protect"
DEFAULT_WINDOW_KEY = "prtg-ai:maintenance-window"
DEFAULT_IDLE_FOR_S = 3600.0
DEFAULT_MIN_AGE_S = 7200.0
DEFAULT_MAX_INSTANCES = 3
# Same defaults as gpu_spend's --idle-gpu-percent / --idle-cpu-percent, so "idle" means the same there.
DEFAULT_IDLE_GPU_PERCENT = 5.0
DEFAULT_IDLE_CPU_PERCENT = 10.0
DEFAULT_IDLE_NETWORK_KIB_S = 50.0
PERIOD_S = 300                 # CloudWatch basic monitoring is 5-minutely
COVERAGE = 0.5                 # at least half of the window's periods must have a point
MAX_LAG_PERIODS = 3            # the newest point may be this many periods old (CloudWatch lags)
MAX_WINDOWS = 16
MAX_WINDOW_SPEC = 256

# Reason codes (audit log ``reason_code``), in rule order.
NOT_GPU, NOT_OPTED_IN, PROTECTED = "not-gpu", "not-opted-in", "protected"
IN_WINDOW, TOO_YOUNG = "in-window", "too-young"
BUSY, NO_EVIDENCE, OVER_CAP, IDLE = "busy", "no-evidence", "over-cap", "idle"

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^(?:(?P<days>[A-Za-z+\-]+)@)?(?P<h1>\d{2}):(?P<m1>\d{2})-(?P<h2>\d{2}):(?P<m2>\d{2})$")


class WindowError(ValueError):
    """A maintenance window spec that does not follow the format."""


class Window:
    """One maintenance window: days of the week (0 = Monday) and minutes of the day, UTC."""

    __slots__ = ("days", "start", "end", "text")

    def __init__(self, days: frozenset[int], start: int, end: int, text: str):
        self.days, self.start, self.end, self.text = days, start, end, text

    def active(self, ts: float) -> bool:
        t = datetime.fromtimestamp(ts, tz=timezone.utc)
        minute, day = t.hour * 60 + t.minute, t.weekday()
        if self.start == self.end:
            return day in self.days
        if self.start < self.end:
            return day in self.days and self.start <= minute < self.end
        # Past midnight: the evening of a listed day, or the early hours of the day after one.
        return (day in self.days and minute >= self.start) or ((day - 1) % 7 in self.days and minute < self.end)


def _days(text: str) -> frozenset[int]:
    text = text.lower()
    if text in ("daily", "all", "*"):
        return frozenset(range(7))
    out: set[int] = set()
    for part in text.split("+"):
        if "-" in part:
            a, _, b = part.partition("-")
            if a not in _DAYS or b not in _DAYS:
                raise WindowError(f"{part!r} is not a day range such as Mon-Fri")
            i, j = _DAYS.index(a), _DAYS.index(b)
            out.update((i + k) % 7 for k in range((j - i) % 7 + 1))
        elif part in _DAYS:
            out.add(_DAYS.index(part))
        else:
            raise WindowError(f"{part!r} is not a day (Mon, Tue, ... Sun, or daily)")
    return frozenset(out)


def parse_windows(spec: str | None) -> list[Window]:
    """``"Mon-Fri@08:00-18:00 Sat+Sun@00:00-00:00"`` -> windows; empty or None -> no window.

    Raises:
        WindowError: with what is wrong, naming the part (never the whole tag value).
    """
    spec = (spec or "").strip()
    if not spec:
        return []
    if len(spec) > MAX_WINDOW_SPEC:
        raise WindowError(f"longer than {MAX_WINDOW_SPEC} characters")
    parts = spec.split()
    if len(parts) > MAX_WINDOWS:
        raise WindowError(f"more than {MAX_WINDOWS} windows")
    out = []
    for part in parts:
        m = _WINDOW.match(part)
        if not m:
            raise WindowError(f"{part[:40]!r} is not [DAYS@]HH:MM-HH:MM (e.g. Mon-Fri@08:00-18:00)")
        h1, m1, h2, m2 = (int(m.group(k)) for k in ("h1", "m1", "h2", "m2"))
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise WindowError(f"{part[:40]!r} has a time outside 00:00-24:00")
        days = _days(m.group("days")) if m.group("days") else frozenset(range(7))
        out.append(Window(days, h1 * 60 + m1, (h2 * 60 + m2) % 1440, part))
    return out


def active_window(windows: Iterable[Window], ts: float) -> Window | None:
    return next((w for w in windows if w.active(ts)), None)


# -- evidence -------------------------------------------------------------------------
class Thresholds:
    """What counts as idle: every point below these."""

    __slots__ = ("gpu", "cpu", "net_bytes_s")

    def __init__(self, gpu: float = DEFAULT_IDLE_GPU_PERCENT, cpu: float = DEFAULT_IDLE_CPU_PERCENT,
                 net_kib_s: float = DEFAULT_IDLE_NETWORK_KIB_S):
        self.gpu, self.cpu, self.net_bytes_s = float(gpu), float(cpu), float(net_kib_s) * 1024.0


class Evidence:
    """The verdict on one instance's CloudWatch data and what it rests on (for the audit log)."""

    __slots__ = ("state", "source", "text", "detail")

    def __init__(self, state: str, source: str, text: str, detail: dict):
        self.state, self.source, self.text, self.detail = state, source, text, detail

    def to_json(self) -> dict:
        return {"state": self.state, "source": self.source, "text": self.text, **self.detail}


def _clean(points: Iterable[Sequence[float]] | None) -> list[tuple[float, float]]:
    return sorted((float(t), float(v)) for t, v in points or () if v is not None and math.isfinite(float(v)))


def covers(points: Sequence[tuple[float, float]], start: float, end: float, period: int = PERIOD_S) -> bool:
    """Whether points span ``[start, end]``: first within a period of the start, newest not too old,
    and at least ``COVERAGE`` of the periods present."""
    if not points:
        return False
    stamps = sorted({t for t, _ in points})
    expected = max(1, int((end - start) // period))
    return (stamps[0] <= start + period and stamps[-1] >= end - MAX_LAG_PERIODS * period
            and len(stamps) >= math.ceil(COVERAGE * expected))


def assess(gpu: Sequence[Iterable[Sequence[float]]], cpu, net_in, net_out, start: float, end: float,
           limits: Thresholds, period: int = PERIOD_S) -> Evidence:
    """Decide idle / busy / unknown from CloudWatch points over ``[start, end]``.

    Args:
        gpu: one point list per GPU series (CWAgent ``nvidia_smi_utilization_gpu``, Maximum per period).
        cpu: ``CPUUtilization`` points (Maximum per period).
        net_in, net_out: ``NetworkIn`` / ``NetworkOut`` points (Sum per period, bytes).
    """
    minutes = int(round((end - start) / 60.0))
    series = [_clean(s) for s in gpu]
    gpu_points = [p for s in series for p in s]
    if gpu_points:
        top = max(v for _, v in gpu_points)
        detail = {"gpu_series": len(series), "gpu_max_percent": round(top, 2), "points": len(gpu_points)}
        if top >= limits.gpu:
            return Evidence(BUSY, "gpu", f"busy: GPU reached {top:.1f}% (nvidia_smi_utilization_gpu) "
                                         f"in the last {minutes} min", detail)
        if covers(gpu_points, start, end, period):
            return Evidence(IDLE, "gpu", f"idle {minutes} min: GPU max {top:.1f}% < {limits.gpu:g}% "
                                         f"(nvidia_smi_utilization_gpu, {len(series)} GPU series)", detail)
    cpu_p, in_p, out_p = _clean(cpu), _clean(net_in), _clean(net_out)
    detail = {"points": len(cpu_p)}
    if gpu_points:
        detail["gpu_incomplete"] = True
    if cpu_p:
        detail["cpu_max_percent"] = round(max(v for _, v in cpu_p), 2)
    rate_in = max((v / period for _, v in in_p), default=None)
    rate_out = max((v / period for _, v in out_p), default=None)
    if rate_in is not None:
        detail["net_in_max_bytes_s"] = round(rate_in, 1)
    if rate_out is not None:
        detail["net_out_max_bytes_s"] = round(rate_out, 1)
    what = "GPU data incomplete; " if gpu_points else ""
    if cpu_p and detail["cpu_max_percent"] >= limits.cpu:
        return Evidence(BUSY, "cpu+network", f"busy: {what}CPU reached {detail['cpu_max_percent']:.1f}% "
                                             f"in the last {minutes} min", detail)
    for name, rate in (("in", rate_in), ("out", rate_out)):
        if rate is not None and rate >= limits.net_bytes_s:
            return Evidence(BUSY, "cpu+network", f"busy: {what}network {name} reached {rate / 1024.0:.0f} KiB/s "
                                                 f"in the last {minutes} min", detail)
    if covers(cpu_p, start, end, period) and covers(in_p, start, end, period) and covers(out_p, start, end, period):
        net = max(rate_in or 0.0, rate_out or 0.0) / 1024.0
        return Evidence(IDLE, "cpu+network",
                        f"idle {minutes} min: {what or 'no GPU metrics; '}CPU max {detail['cpu_max_percent']:.1f}% "
                        f"< {limits.cpu:g}%, network max {net:.1f} KiB/s < {limits.net_bytes_s / 1024.0:g} KiB/s",
                        detail)
    return Evidence(NO_EVIDENCE, "none", f"no evidence: CloudWatch data does not cover the last {minutes} min "
                                         "(GPU, or CPU and network); never stopped without it", detail)


# -- rules before evidence -------------------------------------------------------------
class Rules:
    """The action's configuration, checked."""

    def __init__(self, opt_in_key: str = DEFAULT_OPT_IN_KEY, opt_in_value: str = DEFAULT_OPT_IN_VALUE,
                 protect_key: str = DEFAULT_PROTECT_KEY, window_key: str = DEFAULT_WINDOW_KEY,
                 windows: Sequence[Window] = (), min_age_s: float = DEFAULT_MIN_AGE_S,
                 idle_for_s: float = DEFAULT_IDLE_FOR_S, max_instances: int = DEFAULT_MAX_INSTANCES,
                 families: Sequence[str] = sm.GPU_FAMILIES, limits: Thresholds | None = None):
        self.opt_in_key, self.opt_in_value = opt_in_key, opt_in_value
        self.protect_key, self.window_key = protect_key, window_key
        self.windows = list(windows)
        self.min_age_s, self.idle_for_s = float(min_age_s), float(idle_for_s)
        self.max_instances = int(max_instances)
        self.families = tuple(families)
        self.limits = limits or Thresholds()


def opted_in(tags: Mapping[str, str], rules: Rules) -> bool:
    return tags.get(rules.opt_in_key, "").strip().lower() == rules.opt_in_value.lower()


def precheck(inst: Mapping, info: sm.TypeInfo | None, rules: Rules, now: float) -> tuple[str, str] | None:
    """The first rule before evidence that fails, as ``(reason code, text)``; None when all hold."""
    tags = inst.get("tags") or {}
    if not sm.is_gpu_type(str(inst.get("type", "")), info, rules.families):
        return NOT_GPU, "not a GPU/accelerator instance"
    if not opted_in(tags, rules):
        return NOT_OPTED_IN, f"not opted in (tag {rules.opt_in_key}={rules.opt_in_value})"
    if rules.protect_key in tags:
        return PROTECTED, f"protected (tag {rules.protect_key})"
    window = active_window(rules.windows, now)
    if window is not None:
        return IN_WINDOW, f"inside maintenance window {window.text} (--maintenance-window)"
    spec = tags.get(rules.window_key, "")
    if spec.strip():
        try:
            window = active_window(parse_windows(spec), now)
        except WindowError as exc:
            return IN_WINDOW, f"maintenance window tag {rules.window_key} unreadable ({exc}); not stopped"
        if window is not None:
            return IN_WINDOW, f"inside maintenance window {window.text} (tag {rules.window_key})"
    launched = inst.get("launch_time")
    if launched is None:
        return TOO_YOUNG, "launch time unknown"
    age = now - float(launched)
    if age < rules.min_age_s:
        return TOO_YOUNG, (f"too young: running {max(0, int(age // 60))} min "
                           f"< --min-age {int(rules.min_age_s // 60)} min")
    return None


def pick(candidates: Sequence[Mapping], cap: int) -> tuple[list, list]:
    """The idle candidates to stop this run (highest $/h first, then the longest running) and the rest."""
    ordered = sorted(candidates, key=lambda c: (-(c.get("usd_per_hour") or 0.0), c.get("launch_time") or 0.0,
                                                str(c.get("id"))))
    return list(ordered[:max(0, cap)]), list(ordered[max(0, cap):])
