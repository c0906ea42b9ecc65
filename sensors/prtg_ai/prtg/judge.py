"""Judge a result as PRTG would: each channel's limits and lookup state, and the worst of them.

Legacy JSON carries limits (``limitmode`` and the four limits) and lookups; PRTG turns
a channel beyond its error limit, or on a lookup value whose state is Error, Down, and
likewise Warning. Script v2 carries neither, so its ``status`` must be computed here,
the same way, or a GPU one degree from its slowdown temperature would be green in v2.

Lookup states come from the lookup definitions the caller passes (the catalogue's,
the source of the shipped ``.ovl`` files: ``prtg/`` reads nothing itself); a value
the lookup does not list takes the lookup's undefined state.
"""

from __future__ import annotations

from collections.abc import Mapping

from prtg_ai.prtg.model import Channel, SensorResult

RANK = {"ok": 0, "warning": 1, "error": 2}


def lookup_state(ch: Channel, lookups: Mapping) -> str:
    """``ok``, ``warning`` or ``error`` for a lookup channel's value (``ok`` for PRTG's None state)."""
    lookup = lookups.get(ch.valuelookup or "")
    if lookup is None:
        return "ok"  # a PRTG standard lookup we do not ship: PRTG judges it, we cannot
    state = lookup.values.get(int(ch.value), (lookup.undefined, ""))[0]
    return {"Warning": "warning", "Error": "error"}.get(state, "ok")


def channel_state(ch: Channel, lookups: Mapping) -> str:
    state = ch.limit_state()
    if ch.valuelookup:
        other = lookup_state(ch, lookups)
        if RANK[other] > RANK[state]:
            state = other
    return state


def judge(result: SensorResult, lookups: Mapping) -> tuple[str, Channel | None]:
    """The worst state of ``result`` and the first channel in that state (None when it is the sensor's own)."""
    if result.error:
        return "error", None
    worst, which = ("warning" if result.warning else "ok"), None
    for ch in result.channels:
        state = channel_state(ch, lookups)
        if RANK[state] > RANK[worst] or (which is None and state != "ok" and RANK[state] == RANK[worst]):
            worst, which = state, ch
    return worst, which


def explain(ch: Channel, state: str, lookups: Mapping) -> str:
    """A sentence naming the channel in alarm, for the Script v2 message."""
    msg = ch.limiterrormsg if state == "error" else ch.limitwarningmsg
    value = f"{ch.value:g}" if isinstance(ch.value, float) else str(ch.value)
    text = f"{ch.name} is in {state} ({value}"
    if ch.valuelookup:
        lookup = lookups.get(ch.valuelookup)
        label = lookup.values.get(int(ch.value), ("", ""))[1] if lookup else ""
        text += f": {label}" if label else ""
    text += ")"
    return text + (f": {msg}" if msg and not ch.valuelookup else "")
