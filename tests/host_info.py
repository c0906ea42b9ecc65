"""The one-line description of the machine a measurement ran on (benchmarks and the reliability report)."""

from __future__ import annotations

import os
import platform


def describe() -> str:
    """OS and release, CPU model (from /proc/cpuinfo where there is one), core count, Python version."""
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
