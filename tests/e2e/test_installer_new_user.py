"""Tried as a new user would: build the wheel, a fresh venv, pip install, dry run, install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from prtg_ai.core.registry import sensor_ids
from prtg_ai.prtg.validate import validate

from support import tree_listing as listing

REPO = Path(__file__).resolve().parents[2]




@pytest.mark.slow
def test_new_user_installs_the_wheel_and_the_pack(tmp_path):
    transcript: list[str] = []

    def sh(*args, env=None, cwd=None) -> str:
        transcript.append("$ " + " ".join(str(a) for a in args))
        proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, env=env, cwd=cwd)
        transcript.append((proc.stdout + proc.stderr).rstrip())
        assert proc.returncode == 0, "\n".join(transcript)
        return proc.stdout

    sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist", REPO)
    [wheel] = (tmp_path / "dist").glob("prtg_ai-*.whl")
    env_dir = tmp_path / "new venv"
    transcript.append(f"$ {sys.executable} -m venv '{env_dir}'")
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    sh(py, "-m", "pip", "install", "-q", wheel)

    prtg = tmp_path / "Program Files (x86)" / "PRTG Network Monitor"
    (prtg / "lookups" / "custom").mkdir(parents=True)
    before = listing(prtg)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PRTG_AI_", "PYTHON"))}
    # The console script a new user types: prtg-ai install.
    prtg_ai = env_dir / ("Scripts/prtg-ai.exe" if sys.platform == "win32" else "bin/prtg-ai")
    args = ["install", "--prtg-dir", prtg, "--role", "core,probe"]
    dry = sh(prtg_ai, *args, "--dry-run", env=clean, cwd=tmp_path)
    assert "dry run: nothing was written" in dry and listing(prtg) == before
    sh(prtg_ai, *args, env=clean, cwd=tmp_path)

    doc = json.loads((prtg / "prtg-ai-manifest.json").read_text())
    installed = {f["path"] for f in doc["files"]}
    def shipped(name: str) -> list[str]:  # what the installed wheel carries, asked of the wheel itself
        return sh(py, "-c", "from prtg_ai.data import data_dir; import os; "
                            f"print('\\n'.join(sorted(os.listdir(data_dir('{name}')))))", cwd=tmp_path).split()

    assert installed == ({f"lookups/custom/{n}" for n in shipped("lookups") if n.endswith(".ovl")}
                         | {f"devicetemplates/{n}" for n in shipped("device_templates") if n.endswith(".odt")}
                         | {f"Notifications/EXE/prtgai_stop_idle_gpus.{ext}" for ext in ("bat", "ps1")}
                         | {f"Custom Sensors/{folder}/prtgai_{s}.{ext}" for s in sensor_ids()
                            for folder, ext in (("EXEXML", "cmd"), ("python", "py"), ("scripts", "py"))})
    cmd = (prtg / "Custom Sensors/EXEXML/prtgai_checkpoint_volume.cmd").read_bytes().decode()
    assert f'"{py}" -m prtg_ai.cli run checkpoint_volume %*\r\n' in cmd  # the venv's python, un-resolved
    # The installed Python Script Advanced wrapper works against the installed pack.
    wrapper = prtg / "Custom Sensors/python/prtgai_checkpoint_volume.py"
    out = sh(sys.executable, wrapper, json.dumps({"params": f"--path '{tmp_path}'"}),
             env={**clean, "PRTG_AI_STATE_DIR": str(tmp_path / "state")})
    assert validate(out) == [] and '"channel":"Free Space"' in out
    sh(prtg_ai, "uninstall", "--prtg-dir", prtg, env=clean, cwd=tmp_path)
    assert listing(prtg) == before
    print("\n".join(transcript))
