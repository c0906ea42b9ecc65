"""Loggers that cost nothing until something is logged.

Importing ``logging`` (and its handlers) is a measurable share of a script
sensor's start-up, and most scans log nothing. ``get_logger`` hands out a proxy
that imports and configures logging on the first call.
"""

from __future__ import annotations

_settings: dict = {}
_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def prepare(state_dir, env, scrubber) -> None:
    """Remember where and how to log; nothing is imported or opened yet."""
    _settings.update(state_dir=state_dir, env=env, scrubber=scrubber)
    _settings.pop("configured", None)


def _ensure() -> None:
    if _settings.get("configured") or "state_dir" not in _settings:
        return
    from prtg_ai.core.logsetup import configure

    configure(_settings["state_dir"], _settings["env"], _settings["scrubber"])
    _settings["configured"] = True


def _wanted(level: int) -> bool:
    """Whether a record of ``level`` would be written once logging is configured.

    Answered from the environment alone, so the debug and info lines of a normal scan
    (e.g. "metric not supported here") never import ``logging`` at all. Before
    ``prepare`` (in-process use, tests) every record goes to ``logging``.
    """
    if "state_dir" not in _settings:
        return True
    env = _settings["env"]
    if env.get("PRTG_AI_LOG", "file").lower() == "none":
        return False
    return level >= _LEVELS.get(env.get("PRTG_AI_LOG_LEVEL", "WARNING").upper(), 30)


class LazyLogger:
    """A stand-in for ``logging.Logger`` with the methods the pack uses."""

    __slots__ = ("name", "_logger")

    def __init__(self, name: str):
        self.name = name
        self._logger = None

    def _get(self):
        if self._logger is None:
            import logging

            _ensure()
            self._logger = logging.getLogger(self.name)
        return self._logger

    def debug(self, *args, **kwargs):
        if _wanted(10):
            self._get().debug(*args, **kwargs)

    def info(self, *args, **kwargs):
        if _wanted(20):
            self._get().info(*args, **kwargs)

    def warning(self, *args, **kwargs):
        self._get().warning(*args, **kwargs)

    def error(self, *args, **kwargs):
        self._get().error(*args, **kwargs)

    def exception(self, *args, **kwargs):
        kwargs.setdefault("exc_info", True)
        self._get().error(*args, **kwargs)


def get_logger(name: str) -> LazyLogger:
    return LazyLogger(name)
