"""Validator of PRTG's rules for a rendered result (legacy or Script v2 JSON).

It returns a list of human-readable problems (empty when the document is one
PRTG accepts). The rules and their sources are in prtg-formats.md §1 and §3.
Every result the tests produce goes through here.

PRTG reads the legacy format's key names case-insensitively (Paessler's own Python
helper writes ``Channel``, ``Value``, ``LimitMaxError``...), and its enumerated
values (``unit``, ``mode``...) likewise. ``canonical`` rewrites such a document in
the lower-case form that the rules below check and says what it renamed, so the
validator reports the canonical spelling instead of rejecting the document.
"""

from __future__ import annotations

import json
import math

from prtg_ai.prtg.units import (
    CHANNEL_LIMIT, DECIMAL_MODES, MODES, SIZES, SPEED_TIMES, TEXT_LIMIT, UNITS,
    V2_MAX_ID, V2_MIN_ID, V2_STATUSES, V2_TYPES, VALUE_LIMIT,
)

_LEGACY_CHANNEL_KEYS = {
    "channel", "value", "unit", "customunit", "speedsize", "volumesize", "speedtime",
    "mode", "float", "decimalmode", "warning", "showchart", "showtable",
    "limitmaxerror", "limitmaxwarning", "limitminwarning", "limitminerror",
    "limiterrormsg", "limitwarningmsg", "limitmode", "valuelookup", "notifychanged",
}
_ENUMS = {
    "unit": UNITS, "speedsize": SIZES, "volumesize": SIZES, "speedtime": SPEED_TIMES,
    "mode": MODES, "decimalmode": DECIMAL_MODES,
}
_FLAGS = ("float", "warning", "showchart", "showtable", "limitmode", "notifychanged")
_LIMITS = ("limitmaxerror", "limitmaxwarning", "limitminwarning", "limitminerror")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_value(where: str, value, is_float: bool, problems: list[str]) -> None:
    if not _is_number(value):
        problems.append(f"{where}: value {value!r} is not a JSON number")
        return
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(f"{where}: value is not finite")
        return
    if abs(value) > VALUE_LIMIT:
        problems.append(f"{where}: value {value} exceeds PRTG's 2^62 limit")
    if not is_float and isinstance(value, float) and not value.is_integer():
        problems.append(f"{where}: non-integer value {value} needs float: 1 (PRTG error PE231)")
    if not is_float and isinstance(value, float):
        problems.append(f"{where}: integer channel carries a float literal {value!r}")


def _check_text(where: str, text, problems: list[str]) -> None:
    if not isinstance(text, str):
        problems.append(f"{where} must be a string")
    elif len(text) > TEXT_LIMIT:
        problems.append(f"{where} is {len(text)} characters; PRTG keeps {TEXT_LIMIT}")


def _validate_legacy(doc: dict, problems: list[str]) -> None:
    body = doc.get("prtg")
    if not isinstance(body, dict):
        problems.append("'prtg' must be an object")
        return
    unknown = set(body) - {"text", "result", "error"}
    if unknown:
        problems.append(f"unknown top-level keys {sorted(unknown)}")
    if "text" in body:
        _check_text("text", body["text"], problems)
    if body.get("error") not in (None, 0, 1):
        problems.append("error must be 0 or 1")
    if body.get("error") == 1:
        if not body.get("text"):
            problems.append("an error result needs a text saying what failed")
        return
    results = body.get("result")
    if not isinstance(results, list) or not results:
        problems.append("'result' must be a non-empty list of channels")
        return
    if len(results) > CHANNEL_LIMIT:
        problems.append(f"{len(results)} channels; PRTG supports at most {CHANNEL_LIMIT}")
    seen: set[str] = set()
    for i, ch in enumerate(results):
        if not isinstance(ch, dict):
            problems.append(f"channel #{i} must be an object")
            continue
        where = _channel_where(i, ch.get("channel"), "'channel' name missing", seen, problems)
        _check_legacy_channel(where, ch, problems)


def _channel_where(i: int, name, missing: str, seen: set[str], problems: list[str]) -> str:
    """How problems name channel ``i``: by its name once it has one (a repeated name is a problem)."""
    if not isinstance(name, str) or not name.strip():
        problems.append(f"channel #{i}: {missing}")
        return f"channel #{i}"
    where = f"channel {name!r}"
    if name in seen:
        problems.append(f"{where}: duplicate channel name")
    seen.add(name)
    return where


def _check_legacy_channel(where: str, ch: dict, problems: list[str]) -> None:
    """The keys, enumerations, flags, limits, value and lookup of one legacy channel."""
    unknown = set(ch) - _LEGACY_CHANNEL_KEYS
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)}")
    if "value" not in ch:
        problems.append(f"{where}: 'value' missing")
    for key, allowed in _ENUMS.items():
        if key in ch and ch[key] not in allowed:
            problems.append(f"{where}: {key} {ch[key]!r} is not one of PRTG's values")
    for key in _FLAGS:
        if key in ch and ch[key] not in (0, 1) or (key in ch and isinstance(ch[key], bool)):
            problems.append(f"{where}: {key} must be 0 or 1")
    for key in _LIMITS:
        if key in ch and not _is_number(ch[key]):
            problems.append(f"{where}: {key} must be a number")
    for key in ("limiterrormsg", "limitwarningmsg", "customunit", "valuelookup"):
        if key in ch and not isinstance(ch[key], str):
            problems.append(f"{where}: {key} must be a string")
    is_float = ch.get("float") == 1
    if "value" in ch:
        _check_value(where, ch["value"], is_float, problems)
    if "valuelookup" in ch:
        if is_float:
            problems.append(f"{where}: lookup channels need integer values")
        if ch.get("unit", "Custom") != "Custom":
            problems.append(f"{where}: lookup channels need unit Custom")


def _validate_v2(doc: dict, problems: list[str]) -> None:
    if doc.get("version") != 2:
        problems.append("version must be 2")
    status = doc.get("status")
    if status not in V2_STATUSES:
        problems.append(f"status {status!r} is not one of {V2_STATUSES}")
    _check_text("message", doc.get("message", ""), problems)
    if status == "error":
        if not doc.get("message"):
            problems.append("an error result needs a message saying what failed")
        return
    channels = doc.get("channels")
    if not isinstance(channels, list) or not channels:
        problems.append("'channels' must be a non-empty list")
        return
    if len(channels) > CHANNEL_LIMIT:
        problems.append(f"{len(channels)} channels; PRTG supports at most {CHANNEL_LIMIT}")
    ids: set[int] = set()
    names: set[str] = set()
    for i, ch in enumerate(channels):
        if not isinstance(ch, dict):
            problems.append(f"channel #{i} must be an object")
            continue
        cid = ch.get("id")
        where = _channel_where(i, ch.get("name"), "'name' missing", names, problems)
        if not isinstance(cid, int) or isinstance(cid, bool) or not V2_MIN_ID <= cid <= V2_MAX_ID:
            problems.append(f"{where}: id {cid!r} must be an integer in {V2_MIN_ID}..{V2_MAX_ID}")
        elif cid in ids:
            problems.append(f"{where}: duplicate id {cid}")
        else:
            ids.add(cid)
        ctype = ch.get("type")
        if ctype not in V2_TYPES:
            problems.append(f"{where}: type {ctype!r} is not one of {V2_TYPES}")
        if "value" not in ch:
            problems.append(f"{where}: 'value' missing")
        else:
            _check_value(where, ch["value"], ctype == "float", problems)
        if ctype == "lookup" and not isinstance(ch.get("lookup_name"), str):
            problems.append(f"{where}: lookup channels need lookup_name")


_LEGACY_BODY_KEYS = ("text", "result", "error")


def _lower_keys(obj: dict, known, where: str, notes: list[str]) -> dict:
    """``obj`` with the keys PRTG knows in their canonical (lower-case) spelling."""
    out: dict = {}
    for key, value in obj.items():
        canon = key.lower() if isinstance(key, str) and key.lower() in known else key
        if canon != key:
            notes.append(f"{where}: key {key!r} is read as {canon!r}")
        if canon in out:  # "Value" and "value" side by side: keep both visible as a duplicate
            out[key] = value
            continue
        out[canon] = value
    return out


def canonical(doc, notes: list[str] | None = None):
    """A legacy result with PRTG's case-insensitive key names and enum values made canonical.

    Args:
        doc: the parsed document (anything; non-legacy documents come back unchanged).
        notes: receives one line per renamed key or value.
    """
    notes = notes if notes is not None else []
    if not isinstance(doc, dict):
        return doc
    top = _lower_keys(doc, ("prtg",), "top level", notes)
    body = top.get("prtg")
    if not isinstance(body, dict):
        return top
    body = _lower_keys(body, _LEGACY_BODY_KEYS, "prtg", notes)
    results = body.get("result")
    if isinstance(results, list):
        fixed = []
        for i, ch in enumerate(results):
            if not isinstance(ch, dict):
                fixed.append(ch)
                continue
            name = ch.get("channel", ch.get("Channel", f"#{i}"))
            where = f"channel {name!r}" if isinstance(name, str) else f"channel #{i}"
            ch = _lower_keys(ch, _LEGACY_CHANNEL_KEYS, where, notes)
            for key, allowed in _ENUMS.items():
                value = ch.get(key)
                if isinstance(value, str) and value not in allowed:
                    match = [a for a in allowed if a.lower() == value.lower()]
                    if match:
                        notes.append(f"{where}: {key} {value!r} is read as {match[0]!r}")
                        ch[key] = match[0]
            fixed.append(ch)
        body["result"] = fixed
    top["prtg"] = body
    return top


def validate(doc, notes: list[str] | None = None) -> list[str]:
    """Check a PRTG result (a parsed dict or JSON text); return the problems found.

    Args:
        doc: the result.
        notes: when given, receives what was read case-insensitively (not a problem).
    """
    problems: list[str] = []
    if isinstance(doc, (str, bytes)):
        try:
            doc = json.loads(doc)
        except ValueError as exc:
            return [f"not valid JSON: {exc}"]
    if not isinstance(doc, dict):
        return ["the document must be a JSON object"]
    doc = canonical(doc, notes)
    if "prtg" in doc:
        _validate_legacy(doc, problems)
    elif "version" in doc:
        _validate_v2(doc, problems)
    else:
        problems.append("neither a legacy result ('prtg' key) nor a Script v2 result ('version' key)")
    return problems
