"""Where the pack keeps its state and log on each platform.

``PRTG_AI_STATE_DIR`` wins. Otherwise: Windows probes run sensors as SYSTEM, so
state goes to ProgramData (shared by the probe service and an administrator's
console); Linux as root uses ``/var/lib/prtg-ai``; any other user gets the
per-user state folder (e.g. ``~/.local/state/prtg-ai`` for an SSH target login).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

APP_NAME = "prtg-ai"
STATE_DIR_ENV = "PRTG_AI_STATE_DIR"


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    override = env.get(STATE_DIR_ENV)
    if override:
        return Path(override)
    if sys.platform == "win32":
        return Path(env.get("PROGRAMDATA", r"C:\ProgramData")) / APP_NAME / "state"
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib") / APP_NAME
    import platformdirs  # only on this branch: keeps start-up small for the common cases

    return Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))
