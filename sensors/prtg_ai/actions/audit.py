"""The audit trail of ``stop-idle-gpus`` in the state folder, and the day's totals ``gpu_spend`` shows.

Files (in ``PRTG_AI_STATE_DIR`` / the default state folder):

* ``act-stop-idle-gpus.jsonl``: one JSON object per line, one per decision
  (``"kind": "decision"``: instance, region, type, evidence, decision, action, $/h,
  trigger, run id, UTC time) and one per run (``"kind": "run"``: totals, errors,
  exit code). Appended under the action's lock; rotated to ``.jsonl.1`` beyond
  ``MAX_LOG_BYTES`` so it stays bounded.
* ``act-stop-idle-gpus-today.json``: the instances stopped today (UTC) with their $/h,
  rewritten atomically after every stop. ``gpu_spend`` reads this small file for its
  ``Auto-Stopped Today`` and ``Burn Avoided`` channels (no log scan on a sensor's path).
* ``act-stop-idle-gpus.lock``: the cross-process lock (``core/locking.py``) that makes
  two simultaneous runs take turns.

Every line passes through the secrets scrubber before it is written.
"""

from __future__ import annotations

import json
import os
import time

LOG_NAME = "act-stop-idle-gpus.jsonl"
TODAY_NAME = "act-stop-idle-gpus-today.json"
LOCK_NAME = "act-stop-idle-gpus.lock"
MAX_LOG_BYTES = 8 * 1024 * 1024
MAX_TODAY_ENTRIES = 1000
FORMAT = "prtg-ai-auto-stop"


def utc_iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def utc_day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


class AuditLog:
    """Appends scrubbed JSON lines to the audit log (the caller holds the action's lock)."""

    def __init__(self, folder: str, scrub=None):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, LOG_NAME)
        self.scrub = scrub or (lambda text: text)

    def check_writable(self) -> None:
        """Raise OSError when the log cannot be written: no action may go unrecorded."""
        os.makedirs(self.folder, exist_ok=True)
        with open(self.path, "a", encoding="utf-8"):
            pass

    def write(self, record: dict) -> None:
        line = self.scrub(json.dumps(record, sort_keys=True, ensure_ascii=True, default=str))
        try:
            if os.path.getsize(self.path) > MAX_LOG_BYTES:
                os.replace(self.path, self.path + ".1")
        except OSError:
            pass  # absent: the append below creates it
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def read_log(folder: str) -> list[dict]:
    """Every record of the current audit log (tests and ``--show``-style tooling)."""
    path = os.path.join(os.fspath(folder), LOG_NAME)
    out = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line:
                    out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out


# -- the day's totals --------------------------------------------------------------------
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
    path = _today_path(folder)
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, path)


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
