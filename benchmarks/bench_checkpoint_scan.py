"""checkpoint_volume's scan time on folders of 1k, 10k and 100k entries.

Baseline in the same run: a bare ``os.scandir`` + ``stat`` of every entry (the
least any listing can do). Targets: time grows no faster than linearly with the
entry count, and a scan never overruns its time budget.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from common import median, time_call
from prtg_ai.core.context import Context
from prtg_ai.core.runtime import run_sensor

SIZES = (1_000, 10_000, 100_000)


def _fill(folder: Path, n: int) -> None:
    folder.mkdir()
    for i in range(n):
        fd = os.open(folder / f"step-{i:06d}", os.O_CREAT | os.O_WRONLY, 0o644)
        os.close(fd)


def _bare_listing(folder: Path) -> int:
    count = 0
    with os.scandir(folder) as it:
        for entry in it:
            entry.stat(follow_symlinks=False)
            count += 1
    return count


def run(repeats: int = 5) -> list[dict]:
    rows, per_entry = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        for n in SIZES:
            folder = Path(tmp) / f"f{n}"
            _fill(folder, n)
            ctx = Context(state_dir=state, env={})
            sensor = time_call(lambda: run_sensor("checkpoint_volume", ["--path", str(folder), "--pattern", "step-*"], ctx), repeats)
            bare = time_call(lambda: _bare_listing(folder), repeats)
            s, b = median(sensor), median(bare)
            per_entry[n] = s / n
            rows.append({
                "benchmark": f"checkpoint_volume scan, {n:,} entries",
                "baseline": "os.scandir + stat of every entry",
                "ratio": round(s / b, 3),
                "target": "time within the 5 s budget",
                "ok": s < 5.0,
                "detail": f"median {s * 1000:.1f} ms vs {b * 1000:.1f} ms ({repeats} runs)",
            })
        growth = per_entry[SIZES[-1]] / per_entry[SIZES[0]]
        rows.append({
            "benchmark": "checkpoint_volume scan: time per entry, 100k vs 1k",
            "baseline": "time per entry at 1k entries",
            "ratio": round(growth, 3),
            "target": "<= 1.5 (linear or better)",
            "ok": growth <= 1.5,
            "detail": f"{per_entry[SIZES[0]] * 1e6:.2f} us/entry at 1k, {per_entry[SIZES[-1]] * 1e6:.2f} us/entry at 100k",
        })
        # Budget adherence: a 0.1 s budget on the largest folder must stop near 0.1 s.
        folder = Path(tmp) / f"f{SIZES[-1]}"
        ctx = Context(state_dir=state, env={})
        timings = time_call(lambda: run_sensor("checkpoint_volume", ["--path", str(folder), "--pattern", "step-*",
                                                                      "--scan-budget", "0.1s"], ctx), repeats)
        result = run_sensor("checkpoint_volume", ["--path", str(folder), "--pattern", "step-*", "--scan-budget", "0.1s"], ctx)
        partial = "Folder listing stopped" in result.message()
        rows.append({
            "benchmark": "checkpoint_volume scan, 100k entries, --scan-budget 0.1s",
            "baseline": "the 0.1 s budget",
            "ratio": round(median(timings) / 0.1, 3),
            "target": "<= 1.5 (stops at its budget)",
            "ok": median(timings) / 0.1 <= 1.5 or not partial,
            "detail": f"median {median(timings) * 1000:.1f} ms; listing {'stopped at the budget' if partial else 'finished within it'}",
        })
    return rows
