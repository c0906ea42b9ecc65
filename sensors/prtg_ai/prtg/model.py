"""Channel and result model covering every channel key PRTG documents.

A ``Channel`` holds a value plus PRTG's presentation keys. Keys left at ``None``
are not emitted, so PRTG applies its own defaults. Limits, lookups and units
normally come from the catalogue (``prtg_ai.catalog``), not from sensor code.
"""

from __future__ import annotations

# Plain classes with __slots__ rather than dataclasses: every scan would import
# ``dataclasses`` (and ``inspect`` behind it); maths/records.py names the benchmark row.
_CHANNEL_DEFAULTS = {
    "unit": "Custom", "customunit": None, "speedsize": None, "volumesize": None, "speedtime": None,
    "mode": None, "float": False, "decimalmode": None, "warning": False, "showchart": None,
    "showtable": None, "limitmaxerror": None, "limitmaxwarning": None, "limitminwarning": None,
    "limitminerror": None, "limiterrormsg": None, "limitwarningmsg": None, "limitmode": None,
    "valuelookup": None, "notifychanged": False,
    # Script v2 only: stable numeric identity (>= 10); PRTG keys history on it.
    "v2_id": None,
}


class Channel:
    """One PRTG channel (a ``result`` element); keys left at ``None`` are not emitted."""

    __slots__ = ("name", "value", *_CHANNEL_DEFAULTS)

    def __init__(self, name: str, value, unit: str = "Custom", **keys):
        unknown = set(keys) - set(_CHANNEL_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown channel keys {sorted(unknown)}")
        self.name = name
        self.value = value
        self.unit = unit
        for key, default in _CHANNEL_DEFAULTS.items():
            if key != "unit":
                setattr(self, key, keys.get(key, default))

    def __repr__(self) -> str:
        return f"Channel({self.name!r}, {self.value!r}, unit={self.unit!r})"

    def __eq__(self, other) -> bool:
        if not isinstance(other, Channel):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

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


class SensorResult:
    """A whole sensor answer: channels and a message, or an error."""

    __slots__ = ("channels", "text", "error", "warning", "notes")

    def __init__(self, channels: list[Channel] | None = None, text: str = "", error: bool = False,
                 warning: bool = False, notes: list[str] | None = None):
        self.channels = list(channels or [])
        self.text = text
        self.error = error
        self.warning = warning
        self.notes = list(notes or [])

    def __repr__(self) -> str:
        return f"SensorResult(error={self.error}, text={self.message()!r}, channels={len(self.channels)})"

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
