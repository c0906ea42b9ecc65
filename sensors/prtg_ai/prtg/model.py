"""Channel and result model covering every channel key PRTG documents.

A ``Channel`` holds a value plus PRTG's presentation keys. Keys left at ``None``
are not emitted, so PRTG applies its own defaults. Limits, lookups and units
normally come from the catalogue (``prtg_ai.catalog``), not from sensor code.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Channel:
    """One PRTG channel (a ``result`` element)."""

    name: str
    value: int | float
    unit: str = "Custom"
    customunit: str | None = None
    speedsize: str | None = None
    volumesize: str | None = None
    speedtime: str | None = None
    mode: str | None = None
    float: bool = False
    decimalmode: str | None = None
    warning: bool = False
    showchart: bool | None = None
    showtable: bool | None = None
    limitmaxerror: float | None = None
    limitmaxwarning: float | None = None
    limitminwarning: float | None = None
    limitminerror: float | None = None
    limiterrormsg: str | None = None
    limitwarningmsg: str | None = None
    limitmode: bool | None = None
    valuelookup: str | None = None
    notifychanged: bool = False
    # Script v2 only: stable numeric identity (>= 10); PRTG keys history on it.
    v2_id: int | None = None

    def limit_state(self) -> str:
        """Return ``"ok"``, ``"warning"`` or ``"error"`` as PRTG would judge the limits.

        Lookup states live in the ``.ovl`` files and are judged by PRTG; this only
        evaluates numeric limits (and the ``warning`` flag).
        """
        state = "warning" if self.warning else "ok"
        if not self.limitmode:
            return state
        v = self.value
        if (self.limitmaxerror is not None and v > self.limitmaxerror) or (
            self.limitminerror is not None and v < self.limitminerror
        ):
            return "error"
        if (self.limitmaxwarning is not None and v > self.limitmaxwarning) or (
            self.limitminwarning is not None and v < self.limitminwarning
        ):
            return "warning"
        return state


@dataclass
class SensorResult:
    """A whole sensor answer: channels and a message, or an error."""

    channels: list[Channel] = field(default_factory=list)
    text: str = ""
    error: bool = False
    warning: bool = False
    notes: list[str] = field(default_factory=list)

    @classmethod
    def failure(cls, text: str) -> "SensorResult":
        return cls(text=text, error=True)

    def add(self, channel: Channel) -> Channel:
        self.channels.append(channel)
        return channel

    def note(self, message: str) -> None:
        """Add a sentence to the sensor message (kept in order, deduplicated)."""
        if message and message not in self.notes:
            self.notes.append(message)

    def message(self) -> str:
        parts = [p for p in [self.text, *self.notes] if p]
        return " ".join(p if p.endswith((".", "!", "?")) else p + "." for p in parts)

    def channel(self, name: str) -> Channel:
        for ch in self.channels:
            if ch.name == name:
                return ch
        raise KeyError(name)
