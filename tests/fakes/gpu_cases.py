"""Running the ``gpu`` / ``gpu_host`` test cases under ``tests/testcases/gpu*/<case>/``.

A case folder holds ``nvml.json`` (the scenario for the NVML fake), ``case.json``
(``args`` and the name of its kernel-log file, if any), optionally ``kmsg.txt``, and
``expect.json``: what the second scan must show, worked out from the capture by hand
(never written by the sensor): the status (ok / warning / error), every channel in
order with its value, unit and limits (and ``from``: how the value follows from the
capture), and the facts the message must contain (or must not).
A case runs as two scans 60 s apart: the first sets the baselines (rates, XID cursor)
with an empty kernel log, then the counters advance by their ``per_second`` rates and
the case's kernel log appears, so the second scan shows rates and "new" XIDs.
"""

from __future__ import annotations

import json
from pathlib import Path

from fakes.nvml_fake import FakeNvml, install, load_scenario

from prtg_ai.prtg.render import to_legacy

TESTCASES = Path(__file__).resolve().parents[1] / "testcases"
SCAN_INTERVAL = 60.0


def case_dirs(sensor: str) -> list[Path]:
    return sorted(p for p in (TESTCASES / sensor).iterdir() if (p / "nvml.json").is_file())


def prepare(case: Path, tmp_path: Path) -> tuple[dict, list[str], Path]:
    """The scenario, the argv (with ``--xid-log`` at a private copy) and that log's path."""
    scenario = load_scenario(case / "nvml.json")
    doc = json.loads((case / "case.json").read_text(encoding="utf-8"))
    log = tmp_path / f"{case.name}-kmsg.txt"
    log.write_text("", encoding="utf-8")
    return scenario, [*doc["args"], "--xid-log", str(log)], log


def run_two_scans(sensor: str, case: Path, tmp_path: Path, monkeypatch, sensor_run, make_ctx, clock):
    """Run a case as two scans; returns (fake, first result, second result)."""
    scenario, argv, log = prepare(case, tmp_path)
    fake = install(monkeypatch, scenario)
    ctx = make_ctx(proc_root=tmp_path / "proc")
    first = sensor_run(sensor, argv, ctx)
    clock.advance(SCAN_INTERVAL)
    fake.advance(SCAN_INTERVAL)
    if (case / "kmsg.txt").is_file():
        log.write_text((case / "kmsg.txt").read_text(encoding="utf-8"), encoding="utf-8")
    second = sensor_run(sensor, argv, ctx)
    return fake, first, second


LIMITS = ("limitmaxerror", "limitmaxwarning", "limitminwarning", "limitminerror")


def check_expectations(case: Path, result) -> None:
    """Compare the second scan's ``result`` with the case's ``expect.json``."""
    want = json.loads((case / "expect.json").read_text(encoding="utf-8"))
    message = result.message()
    status = "error" if result.error else "warning" if result.warning else "ok"
    assert status == want["status"], f"{case.name}: {status}, expected {want['status']}: {message}"
    for fact in want["message_contains"]:
        assert fact in message, f"{case.name}: message lacks {fact!r}: {message}"
    for word in want.get("message_lacks", []):
        assert word not in message, f"{case.name}: message has {word!r}: {message}"
    if result.error:
        return
    got = [c for c in to_legacy(result)["prtg"]["result"] if c["channel"] != "Execution Time"]
    assert [c["channel"] for c in got] == [c["name"] for c in want["channels"]], case.name
    for have, exp in zip(got, want["channels"]):
        where = f"{case.name}: {exp['name']}"
        assert have["value"] == exp["value"], f"{where}: {have['value']} != {exp['value']} ({exp['from']})"
        assert isinstance(have["value"], float) == isinstance(exp["value"], float), f"{where}: int/float"
        assert (have["unit"], have.get("customunit"), have.get("volumesize"), have.get("valuelookup")) == (
            exp["unit"], exp.get("customunit"), exp.get("volumesize"), exp.get("lookup")), where
        limits = {k: have[k] for k in LIMITS if k in have}
        assert limits == exp.get("limits", {}), f"{where}: limits {limits}"
        assert have.get("limitmode", 0) == (1 if limits else 0), f"{where}: limitmode"


__all__ = ["FakeNvml", "case_dirs", "check_expectations", "run_two_scans", "prepare", "TESTCASES"]
