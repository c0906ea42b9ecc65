"""Pure maths for turning cumulative counters into rates, safely.

Counters reset (reboot, driver reload, link flap), wrap (32-bit), saturate (IB
error counters stick at all ones) and clocks step. None of that may become a
negative, infinite or absurd rate: each function returns ``None`` plus a reason
instead, and the sensor says "collecting baseline" or omits the channel.
"""

from __future__ import annotations

import math
from collections import namedtuple

# A rate per second (``value``), or ``None`` with the ``reason`` no rate could be given.
RateResult = namedtuple("RateResult", ("value", "reason", "delta"), defaults=(None, None))


def is_saturated(value: int, bits: int) -> bool:
    """A counter of ``bits`` width stuck at all ones has stopped counting."""
    return bits > 0 and value >= (1 << bits) - 1


def counter_delta(previous: int, current: int, bits: int | None = None) -> tuple[float | None, str | None]:
    """Increase of a monotonically increasing counter between two reads.

    A smaller ``current`` is a wrap only for a narrow counter whose previous value
    was in the top quarter of its range; anything else is a reset.
    """
    if previous is None or current is None:
        return None, "no previous sample"
    if current >= previous:
        return float(current - previous), None
    if bits and bits <= 32 and (1 << bits) * 3 // 4 <= previous < (1 << bits):
        return float((1 << bits) - previous + current), None
    return None, "counter reset"


def counter_rate(previous: int, previous_t: float, current: int, current_t: float,
                 bits: int | None = None, max_rate: float | None = None) -> RateResult:
    """Rate per second of a counter between two timestamped reads.

    Args:
        previous, previous_t: the earlier read and its wall-clock time (seconds).
        current, current_t: the later read and its time.
        bits: the counter's width when it can wrap (32-bit NIC or IB counters).
        max_rate: a physical ceiling (e.g. link speed); a higher rate is discarded.
    """
    elapsed = current_t - previous_t
    if not math.isfinite(elapsed) or elapsed <= 0:
        return RateResult(None, "the clock moved back or did not advance")
    if bits and is_saturated(current, bits):
        return RateResult(None, "counter saturated")
    delta, reason = counter_delta(previous, current, bits)
    if delta is None:
        return RateResult(None, reason)
    rate = delta / elapsed
    if not math.isfinite(rate) or rate < 0:
        return RateResult(None, "invalid rate")
    if max_rate is not None and rate > max_rate * 1.05:
        return RateResult(None, "rate above the physical maximum (counter reset or clock step)")
    return RateResult(rate, None, delta)
