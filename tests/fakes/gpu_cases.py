"""Running the ``gpu`` / ``gpu_host`` test cases under ``tests/testcases/gpu*/<case>/``.

A case folder holds ``nvml.json`` (the scenario for the NVML fake), ``case.json``
(``args`` and the name of its kernel-log file, if any), optionally ``kmsg.txt``, and
``expected.json``: the legacy PRTG JSON of the second scan, without Execution Time.
A case runs as two scans 60 s apart: the first sets the baselines (rates, XID cursor)
with an empty kernel log, then the counters advance by their ``per_second`` rates and
the case's kernel log appears, so the second scan shows rates and "new" XIDs.
Set ``PRTG_AI_UPDATE_GOLDEN=1`` to rewrite ``expected.json`` after a reviewed change.
"""

from __future__ import annotations

import json
import os
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


def golden(result) -> dict:
    """The comparable part of a result: legacy JSON without the timing channel."""
    doc = to_legacy(result)
    if "result" in doc["prtg"]:
        doc["prtg"]["result"] = [c for c in doc["prtg"]["result"] if c["channel"] != "Execution Time"]
    doc["prtg"]["text"] = doc["prtg"].get("text", "").replace(str(TESTCASES), "<testcases>")
    return doc


def check_golden(case: Path, doc: dict, tmp_path: Path) -> None:
    text = json.dumps(doc, indent=1, sort_keys=True).replace(str(tmp_path), "<tmp>") + "\n"
    path = case / "expected.json"
    if os.environ.get("PRTG_AI_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{case.name}: no expected.json (review the output, then PRTG_AI_UPDATE_GOLDEN=1)"
    assert path.read_text(encoding="utf-8") == text, f"{case.name}: output differs from expected.json"


__all__ = ["FakeNvml", "case_dirs", "check_golden", "golden", "run_two_scans", "prepare", "TESTCASES"]
