"""k8s_gpu start-up: the whole ``prtg-ai run k8s_gpu`` process against a local Kubernetes API server.

The API server is the tests' fake (``tests/fakes/kube_api.py``) on 127.0.0.1 serving the
test cluster (one GPU node, eleven pods), so each run makes the sensor's three real
HTTP requests (node, Running pods, Pending pods). Baseline: ``python -c "import requests"``,
the library the sensor cannot do without (issue 17's target <= 1.5).
"""

from __future__ import annotations

import compileall
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, TESTS, median, time_commands

TARGET = 1.5
TOKEN = "bench-token-0123456789"


def run(repeats: int = 30) -> list[dict]:
    compileall.compile_dir(str(REPO / "sensors"), quiet=1)
    from fakes.kube_api import FakeKubeApi

    cluster = json.loads((TESTS / "testcases" / "k8s_gpu" / "cluster.json").read_text(encoding="utf-8"))
    script = shutil.which("prtg-ai", path=str(Path(sys.executable).parent)) or shutil.which("prtg-ai")
    with tempfile.TemporaryDirectory() as tmp, FakeKubeApi(cluster["nodes"], cluster["pods"], token=TOKEN) as api:
        token = Path(tmp) / "token"
        token.write_text(TOKEN)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PRTG_AI_", "KUBERNETES_"))}
        env["PRTG_AI_STATE_DIR"] = str(Path(tmp) / "state")
        argv = [script, "run", "k8s_gpu", "--node", "gpu-node-1", "--api-url", api.url, "--token-file", str(token)]
        check = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        if '"error"' in check.stdout or "GPUs Requested" not in check.stdout:
            raise RuntimeError(check.stdout[:300] + check.stderr[-300:])
        served = len(api.requests)
        samples = time_commands({"baseline": [sys.executable, "-c", "import requests"], "sensor": argv}, repeats, env)
        per_run = (len(api.requests) - served) / (repeats + 1)  # time_commands warms up once
    base, sens = median(samples["baseline"]), median(samples["sensor"])
    return [{
        "benchmark": "start-up: k8s_gpu against a local API server (console script, whole process)",
        "baseline": 'python -c "import requests"',
        "ratio": round(sens / base, 3),
        "target": f"<= {TARGET}",
        "ok": sens / base <= TARGET,
        "detail": f"median {sens * 1000:.1f} ms vs {base * 1000:.1f} ms over {repeats} interleaved runs; "
                  f"{per_run:.0f} API requests per run",
        "raw": {k: [round(x, 5) for x in v] for k, v in samples.items()},
    }]
