"""Attack 14: forging agent log lines through the request path, unauthenticated.

Real parts: ``prtg-ai serve`` as a subprocess logging to stderr at INFO (as under
systemd/journald), raw HTTP requests with encoded CR/LF in the path.
"""

from __future__ import annotations

import http.client
import subprocess
import sys

import requests

from security.sec_support import TOKEN, attack, free_port, leak_check, wait_until
from support import cli_env, stop_with_sigterm


def test_14_paths_cannot_forge_log_lines_or_sensor_ids(tmp_path):
    port = free_port()
    env = cli_env(tmp_path / "state", {"PRTG_AI_LOG": "stderr", "PRTG_AI_LOG_LEVEL": "INFO", "PRTG_AI_TOKEN": TOKEN})
    proc = subprocess.Popen([sys.executable, "-m", "prtg_ai.cli", "serve", "--listen", f"127.0.0.1:{port}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: _health(port), timeout=20)
        statuses = {}
        for path in ("/sensors/x%0d%0aFORGED%202026-01-01%20INFO%20admin%20logged%20in",
                     "/sensors/x%0aFORGED-LF", "/x%0d%0aFORGED-ROOT", "/sensors/gpu_host%0a",
                     "/sensors/gpu_host%0d", "/sensors/gpu_host%00", "/health%0aFORGED-HEALTH"):
            attack()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
            statuses[path] = conn.getresponse().status
            conn.close()
        ckpt = tmp_path / "ckpt"
        (ckpt / "checkpoint-1").mkdir(parents=True)
        legit = requests.get(f"http://127.0.0.1:{port}/sensors/checkpoint_volume", params={"path": str(ckpt)},
                             headers={"Authorization": f"Bearer {TOKEN}"}, timeout=20)
        assert legit.status_code == 200 and "error" not in legit.json()["prtg"]
    finally:
        _, err, _ = stop_with_sigterm(proc)
    leak_check(all(s == 404 for p, s in statuses.items() if "gpu_host" in p), f"a sensor id with a control "
               f"character was accepted: {statuses}")
    forged = [line for line in err.splitlines() if line.startswith("FORGED")]
    leak_check(forged == [], f"forged log lines: {forged}")
    assert "\\x0d\\x0aFORGED" in err  # the attempt is in the log, escaped on its own line
    assert "checkpoint_volume -> 200" in err


def _health(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False
