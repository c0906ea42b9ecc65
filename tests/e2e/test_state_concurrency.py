"""Twenty scans of one sensor instance at once, as real processes, on one state file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from prtg_ai.prtg.validate import validate
from support import cli_env

pytestmark = pytest.mark.reliability("concurrency")


def test_twenty_concurrent_runs_keep_every_sample(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "step-1.pt").write_bytes(b"\0" * 1000)
    env = cli_env(tmp_path / "state")
    procs = [subprocess.Popen([sys.executable, "-m", "prtg_ai.cli", "run", "checkpoint_volume", "--path", str(folder)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
             for _ in range(20)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert validate(out) == [], out
        assert "Traceback" not in out + err
        doc = json.loads(out)
        assert "error" not in doc["prtg"], doc
    [state_file] = (tmp_path / "state").glob("checkpoint_volume-*.json")
    doc = json.loads(state_file.read_text())  # intact
    # The lock serialised every read-modify-write: no scan's sample was lost.
    assert len(doc["samples"]) == 20
    times = [s[0] for s in doc["samples"]]
    assert times == sorted(times)
    assert not list((tmp_path / "state").glob("*.tmp"))
    assert not list((tmp_path / "state").glob("*.corrupt"))
