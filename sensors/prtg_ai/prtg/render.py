"""Render a ``SensorResult`` as PRTG JSON: legacy (advanced) format or Script v2.

Legacy JSON serves EXE/Script Advanced, SSH Script Advanced, Python Script
Advanced, HTTP Data Advanced and HTTP Push Data Advanced alike.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from prtg_ai.prtg.model import Channel, SensorResult
from prtg_ai.prtg.units import TEXT_LIMIT, V2_KIND_BY_UNIT, VALUE_LIMIT


def _truncate(text: str) -> str:
    if len(text) <= TEXT_LIMIT:
        return text
    return text[: TEXT_LIMIT - 3] + "..."


def _number(value, is_float: bool):
    """Coerce a value to the JSON number PRTG expects (never NaN/inf, never > 2**62)."""
    if isinstance(value, bool):
        value = int(value)
    if is_float:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError("non-finite channel value")
        if abs(value) > VALUE_LIMIT:
            value = math.copysign(VALUE_LIMIT, value)
        return value
    value = int(round(value))
    return max(-VALUE_LIMIT, min(VALUE_LIMIT, value))


def _legacy_channel(ch: Channel) -> dict:
    out: dict = {"channel": ch.name, "value": _number(ch.value, ch.float)}
    out["unit"] = ch.unit
    if ch.unit == "Custom" and ch.customunit:
        out["customunit"] = ch.customunit
    for key in ("speedsize", "volumesize", "speedtime", "mode", "decimalmode"):
        val = getattr(ch, key)
        if val is not None:
            out[key] = val
    if ch.float:
        out["float"] = 1
    if ch.warning:
        out["warning"] = 1
    for key in ("showchart", "showtable"):
        val = getattr(ch, key)
        if val is not None:
            out[key] = 1 if val else 0
    limits = ("limitmaxerror", "limitmaxwarning", "limitminwarning", "limitminerror")
    for key in limits:
        val = getattr(ch, key)
        if val is not None:
            out[key] = val
    for key in ("limiterrormsg", "limitwarningmsg"):
        val = getattr(ch, key)
        if val:
            out[key] = val
    if ch.limitmode is not None:
        out["limitmode"] = 1 if ch.limitmode else 0
    if ch.valuelookup:
        out["valuelookup"] = ch.valuelookup
    if ch.notifychanged:
        out["notifychanged"] = 1
    return out


def to_legacy(result: SensorResult) -> dict:
    """Return the EXE/Script Advanced JSON document for ``result``."""
    if result.error:
        return {"prtg": {"error": 1, "text": _truncate(result.message() or "Sensor error")}}
    body: dict = {}
    message = result.message()
    if message:
        body["text"] = _truncate(message)
    body["result"] = [_legacy_channel(ch) for ch in result.channels]
    # The legacy format has no sensor-level warning key: PRTG turns the whole
    # sensor to Warning when any channel carries warning=1.
    if result.warning and body["result"]:
        body["result"][0]["warning"] = 1
    return {"prtg": body}


def _v2_channel(ch: Channel) -> dict:
    out: dict = {"id": ch.v2_id, "name": ch.name}
    if ch.valuelookup:
        out.update(type="lookup", value=_number(ch.value, False), lookup_name=ch.valuelookup)
        return out
    out["type"] = "float" if ch.float else "integer"
    out["value"] = _number(ch.value, ch.float)
    kind = V2_KIND_BY_UNIT.get(ch.unit)
    if kind:
        out["kind"] = kind
    else:
        out["kind"] = "custom"
        out["display_unit"] = ch.customunit or ch.unit
    return out


def to_v2(result: SensorResult, lookups: Mapping | None = None) -> dict:
    """Return the Script v2 JSON document for ``result``.

    ``lookups`` (lookup id -> definition, from ``catalog.lookups``) lets a lookup
    channel's state count in the status; without them only limits count.
    """
    if result.error:
        return {"version": 2, "status": "error",
                "message": _truncate(result.message() or "Sensor error")}
    from prtg_ai.prtg.judge import explain, judge

    # Script v2 has no limits or lookups on the wire: the status is judged here, as PRTG
    # would judge the legacy result's limits and lookup states, and the message names why.
    status, channel = judge(result, lookups or {})
    message = result.message()
    if channel is not None:
        reason = explain(channel, status, lookups or {})
        message = f"{reason}. {message}" if message else reason + "."
    return {
        "version": 2,
        "status": status,
        "message": _truncate(message),
        "channels": [_v2_channel(ch) for ch in result.channels],
    }


def render(result: SensorResult, fmt: str = "prtg", lookups: Mapping | None = None) -> str:
    """Serialise ``result`` for PRTG (``prtg`` or ``v2``, judged with ``lookups``) as compact JSON text."""
    doc = to_v2(result, lookups) if fmt == "v2" else to_legacy(result)
    return json.dumps(doc, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
