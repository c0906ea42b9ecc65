"""``prtg-ai doctor``'s node_security lines: journal and auth logs readable or not, and why."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from prtg_ai.backends import authlog
from prtg_ai.doctor import _node_security_checks
from support import cli_env


def test_auth_log_files_readable_refused_and_journal_missing(tmp_path, monkeypatch):
    good = tmp_path / "auth.log"
    good.write_text("")
    fifo = tmp_path / "secure"
    os.mkfifo(fifo)
    monkeypatch.setattr(authlog, "DEFAULT_FILES", (str(good), str(fifo)))
    monkeypatch.setattr(authlog, "journalctl_path", lambda: None)
    checks = {name: (ok, detail) for name, ok, detail in _node_security_checks()}
    assert checks["Journal (node_security)"] == (False, "journalctl is not installed; the auth log files are used")
    assert checks[f"Auth log {good} (node_security)"] == (True, "readable")
    assert checks[f"Auth log {fifo} (node_security)"] == (False, f"{fifo} is not a regular file")
    assert "Process names of listeners (node_security)" in checks


def test_doctor_prints_the_node_security_lines(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "prtg_ai.cli", "doctor", "--json"], capture_output=True, text=True,
                          env=cli_env(tmp_path / "state", {"AWS_EC2_METADATA_DISABLED": "true"}), timeout=60)
    names = [c["check"] for c in json.loads(proc.stdout)]
    assert any(n.endswith("(node_security)") and n.startswith("Journal") for n in names)
    assert any("Auth log" in n for n in names) and "Traceback" not in proc.stderr


def test_bounded_runner_stops_at_the_deadline_and_the_byte_cap():
    import time

    sh = "/bin/sh"
    started = time.monotonic()
    status, out, err, cut = authlog._run_bounded([sh, "-c", "sleep 5"], {"PATH": "/usr/bin:/bin"}, 0.3, 1000)
    assert status is None and not cut and time.monotonic() - started < 2.5
    status, out, err, cut = authlog._run_bounded([sh, "-c", "while :; do echo yyyyyyyy; done"],
                                                 {"PATH": "/usr/bin:/bin"}, 10.0, 1000)
    assert cut and len(out) == 1000
    status, out, err, cut = authlog._run_bounded([sh, "-c", "echo out; echo err >&2; exit 3"],
                                                 {"PATH": "/usr/bin:/bin"}, 10.0, 1000)
    assert (status, out, err, cut) == (3, b"out\n", b"err\n", False)
