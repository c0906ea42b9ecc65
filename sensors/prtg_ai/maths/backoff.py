"""Exponential back-off: how long to wait after failures in a row. Pure: no clock, no sleep.

The pack's one back-off rule, used where something failed and is tried again: a
failed cloud refresh (``gpu_spend``'s caches), a failed push to a PRTG probe (with
jitter added by the pusher), and a state-file rename that Windows refused because a
reader held the file open.
"""

from __future__ import annotations


def backoff_s(failures: int, base_s: float, cap_s: float) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: ``base_s * 2**(failures-1)``, at most ``cap_s``.

    ``failures`` below 1 counts as 1; the exponent stops growing at 2**30, so a count
    kept for years cannot overflow.
    """
    return min(cap_s, base_s * (2 ** max(0, min(int(failures) - 1, 30))))
