"""Shared pieces of the reliability suite: the quick/full switch, the tally, the agent process.

The suite has a quick part (CI: ``make test`` runs it with the rest of ``tests/``)
and a long part marked ``reliability_slow`` that runs only with
``PRTG_AI_RELIABILITY=full`` (``make reliability``). Sizes that differ between the
two (hypothesis examples, fault positions, process counts) come from ``sized``.

Tests add to ``TALLY`` what they tried (``cases``) and what they broke on purpose
(``faults``); ``conftest.py`` turns it into the report ``report.py`` writes into docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
FULL = os.environ.get("PRTG_AI_RELIABILITY", "").strip().lower() == "full"
MODE = "full" if FULL else "quick"

# nodeid -> {"cases": n, "faults": n}; filled by the ``tally`` fixture.
TALLY: dict[str, dict[str, int]] = defaultdict(lambda: {"cases": 0, "faults": 0})


def sized(quick, full):
    """The quick or the full size of something, by ``PRTG_AI_RELIABILITY``."""
    return full if FULL else quick


class Tally:
    """What one test tried and injected (read by the report)."""

    def __init__(self, nodeid: str):
        self.nodeid = nodeid

    def case(self, n: int = 1) -> None:
        TALLY[self.nodeid]["cases"] += n

    def fault(self, n: int = 1) -> None:
        TALLY[self.nodeid]["faults"] += n


def machine() -> str:
    """The machine description the benchmarks print too (``tests/host_info.py``)."""
    from host_info import describe

    return describe()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prtg_ai_script() -> str:
    """The installed console script next to this interpreter (as PRTG's wrappers call it)."""
    return shutil.which("prtg-ai", path=str(Path(sys.executable).parent)) or shutil.which("prtg-ai") or "prtg-ai"


def clean_env(state_dir: Path, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRTG_AI_", "prtg_", "AWS_"))}
    env["PRTG_AI_STATE_DIR"] = str(state_dir)
    env.update(extra or {})
    return env


class AgentProcess:
    """``prtg-ai serve`` as a real process on 127.0.0.1 (stderr, the agent's log, kept in a file)."""

    def __init__(self, tmp: Path, token: str, extra_args: list[str] | None = None, env: dict | None = None):
        self.token = token
        self.port = free_port()
        self.log_path = tmp / f"agent-{self.port}.log"
        self._log = open(self.log_path, "wb")
        args = [prtg_ai_script(), "serve", "--listen", f"127.0.0.1:{self.port}", "--token", token,
                "--state-dir", str(tmp / "agent-state"), *(extra_args or [])]
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env or clean_env(tmp / "state"))
        self.wait_ready()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("agent did not answer /health within %.0f s" % timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def http_get(port: int, target: str, headers: dict | None = None, timeout: float = 30.0) -> tuple[int, dict, bytes]:
    """One GET over a fresh connection with http.client; (status, headers, body)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", target, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def load_json(text: str) -> dict:
    return json.loads(text)
