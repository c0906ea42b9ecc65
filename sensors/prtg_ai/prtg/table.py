"""A human table of a result, for a person testing a sensor at a terminal.

Pure like the rest of ``prtg/``: the lookup definitions come from the caller.
"""

from __future__ import annotations

from collections.abc import Mapping

from prtg_ai.prtg.model import Channel, SensorResult
from prtg_ai.prtg.units import human_size

_BYTE_UNITS = ("BytesDisk", "BytesMemory", "BytesFile")
_SPEED_UNITS = ("SpeedDisk", "SpeedNet", "BytesBandwidth")


def _value(ch: Channel) -> str:
    if ch.unit in _BYTE_UNITS:
        return human_size(ch.value)
    if ch.unit in _SPEED_UNITS:
        return human_size(ch.value, suffix="/s")
    value = f"{ch.value:.3f}".rstrip("0").rstrip(".") if ch.float else str(int(ch.value))
    unit = {"Percent": "%", "Temperature": "°C", "TimeResponse": "ms", "TimeSeconds": "s",
            "TimeHours": "h", "CPU": "%", "Count": ""}.get(ch.unit, "")
    if ch.unit == "Custom":
        unit = ch.customunit or ""
    return f"{value} {unit}".strip()


def _lookup(ch: Channel, lookups: Mapping) -> tuple[str, str]:
    """State and text of a lookup value, from the lookup definitions the caller passed."""
    lk = lookups.get(ch.valuelookup or "")
    if lk is None:
        return "lookup", ""
    state, text = lk.values.get(int(ch.value), (lk.undefined, "undefined value"))
    return state.lower().replace("none", "ok"), text


def _limits(ch: Channel) -> str:
    parts = []
    for label, key in (("min err", "limitminerror"), ("min warn", "limitminwarning"),
                       ("max warn", "limitmaxwarning"), ("max err", "limitmaxerror")):
        v = getattr(ch, key)
        if v is not None:
            parts.append(f"{label} {v:g}")
    text = ", ".join(parts)
    if parts and not ch.limitmode:
        text += " (disabled)"
    return text


def render_table(result: SensorResult, lookups: Mapping | None = None) -> str:
    """The table; ``lookups`` (id -> definition, from ``catalog.lookups``) spells out lookup values."""
    if result.error:
        return f"ERROR  {result.message()}\n"
    rows = [("Channel", "Value", "State", "Limits / lookup")]
    for ch in result.channels:
        value, state, limits = _value(ch), ch.limit_state(), _limits(ch)
        if ch.valuelookup:
            state, text = _lookup(ch, lookups or {})
            value = f"{int(ch.value)} ({text})" if text else value
            limits = ch.valuelookup
        rows.append((ch.name, value, state.upper() if state != "ok" else "ok", limits))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    message = result.message()
    return "\n".join(lines) + ("\n\n" + message if message else "") + "\n"
