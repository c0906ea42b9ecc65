"""The wheel: exactly two top-level imports, the data inside, a working console script."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = {"sensors", "installer", "lookups", "prtg", "device_templates"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(REPO)], check=True, timeout=300)
    [whl] = out.glob("prtg_ai-*.whl")
    return whl


def test_top_level_names_are_exactly_ours(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"prtg_ai", "prtg_ai_installer"}
    assert not top & FORBIDDEN


def test_data_files_are_inside(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for ovl in (REPO / "lookups").glob("*.ovl"):
        assert f"prtg_ai/data/lookups/{ovl.name}" in names
    for odt in (REPO / "device_templates").glob("*.odt"):
        assert f"prtg_ai/data/device_templates/{odt.name}" in names
    for asset in (REPO / "installer" / "assets").rglob("*"):
        if asset.is_file():
            assert f"prtg_ai_installer/assets/{asset.relative_to(REPO / 'installer' / 'assets').as_posix()}" in names
    assert "prtg_ai/catalog/checkpoint_volume.csv" in names and "prtg_ai/catalog/_common.csv" in names


def test_installed_in_a_fresh_venv(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=600)
    script = env_dir / ("Scripts/prtg-ai.exe" if sys.platform == "win32" else "bin/prtg-ai")
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True, timeout=60).stdout
    assert "run" in out and "validate" in out and "doctor" in out
    check = ("import prtg_ai, prtg_ai_installer, importlib.util as u;"
             "from prtg_ai.data import data_dir;"
             "from prtg_ai_installer.data import assets_dir;"
             "print(data_dir('lookups'));"
             "print(u.find_spec('installer'), u.find_spec('sensors'), u.find_spec('lookups'));"
             "print(assets_dir())")
    lines = subprocess.run([str(py), "-c", check], capture_output=True, text=True, check=True, timeout=60,
                           cwd=tmp_path).stdout.splitlines()
    assert lines[0].endswith("prtg_ai/data/lookups") and "site-packages" in lines[0]
    assert lines[1] == "None None None"  # nothing of ours squats on a generic name
    assert lines[2].endswith("prtg_ai_installer/assets") and "site-packages" in lines[2]
    doc = subprocess.run([str(script), "run", "checkpoint_volume", "--path", str(tmp_path)], capture_output=True,
                         text=True, timeout=60, env={"PRTG_AI_STATE_DIR": str(tmp_path / "st")}).stdout
    assert '"channel":"Free Space"' in doc
