"""Attack 10: recovering another program's command-line secret through the Server Processes count.

Real parts: a real process whose command line carries ``--db-password=...``, a
real model server on 127.0.0.1, the real agent serving inference (psutil reads
the real process table).
"""

from __future__ import annotations

import string
import subprocess
import sys
from pathlib import Path

from fakes.inference_server import FakeModelServer
from security.sec_support import attack, leak_check, ok, text_of

PAGE = (Path(__file__).resolve().parents[1] / "testcases" / "inference" / "vllm" / "metrics.1.prom").read_text()
PASSWORD = "hunter2XYZ"


def count(doc: dict):
    return {c["channel"]: c["value"] for c in doc["prtg"].get("result", [])}.get("Server Processes")


def test_10_command_lines_are_not_an_oracle(agent):
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", f"--db-password={PASSWORD}"])
    try:
        with FakeModelServer(page=PAGE) as server:
            a = agent(sensors=["inference"])
            # The attack as reported: grow a prefix one character at a time while the count says "hit".
            found = ""
            for _ in range(4):
                hit = None
                for ch in string.ascii_letters + string.digits:
                    attack()
                    doc, _ = a.sensor("inference", {"url": server.url, "process": f"*{found + ch}*"})
                    if count(doc):
                        hit = ch
                        break
                if hit is None:
                    break
                found += hit
            leak_check(not PASSWORD.startswith(found) or found == "", f"recovered {found!r} of the password")
            for guess in ("hunter2", "--db-password", "db-password=hunter2"):
                attack()
                doc, raw = a.sensor("inference", {"url": server.url, "process": guess})
                leak_check(not count(doc), f"{guess!r} matched a command line")
                leak_check(PASSWORD not in raw, "the command line was echoed")
            # The legitimate poll: the server's processes by name.
            doc, _ = a.sensor("inference", {"url": server.url, "process": "python*"})
            assert ok(doc), text_of(doc)
            assert count(doc) >= 1
    finally:
        victim.kill()
        victim.wait(10)
