"""Logging for sensors: a small rotating file beside the state, secrets scrubbed.

PRTG reads only stdout, so tracebacks and diagnostics go to
``<state folder>/prtg-ai.log`` (or to stderr when ``PRTG_AI_LOG=stderr``).
``PRTG_AI_LOG_LEVEL`` sets the level (default WARNING).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path

from prtg_ai.core.secrets import Scrubber

LOG_NAME = "prtg-ai.log"
_MAX_BYTES = 1_000_000


class ScrubFilter(logging.Filter):
    """A logging filter that scrubs a record's final message in place."""

    def __init__(self, scrubber: Scrubber):
        super().__init__()
        self.scrubber = scrubber

    def filter(self, record: logging.LogRecord) -> bool:
        if self.scrubber:
            message = record.getMessage()
            record.msg = self.scrubber.scrub(message)
            record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = self.scrubber.scrub(record.exc_text)
        return True


def _safe_file_handler(log_path: Path) -> logging.Handler:
    """A rotating log file opened without following symlinks; a failed write is dropped quietly.

    A planted ``prtg-ai.log`` symlink must not make root append to another file, and
    a full or read-only folder must not print logging's traceback on stderr (which
    SSH Script Advanced would show to PRTG).
    """
    import os
    from logging.handlers import RotatingFileHandler

    class SafeRotatingFileHandler(RotatingFileHandler):
        def _open(self):
            flags = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
            fd = os.open(self.baseFilename, flags, 0o600)
            import stat

            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise OSError(f"{self.baseFilename} is not a regular file")
            return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)

        def handleError(self, record):  # noqa: ARG002 - logging API
            pass  # losing a log line beats a traceback on the sensor's stderr

    return SafeRotatingFileHandler(log_path, maxBytes=_MAX_BYTES, backupCount=2, encoding="utf-8", delay=True)


def configure(state_dir: Path, env: Mapping[str, str], scrubber: Scrubber) -> Path | None:
    """Attach one scrubbing handler to the ``prtg_ai`` logger; return the log file, if any."""
    logger = logging.getLogger("prtg_ai")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    level = getattr(logging, env.get("PRTG_AI_LOG_LEVEL", "WARNING").upper(), logging.WARNING)
    logger.setLevel(level)
    logger.propagate = False
    target = env.get("PRTG_AI_LOG", "file").lower()
    log_path: Path | None = None
    handler: logging.Handler
    if target == "stderr":
        handler = logging.StreamHandler(sys.stderr)
    elif target == "none":
        handler = logging.NullHandler()
    else:
        try:
            from prtg_ai.core.state import secure_folder

            folder, _ = secure_folder(str(state_dir))
            if folder is None:
                raise OSError("the state folder is open to other users")
            state_dir = Path(folder)
            state_dir.mkdir(parents=True, exist_ok=True)
            log_path = state_dir / LOG_NAME
            handler = _safe_file_handler(log_path)
        except OSError:
            handler, log_path = logging.NullHandler(), None
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ScrubFilter(scrubber))
    logger.addHandler(handler)
    return log_path
