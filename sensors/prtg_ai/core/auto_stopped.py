"""The day's auto-stopped instances: the small file ``stop-idle-gpus`` writes and ``gpu_spend`` reads.

``act-stop-idle-gpus-today.json`` in the state folder holds the instances stopped today
(UTC) with their $/h, rewritten atomically after every stop. ``gpu_spend`` reads it for
its ``Auto-Stopped Today`` and ``Burn Avoided`` channels: no log scan on a sensor's path.
It lives in ``core`` because both the action and the sensor use it.
"""

from __future__ import annotations

import json
import os
import time

from prtg_ai.core.state import write_atomic

TODAY_NAME = "act-stop-idle-gpus-today.json"
MAX_TODAY_ENTRIES = 1000
FORMAT = "prtg-ai-auto-stop"


def utc_day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _today_path(folder: str) -> str:
    return os.path.join(os.fspath(folder), TODAY_NAME)


def load_today(folder: str, now: float) -> dict[str, dict]:
    """Instance id -> ``{"usd_per_hour", "at", "action", "region", "type"}`` stopped on ``now``'s UTC day.

    A missing, corrupt or foreign file, or one from another day, reads as nothing stopped.
    """
    try:
        with open(_today_path(folder), "rb") as fh:
            doc = json.loads(fh.read(1 << 20).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("day") != utc_day(now):
        return {}
    stopped = doc.get("stopped")
    return {str(k): v for k, v in stopped.items() if isinstance(v, dict)} if isinstance(stopped, dict) else {}


def record_stop(folder: str, now: float, instance: str, entry: dict) -> None:
    """Add one stopped instance to today's file (atomic replace; the caller holds the lock)."""
    stopped = load_today(folder, now)
    stopped[instance] = entry
    if len(stopped) > MAX_TODAY_ENTRIES:
        for key in sorted(stopped, key=lambda k: float(stopped[k].get("at", 0)))[:len(stopped) - MAX_TODAY_ENTRIES]:
            del stopped[key]
    doc = {"format": FORMAT, "day": utc_day(now), "stopped": stopped}
    # Created as open() would (0o666 less the umask): no secret in it, and gpu_spend reads it.
    write_atomic(_today_path(folder), json.dumps(doc, sort_keys=True).encode("utf-8"), mode=0o666)


def today_totals(folder: str, now: float) -> tuple[int, float]:
    """(instances stopped today, the sum of their $/h): what ``gpu_spend`` reports."""
    stopped = load_today(folder, now)
    usd = 0.0
    for entry in stopped.values():
        try:
            value = float(entry.get("usd_per_hour") or 0.0)
        except (TypeError, ValueError):
            continue
        if value == value and 0.0 <= value < 1e6:  # NaN and absurd values from a hand-edited file are ignored
            usd += value
    return len(stopped), round(usd, 4)
