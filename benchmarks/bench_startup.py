"""Start-up: a script sensor's whole process vs. the bare interpreter importing its irreducible library.

PRTG starts a new process per scan, so this is what every scan pays. Baseline for
checkpoint_volume: ``python -c "import psutil"`` (target ratio <= 1.5).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from common import median, time_commands

SENSORS = {
    # sensor id: (baseline import, arguments)
    "checkpoint_volume": ("psutil", ["--path", "{folder}"]),
}


def run(repeats: int = 30) -> list[dict]:
    rows = []
    script = shutil.which("prtg-ai", path=str(Path(sys.executable).parent)) or shutil.which("prtg-ai")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ckpt"
        folder.mkdir()
        for i in range(10):
            (folder / f"step-{i}.pt").write_bytes(b"\0" * 1024)
        env = dict(os.environ, PRTG_AI_STATE_DIR=str(Path(tmp) / "state"))
        for sensor, (baseline_import, args) in SENSORS.items():
            argv = [a.replace("{folder}", str(folder)) for a in args]
            commands = {
                "baseline": [sys.executable, "-c", f"import {baseline_import}"],
                "sensor": [script, "run", sensor, *argv],
            }
            samples = time_commands(commands, repeats, env)
            base, sens = median(samples["baseline"]), median(samples["sensor"])
            rows.append({
                "benchmark": f"start-up: {sensor} (console script, whole process)",
                "baseline": f'python -c "import {baseline_import}"',
                "ratio": round(sens / base, 3),
                "target": "<= 1.5",
                "ok": sens / base <= 1.5,
                "detail": f"median {sens * 1000:.1f} ms vs {base * 1000:.1f} ms over {repeats} interleaved runs",
                "raw": {k: [round(x, 5) for x in v] for k, v in samples.items()},
            })
    return rows
