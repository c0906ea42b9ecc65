"""gpu_spend start-up: a scan answered from a fresh cache, and a scan that refreshes from AWS.

Baseline: ``python -c "import json"`` (issue 5's target for the fresh-cache scan is
<= 1.5: nothing may import boto3 when nothing needs refreshing). The refresh row
(an empty state folder each run: STS, EC2, Pricing, CloudWatch, Cost Explorer and
Budgets over HTTP to moto on 127.0.0.1) is reported against the same baseline.
"""

from __future__ import annotations

import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench_ce_requests import moto_stack
from common import REPO, median, time_commands


def run(repeats: int = 30) -> list[dict]:
    compileall.compile_dir(str(REPO / "sensors"), quiet=1)
    with moto_stack() as (helpers, moto_url, front):
        now = datetime.now(timezone.utc)
        helpers.seed_fleet(moto_url, now)
        today = now.date()
        first = min(today.replace(day=1), today - timedelta(days=2))
        helpers.queue_costs(moto_url, {d: 10.0 for d in helpers.days_of(first.isoformat(),
                                                                          (today + timedelta(days=1)).isoformat())})
        script = shutil.which("prtg-ai", path=str(Path(sys.executable).parent)) or shutil.which("prtg-ai")
        with tempfile.TemporaryDirectory() as tmp:
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            env.update(helpers.aws_env(front.url), PRTG_AI_STATE_DIR=str(Path(tmp) / "fresh"))
            warm = subprocess.run([script, "run", "gpu_spend"], env=env, capture_output=True, text=True, timeout=120)
            if '"error"' in warm.stdout:
                raise RuntimeError(warm.stdout[:200])
            ce_before = front.counts["ce:GetCostAndUsage"]
            samples = time_commands({"baseline": [sys.executable, "-c", "import json"],
                                     "sensor": [script, "run", "gpu_spend"]}, repeats, env)
            ce_during = front.counts["ce:GetCostAndUsage"] - ce_before
            refresh = []
            for i in range(max(3, repeats // 4)):
                fresh_env = dict(env, PRTG_AI_STATE_DIR=str(Path(tmp) / f"empty{i}"))
                started = time.perf_counter()
                subprocess.run([script, "run", "gpu_spend"], env=fresh_env, capture_output=True, timeout=120)
                refresh.append(time.perf_counter() - started)
    base, fresh = median(samples["baseline"]), median(samples["sensor"])
    slow = statistics.median(refresh)
    return [
        {"benchmark": "start-up: gpu_spend from a fresh cache (console script, whole process)",
         "baseline": 'python -c "import json"', "ratio": round(fresh / base, 3), "target": "<= 1.5",
         "ok": fresh / base <= 1.5,
         "detail": f"median {fresh * 1000:.1f} ms vs {base * 1000:.1f} ms over {repeats} interleaved runs; "
                   f"Cost Explorer requests during them: {ce_during}"},
        {"benchmark": "gpu_spend scan that refreshes everything from AWS (moto on 127.0.0.1)",
         "baseline": 'python -c "import json"', "ratio": round(slow / base, 3), "target": "reported", "ok": True,
         "detail": f"median {slow * 1000:.0f} ms over {len(refresh)} runs with an empty cache each"},
    ]
