"""Shared test helpers: contexts with injected roots and a fake clock, sensor runners
that validate every result against PRTG's rules and against the channel catalogue
(unit, custom unit, sizes, float, lookup and limits of every channel, on every result),
and a tally of the catalogue rows the session's results carried (the coverage report).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

from prtg_ai.catalog import load
from prtg_ai.catalog.lookups import load_lookups
from prtg_ai.core.runtime import finish
from prtg_ai.prtg.model import SensorResult
from prtg_ai.prtg.render import to_legacy, to_v2
from prtg_ai.prtg.validate import validate

REPO = Path(__file__).resolve().parents[1]
# sensor id -> catalogue key -> how many checked results carried that channel (the coverage report)
EMITTED: dict[str, Counter] = defaultdict(Counter)
COLLECTED_FILES: set[str] = set()
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


LIMIT_KEYS = ("limitmaxerror", "limitmaxwarning", "limitminwarning", "limitminerror")
# The legacy JSON keys a channel carries exactly as its catalogue row says.
CATALOGUED_KEYS = ("unit", "customunit", "speedsize", "volumesize", "speedtime", "float", "valuelookup",
                   *LIMIT_KEYS, "limitmode", "limitwarningmsg", "limiterrormsg")


def _pattern(name: str) -> re.Pattern:
    return re.compile("^" + re.escape(name).replace(re.escape("{instance}"), ".+") + "$")


def catalogue_row(sensor_id: str, channel_name: str):
    """The catalogue row a channel name belongs to (a templated row matches any instance), or None."""
    for spec in load(sensor_id):
        if _pattern(spec.name).match(channel_name):
            return spec
    return None


def _catalogued(spec, limits: dict | None) -> dict:
    """What the row fixes, as legacy JSON keys; ``limits``: limit keys the run was told to change."""
    lim = {k: getattr(spec, k) for k in LIMIT_KEYS}
    lim.update(limits or {})
    on = any(v is not None for v in lim.values())
    return {
        "unit": spec.unit, "customunit": spec.customunit if spec.unit == "Custom" else None,
        "speedsize": spec.speedsize, "volumesize": spec.volumesize, "speedtime": spec.speedtime,
        "float": spec.float, "valuelookup": spec.lookup, **lim,
        # Limits set for this run (by a parameter) are switched on, whatever the row's default.
        "limitmode": int(spec.limitmode or bool(limits)) if on else None,
        "limitwarningmsg": spec.limitwarningmsg if on else None,
        "limiterrormsg": spec.limiterrormsg if on else None,
    }


def _emitted(ch: dict) -> dict:
    got = {k: ch.get(k) for k in CATALOGUED_KEYS}
    got["unit"] = ch.get("unit", "Custom")
    got["float"] = ch.get("float") == 1
    return got


def check_channels(sensor_id: str, doc: dict, limits: dict[str, dict] | None = None) -> None:
    """Assert every channel of a legacy result is exactly as ``sensor_id``'s catalogue defines it.

    Unit, custom unit, sizes, float, lookup, limits, limit mode and messages must equal
    the row's; a lookup channel's value must be one its lookup defines. ``limits`` maps
    catalogue keys to the limit keys the run changed on purpose (``--stall-after`` and
    the like: the test states the figures it expects). Counts each row seen for the
    coverage report.
    """
    body = doc["prtg"]
    if body.get("error"):
        return
    rows = {spec.key for spec in load(sensor_id)}
    assert set(limits or {}) <= rows, f"limits given for {sorted(set(limits) - rows)}, not in the catalogue"
    for ch in body["result"]:
        spec = catalogue_row(sensor_id, ch["channel"])
        assert spec is not None, f"{sensor_id}: channel {ch['channel']!r} is emitted but not catalogued"
        want, got = _catalogued(spec, (limits or {}).get(spec.key)), _emitted(ch)
        diff = {k: f"emitted {got[k]!r}, catalogued {want[k]!r}" for k in CATALOGUED_KEYS if got[k] != want[k]}
        assert not diff, f"{sensor_id}: channel {ch['channel']!r} (row {spec.key}) differs: {diff}"
        if spec.lookup:
            defined = load_lookups()[spec.lookup].values
            assert int(ch["value"]) in defined, \
                f"{sensor_id}: {ch['channel']!r} = {ch['value']}, which lookup {spec.lookup} does not define"
        EMITTED[sensor_id][spec.key] += 1


def catalogue_coverage() -> dict[str, tuple[int, list[str]]] | None:
    """sensor id -> (rows seen, rows never seen) over this session's checked results; None before any."""
    from prtg_ai.core import registry

    if not EMITTED:
        return None
    out = {}
    for sensor in registry.sensor_ids():
        keys = [spec.key for spec in load(sensor)]
        seen = EMITTED.get(sensor, Counter())
        out[sensor] = (sum(1 for k in keys if seen[k]), [k for k in keys if not seen[k]])
    return out


def whole_suite_collected() -> bool:
    """Whether this session runs tests of every test file under tests/ (what full coverage needs)."""
    return {str(p) for p in (REPO / "tests").rglob("test_*.py")} <= COLLECTED_FILES


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


def spend_scanner(tmp_path, clock, args: list[str], day):
    """``scan(*extra, state=...)`` -> (result, checked doc): ``gpu_spend`` in-process at ``day`` with ``args``.

    The cloud e2e tests' scan: the environment is the one the test set up (its local cloud).
    """
    from prtg_ai.core.context import Context
    from prtg_ai.core.runtime import run_sensor

    clock.now = day.timestamp()

    def scan(*extra, state="state"):
        ctx = Context(state_dir=tmp_path / state, clock=clock, env=dict(os.environ))
        result = run_sensor("gpu_spend", args + [str(a) for a in extra], ctx)
        return result, check_result("gpu_spend", result)
    return scan


def check_result(sensor_id: str, result: SensorResult, limits: dict[str, dict] | None = None) -> dict:
    """Render ``result`` both ways, assert PRTG accepts both and the catalogue matches; return legacy JSON.

    Also asserts the Script v2 status equals the worst limit/lookup state of the legacy result.
    ``limits``: see ``check_channels``.
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
    check_channels(sensor_id, legacy, limits)
    return legacy


def cli_env(state_dir: Path, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRTG_AI_", "prtg_"))}
    env["PRTG_AI_STATE_DIR"] = str(state_dir)
    env.update(extra or {})
    return env


# Root without the capabilities that bypass file permissions: how a test sees what an
# unprivileged PRTG service account would (setpriv from util-linux).
UNPRIVILEGED = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--"]


def run_cli(args: list[str], env: dict, timeout: float = 60, prefix: list[str] | None = None,
            limits: dict[str, dict] | None = None) -> tuple[dict, subprocess.CompletedProcess]:
    """Run ``prtg-ai`` as PRTG would (a new process); assert exit 0, valid PRTG JSON, no traceback.

    A ``run SENSOR`` answer in legacy JSON is checked against the catalogue (``check_channels``).
    """
    proc = subprocess.run([*(prefix or []), sys.executable, "-m", "prtg_ai.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout and "Traceback" not in proc.stderr, proc.stderr
    assert validate(proc.stdout) == [], proc.stdout
    doc = json.loads(proc.stdout)
    if args and args[0] == "run" and len(args) > 1 and "prtg" in doc:
        check_channels(str(args[1]), doc, limits)
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


def require_netns() -> None:
    """Skip the calling test unless it may create network namespaces (root and iproute2's ``ip``)."""
    import shutil

    import pytest

    if not is_root():
        pytest.skip("needs root: the test creates network namespaces and a veth pair (ip netns add)")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's `ip` command to create network namespaces")


