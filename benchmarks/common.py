"""Helpers for the benchmarks: interleaved repeated timing, medians, machine description."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence


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


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"
