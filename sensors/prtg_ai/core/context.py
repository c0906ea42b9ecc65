"""The context a sensor runs in: injected roots, clock, environment and state folder.

Tests build a ``Context`` with fixture roots and a fake clock instead of patching
``open`` or ``time``; production uses the defaults.
"""

from __future__ import annotations

import os
import time

from prtg_ai.core.paths import as_path, default_state_path
from prtg_ai.core.secrets import Scrubber


SYS_ROOT_ENV = "PRTG_AI_SYS_ROOT"
PROC_ROOT_ENV = "PRTG_AI_PROC_ROOT"


class Context:
    """Everything a sensor may read from the outside world, injectable for tests.

    Args:
        sys_root: where sysfs is mounted (default ``$PRTG_AI_SYS_ROOT`` or ``/sys``:
            a container that mounts the host's sysfs at ``/host/sys`` sets the variable,
            as node_exporter's ``--path.sysfs`` does).
        proc_root: where procfs is mounted (default ``$PRTG_AI_PROC_ROOT`` or ``/proc``).
        clock: wall-clock seconds since the epoch (``time.time``).
        monotonic: a monotonic clock for time budgets (``time.monotonic``).
        env: the environment (PRTG placeholders, AWS settings, overrides).
        state_dir: where state and the log live (default: ``paths.default_state_dir``).
        secrets: values scrubbed from every output and log line.
        policy: what client-supplied parameters may reach (``core.policy.ClientPolicy``);
            set by the agent for each request, ``None`` for a script run (trusted parameters).
    """

    # Folders are kept as strings and handed out as ``Path`` on demand: a sensor answered
    # from cache never needs pathlib (benchmark row "start-up: gpu_spend from a fresh cache
    # (console script, whole process)", benchmarks/bench_spend_startup.py).
    __slots__ = ("sys_path", "proc_path", "clock", "monotonic", "env", "state_path", "secrets", "policy")

    def __init__(self, sys_root=None, proc_root=None, clock=time.time,
                 monotonic=time.monotonic, env=None, state_dir=None, secrets: Scrubber | None = None, policy=None):
        self.env = dict(os.environ) if env is None else env
        self.sys_path = os.fspath(sys_root or self.env.get(SYS_ROOT_ENV) or "/sys")
        self.proc_path = os.fspath(proc_root or self.env.get(PROC_ROOT_ENV) or "/proc")
        self.clock = clock
        self.monotonic = monotonic
        self.state_path = os.fspath(state_dir) if state_dir is not None else default_state_path(self.env)
        self.secrets = secrets if secrets is not None else Scrubber()
        self.policy = policy

    @property
    def sys_root(self):
        return as_path(self.sys_path)

    @property
    def proc_root(self):
        return as_path(self.proc_path)

    @property
    def state_dir(self):
        return as_path(self.state_path)

    def now(self) -> float:
        return float(self.clock())
