"""checkpoint_volume's trend channels from a scripted filesystem, without root or mounts.

The sensor reads capacity through a usage provider (``backends.disk.fs_usage`` by
default); here a script hands it one ``(used, total)`` sample per scan while the
fake clock moves ten minutes, and each test checks the channels against figures
worked out by hand in its comments. The folder listing stays real (an empty
temporary folder), so only the capacity source is replaced. The tmpfs and ext4
tests in ``tests/e2e/test_checkpoint_volume_mounts.py`` cover the real statvfs.
"""

from __future__ import annotations

import pytest

from prtg_ai.backends.disk import FsUsage
from prtg_ai.checkpoint_volume.checkpoint_volume import CheckpointVolumeSensor
from prtg_ai.core.params import resolve
from support import channels, check_result

GIB = 1024 ** 3
SCAN = 600.0  # ten-minute scans


class ScriptedUsage:
    """A filesystem-usage provider that answers the next ``(used, total)`` sample (GiB) per call."""

    def __init__(self, samples):
        self.samples = list(samples)
        self.asked = []

    def __call__(self, where) -> FsUsage:
        self.asked.append(where)
        used, total = self.samples[len(self.asked) - 1]
        free = int((total - used) * GIB)
        return FsUsage(total=int(total * GIB), avail=free, free=free, files=1000, files_free=900,
                       readonly=False)


def scans(tmp_path, make_ctx, clock, samples, *argv, steps=None):
    """One scan per sample, ``SCAN`` seconds apart (or ``steps``: seconds the clock moves before each);
    every result is checked as PRTG would; returns them all."""
    folder = tmp_path / "ckpt"
    folder.mkdir(exist_ok=True)
    usage = ScriptedUsage(samples)
    ctx = make_ctx()
    values = resolve(CheckpointVolumeSensor.params, ["--path", str(folder), *argv], ctx.env)
    results = []
    for step in steps or [SCAN] * len(samples):
        clock.advance(step)
        result = CheckpointVolumeSensor(ctx, values, usage=usage).run()
        check_result("checkpoint_volume", result)
        results.append(result)
    assert len(usage.asked) == len(samples)  # the provider, not statvfs, was read: once a scan
    return results


def test_two_scans_are_a_baseline_not_a_trend(tmp_path, make_ctx, clock):
    results = scans(tmp_path, make_ctx, clock, [(10, 100), (11, 100)])
    for result in results:
        ch = channels(result)
        assert ch["Fill Trend"] == 0  # collecting baseline
        assert "Growth Rate" not in ch and "Time To Full" not in ch and "Gross Write Rate" not in ch
    # Two samples ten minutes apart; the 6 h window needs three over 36 min (a tenth of it).
    assert "Collecting baseline: 2 sample(s) over 10m, the trend needs 3 over 36m" in results[-1].message()


def test_steady_growth_gives_its_rate_and_the_hours_left(tmp_path, make_ctx, clock):
    # 10 -> 14 GiB used of 100, one GiB per ten-minute scan.
    results = scans(tmp_path, make_ctx, clock, [(10, 100), (11, 100), (12, 100), (13, 100), (14, 100)])
    ch = channels(results[-1])
    # No drop: every sample is on the envelope; slope 1 GiB / 600 s = 6 GiB/h.
    assert ch["Growth Rate"] == pytest.approx(6.0)
    # Gross: four 1 GiB steps over 2400 s = 6 GiB/h, the same as the net rate without pruning.
    assert ch["Gross Write Rate"] == pytest.approx(6.0)
    # 86 GiB free / 6 GiB/h = 14.33 h: full within 24 h.
    assert ch["Time To Full"] == pytest.approx(14.33)
    assert ch["Fill Trend"] == 3
    assert ch["Free Space"] == 86 * GIB and ch["Used Space"] == pytest.approx(14.0)
    assert "Filling at 6.00 GiB/h: full in about 14.3 h" in results[-1].message()
    # Scan four (4 samples over 30 min) is still short of the 36 min a 6 h window needs; scan five is the first trend.
    assert [channels(r)["Fill Trend"] for r in results] == [0, 0, 0, 0, 3]


def test_keep_last_k_retention_is_stable_however_much_it_writes(tmp_path, make_ctx, clock):
    # Save 2 GiB, prune the oldest 2 GiB, again and again: a sawtooth around a steady level.
    results = scans(tmp_path, make_ctx, clock, [(20, 100), (22, 100), (20, 100), (22, 100), (20, 100), (22, 100)])
    ch = channels(results[-1])
    # Peaks 22, 22 and the last sample at 22: a flat envelope.
    assert ch["Growth Rate"] == 0.0
    assert ch["Time To Full"] == 8760.0  # one year: "not filling"
    assert ch["Fill Trend"] == 1  # stable
    # Churn: three 2 GiB saves over 3000 s = 7.2 GiB/h.
    assert ch["Gross Write Rate"] == pytest.approx(7.2)


def test_rising_sawtooth_counts_headroom_at_the_next_peak(tmp_path, make_ctx, clock):
    # Save 4 GiB, prune 2 GiB: the level rises 2 GiB per save; the last scan sits in a trough.
    results = scans(tmp_path, make_ctx, clock, [(20, 100), (24, 100), (22, 100), (26, 100), (24, 100)])
    ch = channels(results[-1])
    # Envelope: the peaks of scans two (24) and four (26): 2 GiB / 1200 s = 6 GiB/h.
    assert ch["Growth Rate"] == pytest.approx(6.0)
    # 76 GiB free now, but the next save refills the 2 GiB trough first: (76 - 2) / 6 = 12.33 h.
    assert ch["Time To Full"] == pytest.approx(12.33)
    assert ch["Fill Trend"] == 3
    # Two 4 GiB increases over 2400 s = 12 GiB/h.
    assert ch["Gross Write Rate"] == pytest.approx(12.0)


def test_a_volume_filling_within_four_hours(tmp_path, make_ctx, clock):
    results = scans(tmp_path, make_ctx, clock, [(10, 20), (11, 20), (12, 20), (13, 20), (14, 20)])
    ch = channels(results[-1])
    # 6 GiB free / 6 GiB/h = 1 h.
    assert ch["Time To Full"] == pytest.approx(1.0)
    assert ch["Fill Trend"] == 4
    assert results[-1].channel("Time To Full").limit_state() == "error"  # below the 4 h lower error limit


def test_slow_growth_is_filling_but_not_urgent(tmp_path, make_ctx, clock):
    # 0.1 GiB per scan = 0.6 GiB/h; 95.6 GiB free lasts 159.33 h (over a day, under a year).
    results = scans(tmp_path, make_ctx, clock, [(4.0, 100), (4.1, 100), (4.2, 100), (4.3, 100), (4.4, 100)])
    ch = channels(results[-1])
    assert ch["Growth Rate"] == pytest.approx(0.6)
    assert ch["Time To Full"] == pytest.approx(159.33)
    assert ch["Fill Trend"] == 2


def test_a_cleanup_restarts_the_trend(tmp_path, make_ctx, clock):
    # Growth of 1 GiB per scan, then 12 GiB deleted at once: far more than 2.5 typical saves.
    results = scans(tmp_path, make_ctx, clock, [(10, 100), (11, 100), (12, 100), (13, 100), (14, 100), (2, 100)])
    ch = channels(results[-1])
    assert ch["Fill Trend"] == 0 and "Growth Rate" not in ch
    assert "trend restarted: 12.0 GiB were freed at once (cleanup)" in results[-1].message()


def test_a_resized_volume_restarts_the_trend(tmp_path, make_ctx, clock):
    results = scans(tmp_path, make_ctx, clock, [(10, 100), (11, 100), (12, 100), (13, 100), (14, 200)])
    ch = channels(results[-1])
    assert ch["Fill Trend"] == 0
    assert "trend restarted: the volume's size changed" in results[-1].message()


def test_samples_older_than_the_window_leave_the_trend(tmp_path, make_ctx, clock):
    # A one-hour window keeps the samples of the last 3600 s: 7 of the 10 scans (t = 2400 ... 6000 s).
    # Early fast growth (3 GiB per scan) then 1 GiB per scan: only the recent rate counts.
    used = [1, 4, 7, 10, 11, 12, 13, 14, 15, 16]
    results = scans(tmp_path, make_ctx, clock, [(u, 100) for u in used], "--window", "1h")
    ch = channels(results[-1])
    assert ch["Growth Rate"] == pytest.approx(6.0)
    # Gross: 6 one-GiB steps over the 3600 s kept = 6 GiB/h.
    assert ch["Gross Write Rate"] == pytest.approx(6.0)
    assert ch["Time To Full"] == pytest.approx(14.0)  # 84 / 6


def test_a_clock_stepped_back_drops_the_later_samples_and_restarts(tmp_path, make_ctx, clock):
    # Five scans ten minutes apart, then the clock steps back 25 minutes (an NTP correction).
    steps = [SCAN] * 5 + [-1500.0]
    results = scans(tmp_path, make_ctx, clock, [(10, 100), (11, 100), (12, 100), (13, 100), (14, 100), (15, 100)],
                    steps=steps)
    assert channels(results[4])["Fill Trend"] == 3
    ch = channels(results[-1])
    # Kept: the samples at 600 s and 1200 s (not after "now", 1500 s) plus the new one: 900 s, too short.
    assert ch["Fill Trend"] == 0 and "Growth Rate" not in ch
    assert "Collecting baseline (trend restarted: the clock moved back): 3 sample(s) over 15m" in results[-1].message()
