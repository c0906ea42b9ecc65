"""Generated artefacts (lookups, README channel tables) match the catalogue."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from prtg_ai.build.artifacts import stale_files, write_files

REPO = Path(__file__).resolve().parents[2]


def test_generated_files_are_current():
    stale = stale_files(REPO)
    assert not stale, f"run `prtg-ai render`; stale: {[str(p.relative_to(REPO)) for p in stale]}"
    proc = subprocess.run([sys.executable, "-m", "prtg_ai.cli", "render", "--check"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_a_hand_edit_is_detected_and_rendering_repairs_it(tmp_path):
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    shutil.copytree(REPO / "lookups", tmp_path / "lookups")
    shutil.copytree(REPO / "device_templates", tmp_path / "device_templates")
    odt = tmp_path / "device_templates" / "prtgai_aws_gpu_account.odt"
    odt.write_text(odt.read_text().replace("<interval>900</interval>", "<interval>60</interval>"))
    ovl = sorted((tmp_path / "lookups").glob("*.ovl"))[0]
    ovl.write_text(ovl.read_text().replace('state="Ok"', 'state="OK"', 1))
    (tmp_path / "lookups" / "prtgai.orphan.ovl").write_text("<ValueLookup/>")
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("| Free Space |", "| Free Spaces |"))
    stale = {p.name for p in stale_files(tmp_path)}
    assert stale == {ovl.name, "prtgai.orphan.ovl", "README.md", odt.name}
    write_files(tmp_path)
    assert stale_files(tmp_path) == []
