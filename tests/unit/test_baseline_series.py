"""The adaptive baseline on synthetic series over simulated weeks (pure, injected time).

Every series is a 5-minute scan (300 s) from a Monday 00:00 UTC: four weeks are
8064 scans, of which the first week (2016 scans) is learning. Noise comes from
seeded generators, so every count below is exact and repeatable. Run with ``-s`` to
see the false-alarm counts and detection delays printed.
"""

from __future__ import annotations

import math
import random

import pytest

from prtg_ai.maths import baseline as bl
from prtg_ai.maths.baseline import ANOMALOUS, LEARNING, NORMAL, UNUSUAL, Baseline, hour_of_week

MONDAY = 1_789_948_800.0  # 2026-09-21 00:00 UTC, a Monday
STEP = 300
WEEK_SCANS = 7 * 86400 // STEP
EVENT = MONDAY + 21 * 86400 + 10 * 3600  # week 4, Monday 10:00 UTC


def daily(t: float, rng: random.Random) -> float:
    """A busy-by-day series: 20 at night, 80 in the afternoon, noise sd 2."""
    h = (t % 86400) / 3600
    return 50 + 30 * math.sin(2 * math.pi * (h - 9) / 24) + rng.gauss(0, 2)


def weekly(t: float, rng: random.Random) -> float:
    """The daily pattern at 60 % on Saturdays and Sundays."""
    weekday = int((t - MONDAY) // 86400) % 7
    level = 0.6 if weekday >= 5 else 1.0
    h = (t % 86400) / 3600
    return level * (50 + 30 * math.sin(2 * math.pi * (h - 9) / 24)) + rng.gauss(0, 2)


def simulate(series, weeks: int = 4) -> list[tuple[float, bl.Verdict]]:
    b = Baseline()
    out = []
    for i in range(weeks * WEEK_SCANS):
        t = MONDAY + i * STEP
        out.append((t, b.observe(t, series(t))))
    return out


def counts(verdicts) -> dict[int, int]:
    c = {LEARNING: 0, NORMAL: 0, UNUSUAL: 0, ANOMALOUS: 0}
    for _, v in verdicts:
        c[v.state] += 1
    return c


def first_scan(verdicts, at_least: int) -> int | None:
    """Scans after EVENT (0 = the event's own scan) until the state reaches ``at_least``."""
    after = [v for t, v in verdicts if t >= EVENT]
    return next((i for i, v in enumerate(after) if v.state >= at_least), None)


def test_hour_of_week_starts_on_monday_utc():
    assert hour_of_week(MONDAY) == 0
    assert hour_of_week(MONDAY + 3600 * 25 + 59) == 25
    assert hour_of_week(MONDAY + 7 * 86400 - 1) == 167
    assert hour_of_week(MONDAY + 7 * 86400) == 0


def test_robust_statistics():
    assert bl.median([3.0, 1.0, 2.0]) == 2.0 and bl.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    # MAD 1 over 10 values: 1.4826 x 1 x 10 / 9.2
    assert bl.robust_scale([float(v) for v in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)], 5.5) == pytest.approx(
        1.4826 * 2.5 * 10 / 9.2)
    # a constant series falls back to mean absolute deviation, then to 1 % of the level
    assert bl.robust_scale([10.0] * 9 + [12.0], 10.0) == pytest.approx(max(1.2533 * 0.2, 0.1))
    assert bl.robust_scale([0.0] * 10, 0.0) == bl.ABS_FLOOR


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_daily_pattern_raises_nothing(seed):
    rng = random.Random(seed)
    c = counts(simulate(lambda t: daily(t, rng)))
    judged = c[NORMAL] + c[UNUSUAL] + c[ANOMALOUS]
    print(f"\ndaily pattern, seed {seed}: {judged} scans judged, false alarms: "
          f"{c[UNUSUAL]} unusual, {c[ANOMALOUS]} anomalous (learning: {c[LEARNING]} scans)")
    assert c[LEARNING] == WEEK_SCANS  # the first week only learns, whatever it sees
    assert judged == 3 * WEEK_SCANS
    # Measured: seeds 1-5 give (0,0) (2,0) (3,1) (0,0) (0,0) unusual/anomalous of 6048.
    expected = {1: (0, 0), 2: (2, 0), 3: (3, 1), 4: (0, 0), 5: (0, 0)}[seed]
    assert (c[UNUSUAL], c[ANOMALOUS]) == expected


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_weekly_pattern_is_learnt_in_the_first_week(seed):
    rng = random.Random(seed)
    c = counts(simulate(lambda t: weekly(t, rng)))
    print(f"\nweekly pattern, seed {seed}: false alarms {c[UNUSUAL]} unusual, {c[ANOMALOUS]} anomalous")
    assert c[UNUSUAL] + c[ANOMALOUS] <= 2


def test_cold_start_learns_and_never_alarms():
    b = Baseline()
    wild = [0.0, 1e6, -5.0, 3.0, 1e9, 7.0]
    for i in range(WEEK_SCANS):
        v = b.observe(MONDAY + i * STEP, wild[i % len(wild)])
        assert (v.state, v.z) == (LEARNING, 0.0)
    assert len(b.slots) == 168 and all(len(s) == 4 for s in b.slots.values())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_level_shift_is_caught_within_six_scans(seed):
    rng = random.Random(seed)
    verdicts = simulate(lambda t: daily(t, rng) + (15 if t >= EVENT else 0))
    unusual, anomalous = first_scan(verdicts, UNUSUAL), first_scan(verdicts, ANOMALOUS)
    print(f"\nlevel shift +15 (7.5 noise sd), seed {seed}: unusual after {unusual} scans, "
          f"anomalous after {anomalous}")
    assert unusual is not None and unusual <= 5
    assert anomalous is not None and anomalous <= 25
    # it stays flagged: the shifted level is not yet the new normal an hour later
    after = [v.state for t, v in verdicts if EVENT + 3600 <= t < EVENT + 2 * 3600]
    assert all(s >= UNUSUAL for s in after)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_spike_at_an_unusual_hour_is_caught_at_once(seed):
    rng = random.Random(seed)
    spike_at = EVENT + 17 * 3600  # 03:00 UTC, when the series sits near 20
    verdicts = simulate(lambda t: 80.0 if t == spike_at else daily(t, rng))
    by_time = dict(verdicts)
    v = by_time[spike_at]
    print(f"\nspike to 80 at 03:00, seed {seed}: state {bl.STATE_NAMES[v.state]} on its own scan, z {v.z:.1f}")
    assert v.state == ANOMALOUS and v.z > 6
    # the same value at 15:00 is ordinary
    assert abs(by_time[EVENT + 5 * 3600].expected - 80) < 3
    # and the scan after the spike is judged on its own merits again (a spike is no level shift)
    assert by_time[spike_at + STEP].z < bl.Z_UNUSUAL


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_slow_drift_is_caught_within_two_days(seed):
    rng = random.Random(seed)
    # +5 a day (10 % of the mean a day, 2.5 noise sd a day)
    verdicts = simulate(lambda t: daily(t, rng) + (5 * (t - EVENT) / 86400 if t >= EVENT else 0))
    unusual, anomalous = first_scan(verdicts, UNUSUAL), first_scan(verdicts, ANOMALOUS)
    print(f"\nslow drift +5/day, seed {seed}: unusual after {unusual} scans "
          f"({unusual * STEP / 3600:.1f} h), anomalous after {anomalous} scans")
    assert unusual is not None and unusual <= 400  # 33 h: the drift has reached about +7
    assert anomalous is not None and anomalous <= 576  # 2 days


def test_state_is_bounded_and_survives_a_json_round_trip():
    import json

    rng = random.Random(7)
    b = Baseline()
    for i in range(6 * WEEK_SCANS):
        t = MONDAY + i * STEP
        b.observe(t, daily(t, rng))
        if i % 1000 == 0:
            b = Baseline(json.loads(json.dumps(b.doc())))
    doc = b.doc()
    assert sum(len(v) for v in doc["slots"].values()) == 168 * bl.SLOT_SAMPLES
    assert len(json.dumps(doc)) < 40_000


@pytest.mark.parametrize("doc", [{"slots": "nope"}, {"first": "x"}, {"slots": {"999": [1.0]}},
                                 {"slots": {"3": [1.0, "a", None, float("inf")]}, "ewma": "nan"}, []])
def test_malformed_state_is_discarded_not_trusted(doc):
    b = Baseline(doc)
    v = b.observe(MONDAY, 5.0)
    assert v.state == LEARNING
    assert all(0 <= k < 168 for k in b.slots)
    assert all(isinstance(x, float) for vals in b.slots.values() for x in vals)


def test_a_clock_step_back_before_the_first_sample_restarts_learning():
    b = Baseline()
    rng = random.Random(3)
    for i in range(2 * WEEK_SCANS):
        t = MONDAY + i * STEP
        b.observe(t, daily(t, rng))
    assert b.observe(MONDAY + 2 * WEEK_SCANS * STEP, 50.0).state != LEARNING
    assert b.observe(MONDAY - 86400, 50.0).state == LEARNING
