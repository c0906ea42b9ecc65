"""``checkpoint_volume``: growth, headroom and freshness of a training job's checkpoint folder.

Reads: ``statvfs`` of the folder's filesystem (Linux; the Win32 free-space API on
Windows, without inode figures) and the names, times and sizes of the folder's
top-level entries, within a time budget (never the whole tree). Keeps a ring
buffer of ``(time, used, avail, inodes free)`` samples in the state folder.

Needs: read and list permission on ``--path``; a writable state folder for the
trend channels (without one, it still reports capacity and checkpoints).

Trend: least-squares slope over ``--window`` (default 6 h, like node-mixin's
``predict_linear``) through the upper envelope of the save-then-prune sawtooth, so
keep-last-K retention reads as "stable", not as growth or shrinkage. A drop far
larger than one save (manual cleanup) restarts the trend.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from prtg_ai.backends import disk
from prtg_ai.core.params import Param, format_duration
from prtg_ai.core.sensor import Sensor
from prtg_ai.core.state import StateStore
from prtg_ai.prtg.model import SensorResult
from prtg_ai.prtg.units import human_size
from prtg_ai.maths.trend import gross_increase_rate, last_changepoint, least_squares_slope, thin, upper_envelope

GIB = 1024 ** 3
NOT_FILLING_HOURS = 8760.0  # one year: the sentinel for "not filling" (Zabbix uses 1.8e308)
MAX_SAMPLES = 2048
MIN_BASELINE_SAMPLES = 3
# Scans racing for the lock can be a fraction of a second out of order; that is no clock step.
CLOCK_STEP_TOLERANCE_S = 2.0
# A drop of used space counts as a manual cleanup (restarting the trend) when it frees
# this many times the typical save, and at least this share of the volume.
CLEANUP_SAVES = 2.5
CLEANUP_MIN_SHARE = 0.02
DEFAULT_PATTERNS = (
    "checkpoint-*", "checkpoint_*", "checkpoints-*", "ckpt-*", "ckpt_*", "step-*", "step_*",
    "global_step*", "epoch-*", "epoch_*", "iter_*", "*.pt", "*.pth", "*.ckpt", "*.safetensors",
    "*.distcp", "*.nemo",
)

# Fill Trend lookup values (prtgai.checkpoint.filltrend)
TREND_BASELINE, TREND_STABLE, TREND_FILLING, TREND_FULL_24H, TREND_FULL_4H = range(5)


class CheckpointVolumeSensor(Sensor):
    id = "checkpoint_volume"
    title = "Checkpoint volume"
    summary = "Free space, growth trend, time to full and checkpoint freshness of a checkpoint folder."
    interval = 300
    params = (
        Param("path", "path", "the checkpoint folder to watch", required=True, state_key=True, metavar="DIR"),
        Param("window", "duration", "trend window (least-squares over this span)", default=6 * 3600.0,
              minimum=3600.0, maximum=30 * 86400.0, metavar="DURATION"),
        Param("pattern", "glob", "names of checkpoint entries (repeatable or comma-separated)",
              multiple=True, default=list(DEFAULT_PATTERNS), metavar="GLOB"),
        Param("stall_after", "duration", "warn when no new checkpoint for this long (sets the age limit)",
              default=None, minimum=60.0, maximum=90 * 86400.0, metavar="DURATION"),
        Param("scan_budget", "duration", "time allowed for listing the folder", default=5.0,
              minimum=0.1, maximum=50.0, metavar="DURATION"),
    )

    def __init__(self, ctx, values, usage=disk.fs_usage):
        super().__init__(ctx, values)
        # Filesystem usage of a folder (path or open descriptor) -> disk.FsUsage: statvfs by
        # default; unit tests hand in a scripted sequence to check the trend without mounts.
        self.usage = usage

    def run(self) -> SensorResult:
        path: Path = self.values["path"]
        window: float = self.values["window"]
        budget: float = self.values["scan_budget"]
        patterns: list[str] = self.values["pattern"]

        policy = self.ctx.policy
        with disk.opened_folder(path, policy.paths if policy is not None else None) as where:
            usage, scan, newest, newest_size, size_complete = self._read(where, patterns, budget)

        result = SensorResult()
        store = StateStore(self.ctx.state_dir)
        with store.session(self.id, self.state_identity(), max_samples=MAX_SAMPLES) as state:
            # Read the clock under the lock: a scan that waited for it is the later sample.
            now = self.ctx.now()
            trend = self._update_trend(state, now, usage, window, newest_size)
            for note in state.notes:
                result.note(note)

        self._capacity_channels(result, usage)
        self._trend_channels(result, trend, usage, window)
        self._checkpoint_channels(result, scan, newest, newest_size, now, usage)
        if not size_complete:
            result.note("Newest checkpoint is larger than the scan budget allows to measure; its size is a lower bound")
        if not scan.complete:
            result.note(f"Folder listing stopped after {scan.seen} entries (scan budget {budget:g}s); counts are partial")
        return result

    def _read(self, where, patterns: list[str], budget: float):
        """Capacity, the matching entries and the newest one's size, from a path or an open folder."""
        usage = self.usage(where)
        scan = disk.scan_top_level(where, patterns, budget, self.ctx.monotonic)
        newest = max(scan.entries, key=lambda e: (e.mtime, e.name), default=None)
        newest_size, size_complete = None, True
        if newest is not None:
            if newest.is_dir:
                remaining = max(0.05, budget - scan.elapsed)
                if isinstance(where, int):
                    newest_size, size_complete = disk.tree_size_at(where, newest.name, remaining,
                                                                   monotonic=self.ctx.monotonic)
                else:
                    newest_size, size_complete = disk.tree_size(where / newest.name, remaining,
                                                                monotonic=self.ctx.monotonic)
            else:
                newest_size = newest.size
        return usage, scan, newest, newest_size, size_complete

    # -- trend -----------------------------------------------------------
    def _update_trend(self, state, now: float, usage: disk.FsUsage, window: float,
                      save_size: int | None) -> dict:
        samples = [s for s in state.samples if isinstance(s, list) and len(s) == 4]
        restarted = None
        if state.data.get("total") not in (None, usage.total):
            samples, restarted = [], "the volume's size changed"
        if samples and now < samples[-1][0] - CLOCK_STEP_TOLERANCE_S:
            samples = [s for s in samples if s[0] <= now]
            restarted = "the clock moved back"
        used = usage.total - usage.avail  # what stands between a writer and "full"
        samples.append([now, used, usage.avail, usage.files_free])
        samples.sort(key=lambda s: s[0])
        samples = [s for s in samples if s[0] >= now - window]
        points = [(float(s[0]), float(s[1])) for s in samples]

        typical_save = save_size or _typical_increase(points)
        threshold = max(CLEANUP_SAVES * typical_save, CLEANUP_MIN_SHARE * usage.total)
        cut = last_changepoint(points, threshold)
        if cut:
            freed = points[cut - 1][1] - points[cut][1]
            restarted = f"{human_size(freed)} were freed at once (cleanup)"
            samples, points = samples[cut:], points[cut:]
        state.samples = thin(samples, MAX_SAMPLES)
        state.data["total"] = usage.total
        if restarted:
            state.data["restarted"] = {"at": now, "why": restarted}
        return {"points": points, "restarted": state.data.get("restarted"), "fresh": state.fresh}

    def _trend_channels(self, result: SensorResult, trend: dict, usage: disk.FsUsage, window: float) -> None:
        points = trend["points"]
        span = points[-1][0] - points[0][0] if points else 0.0
        needed = max(window * 0.1, 600.0)
        restarted = trend.get("restarted")
        if len(points) < MIN_BASELINE_SAMPLES or span < needed:
            why = ""
            if restarted and restarted.get("at", 0) >= points[0][0] - 1:
                why = f" (trend restarted: {restarted['why']})"
            result.note(f"Collecting baseline{why}: {len(points)} sample(s) over {format_duration(round(span))}, "
                        f"the trend needs {MIN_BASELINE_SAMPLES} over {format_duration(round(needed))}")
            result.add(self.channel("fill_trend", TREND_BASELINE))
            return
        envelope = upper_envelope(points)
        slope = least_squares_slope(envelope if len(envelope) >= 2 else points)
        if slope is None:
            slope = 0.0
        gross = gross_increase_rate(points) or 0.0
        # Headroom at the next peak: a trough right after a prune overstates the space left.
        last_peak = max(y for _, y in envelope)
        headroom = max(0.0, usage.avail - max(0.0, last_peak - points[-1][1]))
        if slope > 0:
            hours = min(NOT_FILLING_HOURS, headroom / slope / 3600.0)
        else:
            hours = NOT_FILLING_HOURS
        if hours < 4:
            state = TREND_FULL_4H
        elif hours < 24:
            state = TREND_FULL_24H
        elif hours < NOT_FILLING_HOURS:
            state = TREND_FILLING
        else:
            state = TREND_STABLE
        result.add(self.channel("growth_rate", round(slope * 3600.0 / GIB, 6)))
        result.add(self.channel("time_to_full", round(hours, 2)))
        result.add(self.channel("fill_trend", state))
        result.add(self.channel("gross_write_rate", round(gross * 3600.0 / GIB, 6)))
        if state >= TREND_FULL_24H:
            result.note(f"Filling at {slope * 3600.0 / GIB:.2f} GiB/h: full in about {hours:.1f} h")

    # -- capacity and checkpoints ----------------------------------------
    def _capacity_channels(self, result: SensorResult, usage: disk.FsUsage) -> None:
        result.add(self.channel("free_bytes", usage.avail))
        result.add(self.channel("used_percent", round(usage.used_percent, 3)))
        if usage.files_free_percent is not None:
            result.add(self.channel("inodes_free_percent", round(usage.files_free_percent, 3)))
        result.add(self.channel("writable", 0 if usage.readonly else 1))
        if usage.readonly:
            result.note("The volume is mounted read-only: the next checkpoint save will fail")

    def _checkpoint_channels(self, result: SensorResult, scan: disk.FolderScan, newest,
                             newest_size: int | None, now: float, usage: disk.FsUsage) -> None:
        result.add(self.channel("checkpoint_count", len(scan.entries)))
        if newest is None:
            shown = ", ".join(self.values["pattern"][:4]) + (" ..." if len(self.values["pattern"]) > 4 else "")
            result.note(f"No checkpoint matching {shown} in {self.values['path']}")
            return
        age_min = max(0.0, (now - newest.mtime) / 60.0)
        overrides = {}
        if self.values["stall_after"]:
            overrides["limitmaxwarning"] = round(self.values["stall_after"] / 60.0, 3)
        result.add(self.channel("newest_age", round(age_min, 2), **overrides))
        result.add(self.channel("newest_size", newest_size))
        if newest_size:
            result.add(self.channel("room_for_saves", round(usage.avail / newest_size, 2)))
        result.text = f"Newest checkpoint {newest.name!r}, {age_min:.0f} min old"


def _typical_increase(points: list[tuple[float, float]]) -> float:
    """The median positive step of used space: one save, when no checkpoint size is known."""
    steps = [b[1] - a[1] for a, b in zip(points, points[1:]) if b[1] > a[1]]
    return statistics.median_high(steps) if steps else 0.0
