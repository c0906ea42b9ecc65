"""The audit trail of ``stop-idle-gpus`` in the state folder, and the day's totals ``gpu_spend`` shows.

Files (in ``PRTG_AI_STATE_DIR`` / the default state folder):

* ``act-stop-idle-gpus.jsonl``: one JSON object per line, one per decision
  (``"kind": "decision"``: instance, region, type, evidence, decision, action, $/h,
  trigger, run id, UTC time) and one per run (``"kind": "run"``: totals, errors,
  exit code). Appended under the action's lock; rotated to ``.jsonl.1`` beyond
  ``MAX_LOG_BYTES`` so it stays bounded.
* ``act-stop-idle-gpus-today.json``: the instances stopped today (UTC) with their $/h
  (``core/auto_stopped.py``: the action writes it, ``gpu_spend`` reads it).
* ``act-stop-idle-gpus.lock``: the cross-process lock (``core/locking.py``) that makes
  two simultaneous runs take turns.

Every line passes through the secrets scrubber before it is written.
"""

from __future__ import annotations

import json
import os
import time

from prtg_ai.core.auto_stopped import (  # noqa: F401  (the day's file: written by the action, read by gpu_spend)
    FORMAT,
    TODAY_NAME,
    load_today,
    record_stop,
    today_totals,
)

LOG_NAME = "act-stop-idle-gpus.jsonl"
LOCK_NAME = "act-stop-idle-gpus.lock"
MAX_LOG_BYTES = 8 * 1024 * 1024


def utc_iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


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
