"""Helpers for the benchmarks: interleaved repeated timing, medians, machine description, agent processes and load."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def time_commands(commands: dict[str, Sequence[str]], repeats: int, env: dict | None = None) -> dict[str, list[float]]:
    """Wall time of each command, run interleaved (A B A B ...) so noise hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for name, cmd in commands.items():  # one warm-up each (page cache, pyc files)
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    for _ in range(repeats):
        for name, cmd in commands.items():
            started = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
            samples[name].append(time.perf_counter() - started)
    return samples


def time_call(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


# -- processes and load for the agent benchmarks --------------------------------------------
REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
SHIM = TESTS / "fakes" / "shim"
CASES = TESTS / "testcases"
# The test suite's fakes (``fakes.aws_moto``, ``fakes.kube_api``, ...) import as they do under pytest,
# whose configuration puts tests/ on the path (pyproject.toml: pythonpath).
if str(TESTS) not in sys.path:
    sys.path.append(str(TESTS))

from host_info import describe as machine  # noqa: E402 - the same machine line as the reliability report


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str, timeout: float = 30.0, proc=None) -> None:
    """Wait until GET ``path`` on 127.0.0.1:``port`` answers 200."""
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before answering")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"127.0.0.1:{port}{path} did not answer within {timeout:.0f} s")


def prtg_ai_script() -> str:
    import shutil
    import sys

    return shutil.which("prtg-ai", path=str(Path(sys.executable).parent)) or "prtg-ai"


def bench_env(state_dir, extra: dict | None = None) -> dict:
    """The environment of a sensor or agent under benchmark: fakes for NVML and sysfs, no PRTG_AI_ leftovers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRTG_AI_", "prtg_", "AWS_"))}
    env.update({
        "PRTG_AI_STATE_DIR": str(state_dir),
        "PYTHONPATH": str(SHIM),
        "PRTG_AI_FAKE_NVML": str(CASES / "gpu_host" / "h100x8_load" / "nvml.json"),
        "PRTG_AI_SYS_ROOT": str(CASES / "east_west" / "ndr_8port" / "sys"),
        "PRTG_AI_PROC_ROOT": str(CASES / "east_west" / "ndr_8port" / "proc"),
    })
    env.update(extra or {})
    return env


class Agent:
    """``prtg-ai serve`` on 127.0.0.1 as PRTG's HTTP Data Advanced sensors reach it (a context manager)."""

    TOKEN = "bench-token-7d6e5f4a3b2c"

    def __init__(self, env: dict, *args: str):
        self.port = free_port()
        self.env, self.args = env, args

    def __enter__(self) -> "Agent":
        self.proc = subprocess.Popen([prtg_ai_script(), "serve", "--listen", f"127.0.0.1:{self.port}",
                                      "--token", self.TOKEN, *self.args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env)
        wait_http(self.port, "/health", proc=self.proc)
        self.pid = self.proc.pid
        return self

    def __exit__(self, *exc) -> None:
        stop(self.proc)


def stop(proc) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def load(port: int, paths: Sequence[str], total: int, threads: int = 4,
         headers: dict | None = None, deadline_s: float = 300.0) -> dict:
    """Drive ``total`` GETs (cycling through ``paths``) from ``threads`` keep-alive clients.

    Returns req/s over the wall time, latency percentiles (ms), the count of non-200
    answers and whether the deadline cut the run short.
    """
    import http.client
    import threading

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(total))
    started = time.perf_counter()
    stop_at = time.monotonic() + deadline_s

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        bad = 0
        while time.monotonic() < stop_at:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            t0 = time.perf_counter()
            try:
                conn.request("GET", paths[i % len(paths)], headers=headers or {})
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            except OSError:
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            mine.append(time.perf_counter() - t0)
            bad += not ok
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000.0 if latencies else float("nan")

    return {"requests": len(latencies), "wall_s": round(wall, 3), "rps": round(len(latencies) / wall, 1),
            "p50_ms": round(pct(0.50), 3), "p99_ms": round(pct(0.99), 3), "errors": errors[0],
            "cut_short": len(latencies) < total}


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _wrk_ms(text: str) -> float:
    import re

    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * _WRK_UNITS[m.group(2)]


def wrk_load(port: int, path: str, seconds: float, connections: int = 16, threads: int = 2,
             headers: dict | None = None) -> dict:
    """Drive ``GET path`` with wrk (Debian's ``wrk``) for ``seconds``; the same result shape as ``load``.

    wrk is a C load generator: on a 2-core machine it takes far less CPU from the
    server under test than a Python client, and it is what the issue's reference
    figures were measured with (16 connections).
    """
    import re

    cmd = ["wrk", "--latency", f"-t{threads}", f"-c{connections}", f"-d{max(1, int(seconds))}s", "--timeout", "10s"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run([*cmd, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                         timeout=seconds + 60, check=True).stdout
    percent = {m.group(1): _wrk_ms(m.group(2)) for m in re.finditer(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", out, re.M)}
    requests = int(re.search(r"^\s+(\d+) requests in", out, re.M).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, socket_errors.groups())) if socket_errors else 0)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50_ms": percent["50"],
            "p99_ms": percent["99"], "errors": errors, "requests": requests, "cut_short": False,
            "client": f"wrk, {connections} connections"}
