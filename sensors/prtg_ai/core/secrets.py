"""Registry of secrets that must never reach PRTG output or a log file."""

from __future__ import annotations

_MIN_SECRET_LEN = 4
REDACTED = "***"


class Scrubber:
    """Replaces every registered secret with ``***``, exactly as registered.

    No encoded forms are derived: a caller that may see a secret encoded registers that
    form too (the push client registers its token URL-encoded as well).
    """

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
