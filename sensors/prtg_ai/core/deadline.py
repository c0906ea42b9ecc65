"""Per-scan deadlines: what a scan is doing right now, and a watchdog that answers on time.

PRTG kills a script sensor after its timeout (60 s by default) and shows only
"timeout"; a wedged driver call (a GPU fallen off the bus makes NVML calls block,
as ``nvidia-smi`` hangs) then leaves no word of what hung. So:

* backends say what they are about to do with ``doing("NVML nvmlDeviceGetTemperature on GPU 3")``:
  one dict store keyed by the thread, cheap enough for every call;
* ``Watchdog`` (script mode) sleeps in a daemon thread; when the scan outlives its
  deadline it writes a PRTG error naming the operation, flushes, and ends the process
  with ``os._exit(0)``: a C call that never returns cannot hold the process;
* the agent (``prtg_ai.agent.dispatch``) runs each scan in its own thread and reads
  the same record when that scan overruns.

The default deadline stays below PRTG's 60 s script timeout (``DEFAULT_S``); it is
set per run with ``prtg-ai run SENSOR --deadline 30s`` or ``PRTG_AI_DEADLINE``, and per
agent with ``prtg-ai serve --deadline``.
"""

from __future__ import annotations

import _thread  # the C module under threading: a script scan need not import threading.py
import os

DEFAULT_S = 45.0  # below PRTG's default 60 s script timeout, with room for start-up and output
MIN_S, MAX_S = 1.0, 3600.0
ENV = "PRTG_AI_DEADLINE"
OPTION = "--deadline"

# thread id -> (what it is doing, since when); written by backends, read on overrun.
_doing: dict[int, str] = {}
_get_ident = _thread.get_ident


def doing(what: str) -> None:
    """Record what the calling thread is about to do (shown if the scan overruns)."""
    _doing[_get_ident()] = what


def done() -> None:
    """The calling thread finished what it said it was doing (so an overrun later never blames it)."""
    _doing[_get_ident()] = ""


def current(ident: int | None = None) -> str:
    """What thread ``ident`` (default: the caller) said it was doing last."""
    return _doing.get(_get_ident() if ident is None else ident, "")


def forget(ident: int | None = None) -> None:
    _doing.pop(_get_ident() if ident is None else ident, None)


def parse(raw: str | None, default: float = DEFAULT_S) -> float:
    """A deadline in seconds from ``30s`` / ``2m`` / ``45``; ValueError when out of range."""
    if raw is None or not str(raw).strip():
        return default
    from prtg_ai.core.errors import ConfigError
    from prtg_ai.core.params import parse_duration

    try:
        value = parse_duration("deadline", str(raw))
    except ConfigError as exc:
        raise ValueError(exc.message()) from None
    if not MIN_S <= value <= MAX_S:
        raise ValueError(f"Parameter --deadline: {raw!r} must be between {MIN_S:g}s and {MAX_S:g}s")
    return value


def overrun_text(sensor_id: str, seconds: float, what: str) -> str:
    """The PRTG error text for a scan that outlived its deadline."""
    where = f" while waiting on {what}" if what else ""
    hint = (" A driver call that never returns usually means a GPU fell off the bus or the driver is wedged: "
            "check `dmesg | grep -i xid` and nvidia-smi." if what.startswith("NVML") else
            " Check that source on this host, or raise the deadline (--deadline) if it is merely slow.")
    return f"Sensor {sensor_id} did not finish within its {seconds:g} s deadline{where}.{hint}"


class Watchdog:
    """End the process with a PRTG error if the scan in thread ``ident`` overruns.

    Built on ``_thread`` (no ``threading`` import on a scan's path). The watchdog
    thread is a bare one: the interpreter does not wait for it at exit.

    Args:
        seconds: the deadline.
        on_overrun: called in the watchdog thread with what the scan was doing; it
            writes the error result. The process then exits 0.
    """

    def __init__(self, seconds: float, on_overrun, ident: int | None = None):
        self.seconds = seconds
        self.on_overrun = on_overrun
        self.ident = _get_ident() if ident is None else ident
        self._done = _thread.allocate_lock()
        self._done.acquire()  # released when the scan has finished
        self._claim = _thread.allocate_lock()

    def __enter__(self) -> "Watchdog":
        _thread.start_new_thread(self._watch, ())
        return self

    def __exit__(self, *exc) -> None:
        self._done.release()

    def claim(self) -> bool:
        """The scan asks to write its own result; False once the watchdog has answered."""
        return self._claim.acquire(False)

    @staticmethod
    def wait_forever() -> None:
        """Block the caller for good (the watchdog is ending the process)."""
        lock = _thread.allocate_lock()
        lock.acquire()
        lock.acquire()

    def _watch(self) -> None:
        if self._done.acquire(True, self.seconds) or not self._claim.acquire(False):
            return
        try:
            self.on_overrun(current(self.ident))
        finally:
            os._exit(0)
