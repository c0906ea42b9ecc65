"""The context a sensor runs in: injected roots, clock, environment and state folder.

Tests build a ``Context`` with fixture roots and a fake clock instead of patching
``open`` or ``time``; production uses the defaults.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prtg_ai.core.paths import default_state_dir
from prtg_ai.core.secrets import Scrubber


@dataclass
class Context:
    """Everything a sensor may read from the outside world, injectable for tests."""

    sys_root: Path = Path("/sys")
    proc_root: Path = Path("/proc")
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    state_dir: Path | None = None
    secrets: Scrubber = field(default_factory=Scrubber)

    def __post_init__(self) -> None:
        if self.state_dir is None:
            self.state_dir = default_state_dir(self.env)
        self.state_dir = Path(self.state_dir)

    def now(self) -> float:
        return float(self.clock())
