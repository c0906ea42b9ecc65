"""Registry of secrets that must never reach PRTG output or a log file."""

from __future__ import annotations

import logging

_MIN_SECRET_LEN = 4
REDACTED = "***"


class Scrubber:
    """Replaces every registered secret (and its obvious encodings) with ``***``."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def register(self, value: str | None) -> None:
        if value and len(value) >= _MIN_SECRET_LEN:
            self._secrets.add(value)

    def scrub(self, text: str) -> str:
        # Longest first, so a secret containing another is replaced whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def __bool__(self) -> bool:
        return bool(self._secrets)


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
