"""Shared test helpers: contexts with injected roots and a fake clock, sensor runners
that validate every result against PRTG's rules, and a record of every channel emitted
(the catalogue contract test checks that record against the catalogue).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from prtg_ai.core.context import Context
from prtg_ai.core.runtime import finish, run_sensor
from prtg_ai.prtg.model import SensorResult
from prtg_ai.prtg.render import to_legacy, to_v2
from prtg_ai.prtg.validate import validate

REPO = Path(__file__).resolve().parents[1]
# sensor id -> channel name -> set of (unit, customunit, float, lookup) seen
EMITTED: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
COLLECTED_FILES: set[str] = set()
# lookup id -> every value a test saw a sensor emit on a channel using it
LOOKUP_VALUES: dict[str, set] = defaultdict(set)
SECRET_MARKERS = ("Traceback (most recent call last)",)


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, start: float = 1_790_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def record(sensor_id: str, result: SensorResult) -> None:
    for ch in result.channels:
        EMITTED[sensor_id][ch.name].add((ch.unit, ch.customunit, bool(ch.float), ch.valuelookup))
        if ch.valuelookup:
            LOOKUP_VALUES[ch.valuelookup].add(ch.value)


_RANK = {"ok": 0, "warning": 1, "error": 2}


def _ovl_states() -> dict[str, tuple[str, dict[int, str]]]:
    """lookup id -> (undefined state, value -> state), read from the shipped ``lookups/*.ovl`` XML."""
    import xml.etree.ElementTree as ET

    if not _OVL:
        for path in sorted((REPO / "lookups").glob("*.ovl")):
            root = ET.parse(path).getroot()
            values = {int(e.get("value")): e.get("state") for e in root.iter("SingleInt")}
            _OVL[root.get("id")] = (root.get("undefinedState"), values)
    return _OVL


_OVL: dict = {}


def legacy_worst(doc: dict) -> str:
    """How PRTG judges a legacy result: error flag, channel warning flags, enabled limits, lookup states.

    Written from PRTG's documented semantics (limits apply with limitmode 1; a value above
    a max / below a min limit is in that state), independently of the pack's judge.
    """
    body = doc["prtg"]
    if body.get("error"):
        return "error"
    worst = "ok"
    for ch in body["result"]:
        state = "warning" if ch.get("warning") else "ok"
        v = ch["value"]
        if ch.get("limitmode") == 1:
            if ("limitmaxerror" in ch and v > ch["limitmaxerror"]) or ("limitminerror" in ch and v < ch["limitminerror"]):
                state = "error"
            elif ((("limitmaxwarning" in ch and v > ch["limitmaxwarning"])
                   or ("limitminwarning" in ch and v < ch["limitminwarning"])) and state == "ok"):
                state = "warning"
        if ch.get("valuelookup") in _ovl_states():
            undefined, values = _ovl_states()[ch["valuelookup"]]
            lk = {"Warning": "warning", "Error": "error"}.get(values.get(int(v), undefined), "ok")
            state = lk if _RANK[lk] > _RANK[state] else state
        worst = state if _RANK[state] > _RANK[worst] else worst
    return worst


def check_result(sensor_id: str, result: SensorResult) -> dict:
    """Render ``result`` both ways, assert PRTG accepts both, record channels; return legacy JSON.

    Also asserts the Script v2 status equals the worst limit/lookup state of the legacy result.
    """
    for fmt, to_doc in (("prtg", to_legacy), ("v2", to_v2)):
        outcome = finish(result, fmt)
        assert outcome.problems == [], f"{fmt} result broke PRTG's rules: {outcome.problems}"
        assert validate(outcome.text) == []
        for marker in SECRET_MARKERS:
            assert marker not in outcome.text
    legacy = json.loads(finish(result, "prtg").text)
    v2 = json.loads(finish(result, "v2").text)
    assert v2["status"] == legacy_worst(legacy), (v2["status"], legacy_worst(legacy), v2.get("message"))
    if not result.error:
        record(sensor_id, result)
    return legacy


def cli_env(state_dir: Path, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRTG_AI_", "prtg_"))}
    env["PRTG_AI_STATE_DIR"] = str(state_dir)
    env.update(extra or {})
    return env


# Root without the capabilities that bypass file permissions: how a test sees what an
# unprivileged PRTG service account would (setpriv from util-linux).
UNPRIVILEGED = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--"]


def run_cli(args: list[str], env: dict, timeout: float = 60,
            prefix: list[str] | None = None) -> tuple[dict, subprocess.CompletedProcess]:
    """Run ``prtg-ai`` as PRTG would (a new process); assert exit 0, valid PRTG JSON, no traceback."""
    proc = subprocess.run([*(prefix or []), sys.executable, "-m", "prtg_ai.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout and "Traceback" not in proc.stderr, proc.stderr
    assert validate(proc.stdout) == [], proc.stdout
    doc = json.loads(proc.stdout)
    if args and args[0] == "run" and len(args) > 1 and "prtg" in doc and not doc["prtg"].get("error"):
        for ch in doc["prtg"]["result"]:
            EMITTED[args[1]][ch["channel"]].add(
                (ch.get("unit", "Custom"), ch.get("customunit"), ch.get("float") == 1, ch.get("valuelookup")))
            if ch.get("valuelookup"):
                LOOKUP_VALUES[ch["valuelookup"]].add(ch["value"])
    return doc, proc


def channels(result_or_doc) -> dict:
    """Channel name -> value, from a SensorResult or a legacy JSON document."""
    if isinstance(result_or_doc, SensorResult):
        return {ch.name: ch.value for ch in result_or_doc.channels}
    return {ch["channel"]: ch["value"] for ch in result_or_doc["prtg"]["result"]}


def tree_listing(root: Path) -> dict[str, str]:
    """Every folder and file under root: relative path -> 'dir' or the file's SHA-256 and mode."""
    import hashlib

    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[Path(dirpath, d).relative_to(root).as_posix()] = "dir"
        for f in filenames:
            p = Path(dirpath, f)
            out[p.relative_to(root).as_posix()] = (hashlib.sha256(p.read_bytes()).hexdigest()
                                                   + f" {p.stat().st_mode & 0o777:o}")
    return out


def stop_with_sigterm(proc: subprocess.Popen, timeout: float = 15) -> tuple[str, str, float]:
    """Send SIGTERM to a running ``prtg-ai`` process; return its stdout, stderr and seconds to exit."""
    import signal
    import time

    started = time.monotonic()
    try:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return out, err, time.monotonic() - started


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


