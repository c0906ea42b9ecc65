"""Properties of the rate, trend and back-off maths: resets, wraps, saturation, clock steps, sawtooths."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prtg_ai.maths.backoff import backoff_s
from prtg_ai.maths.counters import counter_delta, counter_rate, is_saturated
from prtg_ai.maths.trend import gross_increase_rate, last_changepoint, least_squares_slope, thin, upper_envelope

pytestmark = pytest.mark.reliability("property tests (rates, trends)")

times = st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False)
counts = st.integers(min_value=0, max_value=2 ** 64 - 1)


@given(counts, times, counts, times, st.sampled_from([None, 16, 32, 64]),
       st.one_of(st.none(), st.floats(min_value=1, max_value=1e12)))
def test_counter_rate_is_never_negative_infinite_or_nan(prev, t0, cur, t1, bits, max_rate):
    r = counter_rate(prev, t0, cur, t1, bits=bits, max_rate=max_rate)
    if r.value is None:
        assert r.reason
    else:
        assert math.isfinite(r.value) and r.value >= 0
        if max_rate:
            assert r.value <= max_rate * 1.05


def test_counter_rate_examples():
    assert counter_rate(1000, 0, 61000, 60).value == 1000
    wrapped = counter_rate(2 ** 32 - 600, 0, 400, 10, bits=32)
    assert wrapped.value == 100  # a 32-bit wrap, not a reset
    assert counter_rate(5_000_000, 0, 10, 10).reason == "counter reset"  # reboot / driver reload
    assert counter_rate(10, 100, 20, 50).reason.startswith("the clock moved back")
    assert counter_rate(10, 100, 20, 100).value is None
    assert counter_rate(0, 0, 2 ** 32 - 1, 10, bits=32).reason == "counter saturated"
    assert counter_rate(0, 0, 10 ** 12, 1, max_rate=1e9).value is None
    assert is_saturated(65535, 16) and not is_saturated(65534, 16)
    assert counter_delta(None, 5) == (None, "no previous sample")


@given(st.floats(min_value=-1e9, max_value=1e9), st.floats(min_value=-1e12, max_value=1e12),
       st.integers(min_value=2, max_value=200), st.floats(min_value=1, max_value=3600))
def test_least_squares_recovers_a_line(slope, intercept, n, step):
    t0 = 1.79e9
    points = [(t0 + i * step, intercept + slope * i * step) for i in range(n)]
    fitted = least_squares_slope(points)
    assert fitted == pytest.approx(slope, rel=1e-6, abs=1e-6 * (1 + abs(intercept) / step))


def test_least_squares_needs_two_distinct_times():
    assert least_squares_slope([(1, 1)]) is None
    assert least_squares_slope([(1, 1), (1, 5)]) is None


@settings(max_examples=200)
@given(st.integers(min_value=2, max_value=10), st.integers(min_value=3, max_value=30),
       st.floats(min_value=1e6, max_value=1e12), st.floats(min_value=1e3, max_value=1e10),
       st.integers(min_value=0, max_value=1))
def test_steady_sawtooth_has_a_flat_envelope(keep, cycles, base, save, phase):
    """Save then prune, sampled at both phases: the envelope says 'not growing'."""
    points, t = [], 1.79e9
    for _ in range(cycles):
        points.append((t, base + keep * save))
        t += 300
        points.append((t, base + (keep - 1) * save))
        t += 300
    points = points[phase:]
    env = upper_envelope(points)
    slope = least_squares_slope(env) if len(env) >= 2 else 0.0
    assert abs(slope) <= 1e-9 * (base + keep * save)
    rises = sum(1 for a, b in zip(points, points[1:]) if b[1] > a[1])
    span = points[-1][0] - points[0][0]
    assert gross_increase_rate(points) == pytest.approx(rises * save / span, rel=1e-6)
    assert last_changepoint(points, 2.5 * save) == 0  # a prune is not a cleanup


def test_changepoint_finds_the_last_large_drop():
    pts = [(0, 10), (1, 20), (2, 5), (3, 15), (4, 14), (5, 1), (6, 3)]
    assert last_changepoint(pts, 10) == 5
    assert last_changepoint(pts, 100) == 0


@given(st.lists(st.floats(min_value=0, max_value=1e15), min_size=0, max_size=400))
def test_gross_rate_and_envelope_are_finite_and_non_negative(values):
    points = [(1.79e9 + 60 * i, v) for i, v in enumerate(values)]
    gross = gross_increase_rate(points)
    assert gross is None or (math.isfinite(gross) and gross >= 0)
    env = upper_envelope(points)
    assert set(env) <= set(points)
    slope = least_squares_slope(env)
    assert slope is None or math.isfinite(slope)


@given(st.lists(st.integers(min_value=0, max_value=1000), min_size=0, max_size=3000), st.integers(10, 500))
def test_thin_bounds_size_keeps_order_and_newest(values, cap):
    samples = [[i, v] for i, v in enumerate(values)]
    out = thin(samples, cap)
    assert len(out) <= max(cap, 0) or not samples
    assert [s[0] for s in out] == sorted(s[0] for s in out)
    if samples:
        assert out[-1] == samples[-1]


def test_backoff_doubles_from_base_up_to_cap_and_never_overflows():
    # 900 s base, 6 h cap: gpu_spend's Cost Explorer back-off (15 min, 30 min, 1 h, 2 h, 4 h, 6 h, 6 h).
    assert [backoff_s(n, 900, 21600) for n in range(1, 8)] == [900, 1800, 3600, 7200, 14400, 21600, 21600]
    assert backoff_s(0, 900, 21600) == 900  # no failure yet counts as the first
    assert backoff_s(10 ** 9, 1.0, 60.0) == 60.0  # a count kept for years stays finite
