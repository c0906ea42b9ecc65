"""``prtg-ai validate`` reads PRTG's legacy keys case-insensitively, as PRTG does.

The real-world case is Paessler's own ``paepy`` helper output
(``tests/testcases/validate/paessler_paepy``, see its SOURCE.md): CamelCase keys
(``Channel``, ``Value``, ``LimitMaxError``...) must pass and be reported in their
canonical form, while real breaks of PRTG's rules are still caught whatever the case.
"""

from __future__ import annotations

import json
from pathlib import Path

from prtg_ai.prtg.validate import canonical, validate

import subprocess
import sys

from support import cli_env

CASE = Path(__file__).resolve().parents[1] / "testcases" / "validate" / "paessler_paepy"


def test_paessler_helper_result_is_valid_and_notes_canonical_keys():
    notes: list[str] = []
    assert validate((CASE / "result.json").read_text(encoding="utf-8"), notes) == []
    assert "channel 'Percentage': key 'LimitMaxError' is read as 'limitmaxerror'" in notes
    assert "channel 'Response Time': key 'DecimalMode' is read as 'decimalmode'" in notes
    # 4 channels: 7 + 5 + 7 + 5 CamelCase keys
    assert len(notes) == 24


def test_paessler_helper_error_is_valid():
    notes: list[str] = []
    assert validate((CASE / "error.json").read_text(encoding="utf-8"), notes) == []
    assert notes == ["prtg: key 'Error' is read as 'error'", "prtg: key 'Text' is read as 'text'"]


def test_canonical_form_keeps_values_and_fixes_enum_case():
    doc = {"PRTG": {"Result": [{"Channel": "A", "Value": 1, "Unit": "percent", "Mode": "absolute"}]}}
    notes: list[str] = []
    out = canonical(doc, notes)
    assert out == {"prtg": {"result": [{"channel": "A", "value": 1, "unit": "Percent", "mode": "Absolute"}]}}
    assert "channel 'A': unit 'percent' is read as 'Percent'" in notes


def test_rules_still_apply_whatever_the_case():
    doc = {"prtg": {"result": [{"Channel": "A", "Value": 1.5}, {"channel": "a2", "VALUE": 2, "Bogus": 1},
                               {"CHANNEL": "A", "Value": 3}]}}
    problems = validate(doc)
    assert any("non-integer value 1.5 needs float: 1" in p for p in problems)
    assert any("unknown keys ['Bogus']" in p for p in problems)
    assert any("duplicate channel name" in p for p in problems)


def _validate_cli(path: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prtg_ai.cli", "validate", str(path)],
                          capture_output=True, text=True, env=env, timeout=60)


def test_cli_accepts_paessler_output(tmp_path):
    proc = _validate_cli(CASE / "result.json", cli_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "valid"
    assert "note: channel 'Percentage': key 'Channel' is read as 'channel'" in proc.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"prtg": {"Result": [{"Channel": "x", "Value": "high"}]}}))
    proc = _validate_cli(bad, cli_env(tmp_path))
    assert proc.returncode == 1 and "is not a JSON number" in proc.stderr
