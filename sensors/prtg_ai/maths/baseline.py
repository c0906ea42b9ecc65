"""Adaptive baselines: is this value normal for this hour of the week?

Pure: reads nothing and writes nothing. The runtime (``core.runtime``) keeps each
baselined channel's history in a state file of the sensor instance and calls
``Baseline.observe`` once per scan; this module only does the statistics.

Model (seasonal, robust):

* A week has 168 hourly slots (UTC, Monday 00:00 = slot 0). Each slot keeps at most
  ``SLOT_SAMPLES`` values, at most one per ``SLOT_SPACING_S`` seconds, so memory is
  bounded (168 x 16 numbers per channel) whatever the scan interval, and a slot
  remembers the last ``SLOT_SAMPLES / (3600 / SLOT_SPACING_S)`` weeks.
* The expected value is the median of the slot (once it holds a week's values;
  before that, of the same hour of every day). The spread is the MAD (x 1.4826, the
  normal-consistent scale) of the slot, but never less than the MAD of the
  residuals of all same-hour slots around their own medians: a MAD of a handful
  of values is often far too small, and a too-small spread means false alarms.
  Daily patterns are learnt in days, weekly ones in a week.
* The robust z-score ``(x - median) / scale`` is the Deviation channel. A scale of
  zero (constant series) falls back to 1.2533 x mean absolute deviation (the IBM
  modified z-score rule) and is never below ``REL_FLOOR`` of the level, so changes
  under 1 % of the level are never anomalies.
* Classification uses the instant |z| (spikes) and an exponentially weighted mean of
  z (level shifts and slow drifts, which single scans show only weakly).
* Cold start: for ``LEARNING_S`` (one week, so a weekend has been seen once) after
  the first sample, and whenever no slot has enough history, the state is
  "learning" and the Deviation is 0: it never alarms.

Times are UTC: a daylight-saving change moves a local pattern by one slot for a
few weeks, which the spread of neighbouring values mostly absorbs.
"""

from __future__ import annotations

import math

HOURS_PER_WEEK = 168
# The Unix epoch was a Thursday: shift by three days so slot 0 is Monday 00:00 UTC.
EPOCH_WEEK_OFFSET_H = 72
SLOT_SAMPLES = 16
SLOT_SPACING_S = 900.0
MIN_WEEK = 4  # one week's values in an hour-of-week slot: its own centre
MIN_POOL = 6  # before that, the same hour of every day
MIN_RESIDUALS = 12
# Croux & Rousseeuw, "Time-efficient algorithms for two highly robust estimators of
# scale" (1992): b_n for n = 2..9; n / (n - 0.8) above.
_MAD_SMALL_N = {2: 1.196, 3: 1.495, 4: 1.363, 5: 1.206, 6: 1.200, 7: 1.140, 8: 1.129, 9: 1.107}
LEARNING_S = 7 * 86400.0
MAD_SCALE = 1.4826
MEANAD_SCALE = 1.2533
REL_FLOOR = 0.01
ABS_FLOOR = 1e-9
Z_CLAMP = 99.0
# EWMA of z: alpha 0.2 averages about the last 9 scans; iid noise gives it a
# standard deviation of sqrt(alpha / (2 - alpha)) = 0.33, so 2.5 is 7.5 sigma.
EWMA_ALPHA = 0.2
Z_UNUSUAL, Z_ANOMALOUS = 4.5, 6.0
EWMA_UNUSUAL, EWMA_ANOMALOUS = 2.5, 3.5

# prtgai.baseline.state lookup values
LEARNING, NORMAL, UNUSUAL, ANOMALOUS = 0, 1, 2, 3
STATE_NAMES = {LEARNING: "learning", NORMAL: "normal", UNUSUAL: "unusual", ANOMALOUS: "anomalous"}


def hour_of_week(t: float) -> int:
    """Slot index 0..167 of epoch seconds ``t`` (UTC; Monday 00:00 is 0)."""
    return int(t // 3600 + EPOCH_WEEK_OFFSET_H) % HOURS_PER_WEEK


# Hand-written rather than ``statistics.median``: any sensor may carry ``--baseline``, and
# importing ``statistics`` (``fractions``, ``decimal``, ``random`` behind it) on every scan
# would take nearly all the room the benchmark row "start-up: gpu (console script, whole
# process)" leaves (benchmarks/bench_startup.py, target <= 1.3 of the bare pynvml import).
# Where a row has room, the pack uses ``statistics`` (maths/trend.py, checkpoint_volume).
def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def small_sample_factor(n: int) -> float:
    """Croux and Rousseeuw's (1992) correction making a MAD of ``n`` values unbiased."""
    return _MAD_SMALL_N.get(n, n / (n - 0.8) if n > 9 else 1.0)


def robust_scale(values: list[float], centre: float) -> float:
    """Normal-consistent spread of ``values`` around ``centre``, never zero."""
    deviations = [abs(v - centre) for v in values]
    mad = median(deviations)
    if mad > 0:
        scale = MAD_SCALE * mad * small_sample_factor(len(values))
    else:
        scale = MEANAD_SCALE * (sum(deviations) / len(deviations))
    return max(scale, REL_FLOOR * abs(centre), ABS_FLOOR)


def residual_scale(groups: list[list[float]]) -> float | None:
    """Robust spread of values around their own group's median, pooled over groups.

    Each group is one slot (a level of its own); the residuals measure the noise
    without the differences between slots. Residuals around a median fitted on a
    few values are too small; each group's are stretched by the small-sample factor.
    """
    residuals: list[float] = []
    for values in groups:
        n = len(values)
        if n >= 3:
            centre = median(values)
            stretch = small_sample_factor(n)
            residuals.extend(abs(v - centre) * stretch for v in values)
    if len(residuals) < MIN_RESIDUALS:
        return None
    return MAD_SCALE * median(residuals)


def classify(z: float, ewma: float) -> int:
    if abs(z) >= Z_ANOMALOUS or abs(ewma) >= EWMA_ANOMALOUS:
        return ANOMALOUS
    if abs(z) >= Z_UNUSUAL or abs(ewma) >= EWMA_UNUSUAL:
        return UNUSUAL
    return NORMAL


class Verdict:
    """What the baseline says about one value: z-score, smoothed z, state, expectation."""

    __slots__ = ("z", "ewma", "state", "expected", "scale")

    def __init__(self, z: float, ewma: float, state: int, expected: float | None, scale: float | None):
        self.z, self.ewma, self.state, self.expected, self.scale = z, ewma, state, expected, scale

    def __repr__(self) -> str:
        return f"Verdict({STATE_NAMES[self.state]}, z={self.z:.2f}, ewma={self.ewma:.2f})"


class Baseline:
    """The seasonal baseline of one channel, as a JSON-ready dict (``doc``).

    Args:
        doc: the stored baseline (from the state file) or ``None`` to start learning.
            Malformed content is discarded, never trusted.
    """

    def __init__(self, doc: dict | None = None):
        self.first: float | None = None
        self.ewma = 0.0
        self.slots: dict[int, list[float]] = {}
        self.stamps: dict[int, float] = {}
        if isinstance(doc, dict):
            self._load(doc)

    def _load(self, doc: dict) -> None:
        try:
            first = doc.get("first")
            self.first = float(first) if first is not None else None
            self.ewma = float(doc.get("ewma", 0.0))
            for key, values in dict(doc.get("slots", {})).items():
                slot = int(key)
                if 0 <= slot < HOURS_PER_WEEK and isinstance(values, list):
                    kept = [float(v) for v in values[-SLOT_SAMPLES:] if _finite(v)]
                    if kept:
                        self.slots[slot] = kept
            for key, stamp in dict(doc.get("stamps", {})).items():
                if int(key) in self.slots:
                    self.stamps[int(key)] = float(stamp)
        except (TypeError, ValueError, AttributeError):
            self.__init__(None)
        if not math.isfinite(self.ewma):
            self.ewma = 0.0

    def doc(self) -> dict:
        return {"first": self.first, "ewma": round(self.ewma, 6),
                "slots": {str(k): v for k, v in sorted(self.slots.items())},
                "stamps": {str(k): v for k, v in sorted(self.stamps.items())}}

    def reference(self, slot: int) -> tuple[float, float] | None:
        """Expected value and spread for ``slot``, or ``None`` while there is too little history."""
        own = self.slots.get(slot, [])
        same_hour = [self.slots.get(slot % 24 + 24 * day, []) for day in range(7)]
        noise = residual_scale(same_hour)
        if len(own) >= MIN_WEEK:
            centre = median(own)
        else:
            pooled = [v for values in same_hour for v in values]
            if len(pooled) < MIN_POOL:
                return None
            own, centre = pooled, median(pooled)
        # A handful of values gives a MAD that is often far too small; the noise
        # around every same-hour slot's own median is measured on many more.
        return centre, max(robust_scale(own, centre), noise or 0.0)

    def observe(self, t: float, value: float) -> Verdict:
        """Judge ``value`` seen at ``t`` against the history, then learn it."""
        if not _finite(value):
            return Verdict(0.0, self.ewma, LEARNING, None, None)
        if self.first is None or t < self.first:
            self.first = t  # a clock stepped back before the first sample restarts learning
        slot = hour_of_week(t)
        ref = self.reference(slot)
        if ref is None or t - self.first < LEARNING_S:
            verdict = Verdict(0.0, 0.0, LEARNING, ref[0] if ref else None, None)
        else:
            centre, scale = ref
            z = max(-Z_CLAMP, min(Z_CLAMP, (value - centre) / scale))
            self.ewma = EWMA_ALPHA * z + (1 - EWMA_ALPHA) * self.ewma
            verdict = Verdict(z, self.ewma, classify(z, self.ewma), centre, scale)
        self._learn(slot, t, value)
        return verdict

    def _learn(self, slot: int, t: float, value: float) -> None:
        last = self.stamps.get(slot)
        # One value per spacing keeps every slot's memory bounded and its history
        # spread over weeks rather than over the last minutes of one week.
        if last is not None and 0 <= t - last < SLOT_SPACING_S:
            return
        values = self.slots.setdefault(slot, [])
        values.append(round(float(value), 6))
        del values[:-SLOT_SAMPLES]
        self.stamps[slot] = t


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
