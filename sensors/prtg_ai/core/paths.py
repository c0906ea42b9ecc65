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

APP_NAME = "prtg-ai"
STATE_DIR_ENV = "PRTG_AI_STATE_DIR"


def default_state_path(env: Mapping[str, str] | None = None) -> str:
    """The state folder as a string (no pathlib import: this runs on every scan)."""
    env = os.environ if env is None else env
    override = env.get(STATE_DIR_ENV)
    if override:
        return override
    if sys.platform == "win32":
        import ntpath  # the probe's own separator, also when this runs in a test on Linux

        return ntpath.join(env.get("PROGRAMDATA", r"C:\ProgramData"), APP_NAME, "state")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return os.path.join("/var/lib", APP_NAME)
    import platformdirs  # only on this branch: keeps start-up small for the common cases

    return platformdirs.user_state_dir(APP_NAME, appauthor=False)


def as_path(text: str):
    """``Path(text)``, importing pathlib only when a caller wants a Path (not on a scan's path)."""
    from pathlib import Path

    return Path(text)


def default_state_dir(env: Mapping[str, str] | None = None):
    """The state folder as a ``Path``."""
    return as_path(default_state_path(env))
