"""``gpu_spend --cloud azure|gcp`` start-up: a scan answered from a fresh cache, as a new process.

Baseline: ``python -c "import json"``; target <= 1.5, as for AWS (``bench_spend_startup``):
nothing may import requests, azure-identity or google-auth when nothing needs
refreshing. The caches are filled by one real refresh against the test suite's local
clouds (``tests/fakes/``); the fakes count any cost request made during the timed
runs (must be 0).
"""

from __future__ import annotations

import compileall
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_cloud_spend import AZURE_ARGS, GCP_ARGS, _clean_env, _fakes
from common import REPO, median, prtg_ai_script, time_commands


def run(repeats: int = 30) -> list[dict]:
    compileall.compile_dir(str(REPO / "sensors"), quiet=1)
    azure, gcp = _fakes()
    env = _clean_env(azure, gcp)
    script = prtg_ai_script()
    out = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, args, fake, ops in (("azure", AZURE_ARGS, azure, ("costmanagement:Query",)),
                                          ("gcp", GCP_ARGS, gcp, ("bigquery:jobs.query",))):
                run_env = dict(env, PRTG_AI_STATE_DIR=str(Path(tmp) / name))
                warm = subprocess.run([script, "run", "gpu_spend", *args], env=run_env, capture_output=True,
                                      text=True, timeout=120)
                if '"error"' in warm.stdout:
                    raise RuntimeError(warm.stdout[:300])
                before = sum(fake.counts[o] for o in ops)
                samples = time_commands({"baseline": [sys.executable, "-c", "import json"],
                                         "sensor": [script, "run", "gpu_spend", *args]}, repeats, run_env)
                during = sum(fake.counts[o] for o in ops) - before
                base, fresh = median(samples["baseline"]), median(samples["sensor"])
                out.append({"benchmark": f"start-up: gpu_spend --cloud {name} from a fresh cache (console script)",
                            "baseline": 'python -c "import json"', "ratio": round(fresh / base, 3),
                            "target": "<= 1.5", "ok": fresh / base <= 1.5 and during == 0,
                            "detail": f"median {fresh * 1000:.1f} ms vs {base * 1000:.1f} ms over {repeats} "
                                      f"interleaved runs; cost requests during them: {during}"})
    finally:
        azure.close()
        gcp.close()
    return out
