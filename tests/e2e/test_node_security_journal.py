"""node_security's SSH channels from a real systemd-journald, read through journalctl with a cursor.

The test starts systemd-journald in a private mount namespace (tmpfs over /run and
/var/log/journal, so the host's journal is untouched), sends loghub's real OpenSSH
lines to it over the syslog socket as ``sshd`` with each line's own PID (``logger``),
and runs ``prtg-ai run node_security --auth-source journal`` there, before and after.
Expected: the same counts as the auth-log test (SOURCE.md beside the lines).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import check_channels, is_root

pytestmark = pytest.mark.root
AUTH = Path(__file__).resolve().parents[1] / "testcases" / "node_security" / "auth"
JOURNALD = next((p for p in ("/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald")
                 if os.path.exists(p)), None)

DRIVER = r"""
import json, os, re, subprocess, sys, time
state, journald, first, second = sys.argv[1:5]
for target in ("/run", "/var/log/journal"):
    os.makedirs(target, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", target], check=True)
os.makedirs("/run/systemd/journal", exist_ok=True)
daemon = subprocess.Popen([journald], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        if os.path.exists("/run/systemd/journal/dev-log"):
            break
        time.sleep(0.05)
    def send(path):
        sent = 0
        for line in open(path, encoding="utf-8", newline=""):
            m = re.search(r"(sshd(?:-session)?)\[(\d+)\]: (.*?)\r?\n?$", line)
            subprocess.run(["logger", "-u", "/run/systemd/journal/dev-log", "-t", m.group(1), "--id=" + m.group(2),
                            m.group(3)], check=True)
            sent += 1
        return sent
    def wait_for(n):
        for _ in range(100):
            out = subprocess.run(["journalctl", "--no-pager", "-q", "-o", "cat", "SYSLOG_IDENTIFIER=sshd"],
                                 capture_output=True, text=True).stdout
            if len(out.splitlines()) >= n:
                return
            time.sleep(0.05)
        raise SystemExit("journald did not store the lines")
    def scan():
        p = subprocess.run([sys.executable, "-m", "prtg_ai.cli", "run", "node_security", "--auth-source", "journal",
                            "--probe=no", "--gpu-processes", "off"], capture_output=True, text=True,
                           env=dict(os.environ, PRTG_AI_STATE_DIR=state))
        files = [f for f in os.listdir(state) if f.startswith("node_security-") and f.endswith(".json")]
        t = json.load(open(os.path.join(state, files[0])))["data"]["auth"]["t"]
        return {"out": p.stdout, "err": p.stderr, "t": t}
    n = send(first)
    wait_for(n)
    results = [scan()]
    n += send(second)
    wait_for(n)
    time.sleep(1.0)
    results.append(scan())
    results.append(scan())  # nothing new: the cursor moved
    # The same scan as an unprivileged user (nobody) who may not read the system journal.
    other = os.path.join(os.path.dirname(state), "state-nobody")
    os.makedirs(other, mode=0o777, exist_ok=True)
    os.chmod(other, 0o777)
    p = subprocess.run(["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", sys.executable, "-m",
                        "prtg_ai.cli", "run", "node_security", "--auth-source", "journal", "--probe=no",
                        "--gpu-processes", "off"], capture_output=True, text=True,
                       env=dict(os.environ, PRTG_AI_STATE_DIR=other))
    results.append({"out": p.stdout, "err": p.stderr, "t": 0})
    print(json.dumps(results))
finally:
    daemon.terminate()
    daemon.wait(10)
"""


def test_journal_failures_with_a_stored_cursor(tmp_path):
    if not is_root():
        pytest.skip("needs root: the test mounts tmpfs and starts systemd-journald in a mount namespace")
    missing = [n for n, p in (("unshare", shutil.which("unshare")), ("journalctl", shutil.which("journalctl")),
                              ("logger", shutil.which("logger")), ("setpriv", shutil.which("setpriv")),
                              ("systemd-journald", JOURNALD)) if not p]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} to run a private journald")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c", DRIVER,
                           str(tmp_path / "state"), JOURNALD, str(AUTH / "loghub_a.log"), str(AUTH / "loghub_b.log")],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and "mount" in proc.stderr and "permission" in proc.stderr.lower():
        pytest.skip(f"cannot mount in a private namespace here: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, second, third, unprivileged = json.loads(proc.stdout)
    docs = [json.loads(r["out"])["prtg"] for r in (first, second, third)]
    for doc in docs:
        assert not doc.get("error"), doc
        check_channels("node_security", {"prtg": doc})
    values = [{c["channel"]: c["value"] for c in d["result"]} for d in docs]
    assert values[0]["SSH Auth Failures"] == 0 and "SSH counting starts now (journal)" in docs[0]["text"]
    minutes = (second["t"] - first["t"]) / 60.0
    assert values[1]["SSH Auth Failures"] == pytest.approx(round(8 / minutes, 3))
    assert values[1]["SSH Failure Sources"] == 3 and values[1]["New Login Sources"] == 0
    assert values[2]["SSH Auth Failures"] == 0 and values[2]["SSH Failure Sources"] == 0
    denied = json.loads(unprivileged["out"])["prtg"]
    assert not denied.get("error") and "SSH Auth Failures" not in {c["channel"] for c in denied["result"]}
    assert "no permission to read the system journal" in denied["text"], denied["text"]
