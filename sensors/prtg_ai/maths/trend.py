"""Pure trend maths for growth sensors: least squares, envelopes and changepoints.

Used by ``checkpoint_volume`` and ``inference`` (its memory-leak slope); nothing here
does I/O. All functions take samples as ``(t, y)`` pairs with ``t`` in seconds and
return finite numbers or ``None``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

Point = tuple[float, float]


def least_squares_slope(points: Sequence[Point]) -> float | None:
    """Slope (y per second) of the least-squares line through ``points``.

    ``None`` when fewer than two distinct times exist (no trend can be fitted).
    """
    if len(points) < 2:
        return None
    try:
        slope, _ = statistics.linear_regression([t for t, _ in points], [y for _, y in points])
    except (ValueError, OverflowError):  # StatisticsError: every sample at one time; or a non-finite value
        return None
    return slope if math.isfinite(slope) else None


def last_changepoint(points: Sequence[Point], drop_threshold: float) -> int:
    """Index where the series restarts after the last drop of at least ``drop_threshold``.

    A manual cleanup (or a retention change) frees far more than one save; the
    samples before it say nothing about today's growth.
    """
    start = 0
    for i in range(1, len(points)):
        if points[i - 1][1] - points[i][1] >= drop_threshold:
            start = i
    return start


def upper_envelope(points: Sequence[Point]) -> list[Point]:
    """The peaks a save-then-prune sawtooth reaches, plus the current level if higher.

    Retention (keep last K) writes a checkpoint, then deletes the oldest: usage
    oscillates around a steady level. Regressing through the peaks gives the
    trend of the level a save must fit under; with no drops at all, every point is
    on the envelope.
    """
    if len(points) < 2:
        return list(points)
    peaks = [points[i] for i in range(len(points) - 1) if points[i][1] > points[i + 1][1]]
    if not peaks:
        return list(points)
    last_peak_t = peaks[-1][0]
    tail = [p for p in points if p[0] > last_peak_t and p[1] >= peaks[-1][1]]
    return peaks + tail


def gross_increase_rate(points: Sequence[Point]) -> float | None:
    """Sum of positive steps divided by the time span (y per second): the churn."""
    if len(points) < 2:
        return None
    span = points[-1][0] - points[0][0]
    if span <= 0:
        return None
    gross = sum(max(0.0, b[1] - a[1]) for a, b in zip(points, points[1:]))
    return gross / span


def thin(samples: list, cap: int, value_index: int = 1) -> list:
    """Bound a sample list to ``cap`` entries, halving the density of the older half.

    Peaks (a sample higher than its successor) are kept so the envelope survives.
    """
    samples = list(samples)
    while len(samples) > cap:
        half = len(samples) // 2
        older, newer = samples[:half], samples[half:]
        kept = [s for i, s in enumerate(older)
                if i % 2 == 0 or (i + 1 < len(older) and s[value_index] > older[i + 1][value_index])]
        if len(kept) == len(older):  # nothing removable: drop the oldest outright
            kept = older[len(samples) - cap:]
        samples = kept + newer
    return samples
