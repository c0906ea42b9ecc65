"""node_security through the real agent: parameters from the query string are hostile.

The agent (``prtg-ai serve`` on 127.0.0.1, port 0) runs the sensor per request. Probing is
off in these requests (``probe=no``): the agent runs in this host's network namespace, and
the probes have their own tests against listeners those tests start.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import requests

from prtg_ai.prtg.validate import validate
from support import cli_env

TOKEN = "node-security-agent-test-token-0123456789"


def _serve(tmp_path: Path):
    proc = subprocess.Popen([sys.executable, "-m", "prtg_ai.cli", "serve", "--listen", "127.0.0.1:0", "--token", TOKEN],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(tmp_path / "state"))
    line = proc.stdout.readline()
    match = re.search(r"listening on http://127\.0\.0\.1:(\d+)/", line)
    assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, int(match.group(1))


def test_hostile_parameters_through_the_agent(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc, port = _serve(tmp_path)
    try:
        base = f"http://127.0.0.1:{port}/sensors/node_security"
        head = {"Authorization": f"Bearer {TOKEN}"}
        started = time.monotonic()
        r = requests.get(base, params={"probe": "no", "auth_source": "file", "auth_log": str(fifo),
                                       "gpu_processes": "off"}, headers=head, timeout=30)
        assert r.status_code == 200 and validate(r.text) == [] and time.monotonic() - started < 20
        doc = r.json()["prtg"]
        assert not doc.get("error") and "not a regular file" in doc["text"]  # a FIFO never blocks the scan
        r = requests.get(base, params={"probe": "no", "auth_source": "off",
                                       "gpu_allow": ",".join(f"t{i}" for i in range(40))}, headers=head, timeout=30)
        doc = r.json()["prtg"]
        assert doc.get("error") == 1 and "--gpu-allow" in doc["text"] and "t39" not in doc["text"]
        r = requests.get(base, params={"probe": "no", "auth_source": "off", "gpu_processes": "off"},
                         headers=head, timeout=30)
        names = {c["channel"] for c in r.json()["prtg"]["result"]}
        assert {"Unauthenticated AI Services", "Exposed Listening Ports", "New Listening Ports"} <= names
    finally:
        proc.terminate()
        proc.wait(timeout=20)
