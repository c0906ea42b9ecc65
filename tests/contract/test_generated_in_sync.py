"""Generated artefacts match their sources: lookups and device templates from the catalogue and
registry, and every generated block of README.md and docs/ (channel and lookup tables from the
catalogue, benchmark and reliability tables from the newest recorded runs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from prtg_ai.build.artifacts import stale_files, write_files
from prtg_ai.build.splice import blocks, splice_file
from prtg_ai.commands import cli

REPO = Path(__file__).resolve().parents[2]


def test_generated_files_are_current():
    stale = stale_files(REPO)
    assert not stale, f"run `prtg-ai render`; stale: {[str(p.relative_to(REPO)) for p in stale]}"
    proc = subprocess.run([sys.executable, "-m", "prtg_ai.cli", "render", "--check"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def _copy(tmp_path: Path) -> Path:
    """What render owns, and the recorded runs it renders from, in a throw-away tree."""
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    for folder in ("docs", "lookups", "device_templates", "benchmarks/results"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    return tmp_path


def test_a_hand_edited_lookup_or_template_is_detected_and_rendering_repairs_it(tmp_path):
    root = _copy(tmp_path)
    odt = root / "device_templates" / "prtgai_aws_gpu_account.odt"
    odt.write_text(odt.read_text().replace("<interval>900</interval>", "<interval>60</interval>"))
    ovl = sorted((root / "lookups").glob("*.ovl"))[0]
    ovl.write_text(ovl.read_text().replace('state="Ok"', 'state="OK"', 1))
    (root / "lookups" / "prtgai.orphan.ovl").write_text("<ValueLookup/>")
    assert {p.name for p in stale_files(root)} == {ovl.name, "prtgai.orphan.ovl", odt.name}
    write_files(root)
    assert stale_files(root) == []


# One edit inside each kind of generated block. The edited text must be there exactly once, so a
# renamed channel or a new figure fails here instead of making the test pass without editing.
EDITS = {
    "channel table": ("docs/sensors/checkpoint_volume.md", "| Free Space | 11 |", "| Free Spaces | 11 |"),
    "lookup values": ("docs/sensors/gpu.md", "| 0 | Not throttled | Ok |", "| 0 | Not throttled | Warning |"),
    "benchmarks": ("docs/benchmarks.md", "| start-up: gpu (console script", "| start-up: GPU (console script"),
    "reliability": ("docs/benchmarks.md", " cases tried, ", " cases run, "),
}


@pytest.mark.parametrize("kind", sorted(EDITS))
def test_an_edit_inside_any_generated_block_is_detected_and_repaired(tmp_path, kind):
    root = _copy(tmp_path)
    name, old, new = EDITS[kind]
    page = root / name
    before = page.read_text(encoding="utf-8")
    assert before.count(old) == 1, f"{old!r} is not in {name} exactly once"
    page.write_text(before.replace(old, new), encoding="utf-8")
    assert stale_files(root) == [page]
    write_files(root)
    assert stale_files(root) == []
    assert page.read_text(encoding="utf-8") == before


def test_render_check_on_a_stale_copy_exits_1_and_names_the_page(tmp_path, monkeypatch):
    root = _copy(tmp_path)
    monkeypatch.setattr("prtg_ai.data.repo_root", lambda: root)
    page = root / "docs" / "sensors" / "gpu_spend.md"
    page.write_text(page.read_text(encoding="utf-8").replace("| Budget Used |", "| Budget used |"), encoding="utf-8")
    runner = CliRunner()
    checked = runner.invoke(cli, ["render", "--check"])
    assert checked.exit_code == 1 and "stale: docs/sensors/gpu_spend.md" in checked.output
    assert runner.invoke(cli, ["render"]).output == "wrote docs/sensors/gpu_spend.md\n"
    assert runner.invoke(cli, ["render", "--check"]).exit_code == 0
    (root / "docs" / "broken.md").write_text("<!-- BEGIN GENERATED: benchmarks -->\n", encoding="utf-8")
    broken = runner.invoke(cli, ["render", "--check"])
    assert broken.exit_code == 1 and "Error: docs/broken.md: a GENERATED marker without its partner" in broken.output
    assert broken.exception is None or isinstance(broken.exception, SystemExit)  # no traceback


def test_blocks_are_found_in_the_readme_and_in_any_page_under_docs(tmp_path):
    root = _copy(tmp_path)
    old_block = "<!-- BEGIN GENERATED: lookups/gpu_host -->\nold text\n<!-- END GENERATED: lookups/gpu_host -->\n"
    readme = root / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + "\n" + old_block, encoding="utf-8")
    runbook = root / "docs" / "runbooks" / "gpu_host.md"
    runbook.parent.mkdir()
    runbook.write_text("# Runbook\n\n" + old_block, encoding="utf-8")
    assert stale_files(root) == sorted([readme, runbook])
    write_files(root)
    assert stale_files(root) == []
    body = blocks(runbook.read_text(encoding="utf-8"))["lookups/gpu_host"]
    assert "**Worst Health** (`prtgai.gpu.health`)" in body and "old text" not in body


def _result(root: Path, stamp: str, doc: dict) -> None:
    (root / "benchmarks" / "results" / f"{stamp}.json").write_text(json.dumps(doc), encoding="utf-8")


def test_the_benchmark_table_is_the_newest_complete_run(tmp_path):
    root = _copy(tmp_path)
    page = root / "docs" / "benchmarks.md"
    row = {"benchmark": "start-up: gpu", "baseline": "python", "ratio": 1.25, "target": "<= 1.3", "ok": True,
           "detail": "median 1 ms"}
    partial = {"when": "2999-01-01 00:00 UTC", "machine": "box", "quick": False, "complete": False, "rows": [row]}
    _result(root, "29990101T000000Z", partial)  # an --only run: never what the docs show
    assert stale_files(root) == []
    _result(root, "29990101T000100Z", dict(partial, when="2999-01-01 00:01 UTC", complete=True))
    assert stale_files(root) == [page]
    write_files(root)
    body = blocks(page.read_text(encoding="utf-8"))["benchmarks"]
    assert body.startswith("Measured 2999-01-01 00:01 UTC on box.")
    assert "| start-up: gpu | python | 1.25 | <= 1.3 | yes | median 1 ms |" in body


def test_the_reliability_table_is_the_newest_full_run(tmp_path):
    root = _copy(tmp_path)
    page = root / "docs" / "benchmarks.md"
    group = {"tests": 2, "cases": 1200, "faults": 30, "failures": 0}
    doc = {"when": "2999-01-01 00:00 UTC", "mode": "quick", "machine": "box", "groups": {"concurrency": group},
           "totals": dict(group, known_bugs=0), "known_bugs": []}
    _result(root, "reliability-29990101T000000Z-quick", doc)
    assert stale_files(root) == []
    _result(root, "reliability-29990101T000100Z", dict(doc, mode="full"))
    assert stale_files(root) == [page]
    write_files(root)
    body = blocks(page.read_text(encoding="utf-8"))["reliability"]
    assert "**1,200 cases tried, 30 faults injected, 0 failures**" in body
    assert "| concurrency | 2 | 1,200 | 30 | 0 | 0 |" in body


@pytest.mark.parametrize("text, error", [
    ("<!-- BEGIN GENERATED: channels/gpu -->\nno end\n", "without its partner"),
    ("<!-- BEGIN GENERATED: channels/gpu -->\nx\n<!-- END GENERATED: channels/gpu_host -->\n", "without its partner"),
    ("<!-- BEGIN GENERATED: channels/gpu -->\n<!-- END GENERATED: channels/gpu -->\n" * 2, "named twice"),
    ("<!-- BEGIN GENERATED: channels/nosuch -->\n<!-- END GENERATED: channels/nosuch -->\n", "unknown generated block"),
])
def test_a_broken_or_unknown_block_is_an_error_naming_the_page(tmp_path, text, error):
    root = _copy(tmp_path)
    (root / "docs" / "broken.md").write_text("# Broken\n\n" + text, encoding="utf-8")
    with pytest.raises(ValueError, match=error) as caught:
        stale_files(root)
    assert str(caught.value).startswith("docs/broken.md: ")


def test_a_marker_quoted_inside_a_sentence_is_not_a_block():
    text = "Blocks start with `<!-- BEGIN GENERATED: NAME -->` on a line of their own.\n"
    assert blocks(text) == {}


def test_splice_file_replaces_one_block_and_refuses_a_missing_one(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("a\n<!-- BEGIN GENERATED: x -->\nold\n<!-- END GENERATED: x -->\n"
                    "<!-- BEGIN GENERATED: y -->\nkeep\n<!-- END GENERATED: y -->\nb\n", encoding="utf-8")
    assert splice_file(page, "x", "\nnew\n") is True
    assert page.read_text(encoding="utf-8") == ("a\n<!-- BEGIN GENERATED: x -->\nnew\n<!-- END GENERATED: x -->\n"
                                                "<!-- BEGIN GENERATED: y -->\nkeep\n<!-- END GENERATED: y -->\nb\n")
    assert splice_file(page, "x", "new") is False
    with pytest.raises(ValueError, match="no generated block 'z'"):
        splice_file(page, "z", "text")
