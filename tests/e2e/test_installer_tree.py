"""``install`` / ``uninstall`` commands against a fake PRTG tree (Windows layout) and a fake SSH target."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from prtg_ai.core.registry import sensor_ids
from prtg_ai.data import data_dir
from prtg_ai_installer.cli import install, uninstall
from support import UNPRIVILEGED, is_root, tree_listing as listing

PY = os.path.abspath(sys.executable)




@pytest.fixture
def prtg(tmp_path) -> Path:
    """``C:\\Program Files (x86)\\PRTG Network Monitor`` as a fresh install has it (in part)."""
    root = tmp_path / "Program Files (x86)" / "PRTG Network Monitor"
    for folder in ("lookups/custom", "Custom Sensors/EXE", "Custom Sensors/EXEXML", "devicetemplates", "python"):
        (root / folder).mkdir(parents=True)
    (root / "lookups/prtg.standardlookups.yesno.stateyesok.ovl").write_bytes(b"<ValueLookup/>")
    (root / "Custom Sensors/EXEXML/Demo Batchfile - Returns static values in four channels.bat").write_bytes(b"@echo")
    (root / "devicetemplates/ping.odt").write_bytes(b"<devicetemplate/>")
    return root


def cli(command, *args):
    result = CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)
    return result


def expected_files(roles) -> set[str]:
    files = set()
    if "core" in roles:
        files |= {f"lookups/custom/{p.name}" for p in data_dir("lookups").glob("*.ovl")}
        files |= {f"devicetemplates/{p.name}" for p in data_dir("device_templates").glob("*.odt")}
        files |= {"Notifications/EXE/prtgai_stop_idle_gpus.bat", "Notifications/EXE/prtgai_stop_idle_gpus.ps1"}
    if "probe" in roles:
        for s in sensor_ids():
            files |= {f"Custom Sensors/EXEXML/prtgai_{s}.cmd", f"Custom Sensors/python/prtgai_{s}.py",
                      f"Custom Sensors/scripts/prtgai_{s}.py"}
    if "ssh-target" in roles:
        files |= {f"scriptsxml/prtgai_{s}.sh" for s in sensor_ids()}
    return files


def test_install_twice_into_a_windows_tree_then_uninstall(prtg):
    before = listing(prtg)
    first = cli(install, "--prtg-dir", prtg, "--role", "core", "--role", "probe", "--python", PY)
    assert first.exit_code == 0, first.output
    after = listing(prtg)
    added = {k for k in set(after) - set(before) if after[k] != "dir"}
    assert added == expected_files(("core", "probe")) | {"prtg-ai-manifest.json"}
    assert {k: after[k] for k in before} == before  # nothing of PRTG's or the user's changed
    for path in expected_files(("core",)):
        if path.startswith("Notifications/"):
            continue  # rendered, not copied: run in tests/e2e/test_stop_idle_gpus_moto.py
        source = data_dir("lookups" if path.startswith("lookups/") else "device_templates") / Path(path).name
        assert (prtg / path).read_bytes() == source.read_bytes()
    manifest = (prtg / "prtg-ai-manifest.json").read_bytes()

    second = cli(install, "--prtg-dir", prtg, "--role", "core,probe", "--python", PY)
    assert second.exit_code == 0, second.output
    assert "0 change(s), 0 backup(s)" in second.output
    assert listing(prtg) == after and (prtg / "prtg-ai-manifest.json").read_bytes() == manifest

    gone = cli(uninstall, "--prtg-dir", prtg)
    assert gone.exit_code == 0, gone.output
    assert listing(prtg) == before


def test_user_modified_lookup_is_backed_up(prtg):
    assert cli(install, "--prtg-dir", prtg, "--role", "core", "--python", PY).exit_code == 0
    name = sorted(p for p in expected_files(("core",)) if p.startswith("lookups/"))[0]
    (prtg / name).write_bytes(b"<ValueLookup my edit/>")
    result = cli(install, "--prtg-dir", prtg, "--role", "core", "--python", PY)
    assert result.exit_code == 0 and "1 backup(s)" in result.output
    [backup] = list((prtg / name).parent.glob(Path(name).name + ".prtgai-backup-*"))
    assert backup.read_bytes() == b"<ValueLookup my edit/>"
    assert (prtg / name).read_bytes() == (data_dir("lookups") / Path(name).name).read_bytes()
    doc = json.loads((prtg / "prtg-ai-manifest.json").read_text())
    [entry] = [f for f in doc["files"] if f["path"] == name]
    assert entry["backups"] == [{"path": backup.relative_to(prtg).as_posix(), "origin": "modified",
                                 "sha256": hashlib.sha256(b"<ValueLookup my edit/>").hexdigest()}]


def test_dry_run_writes_nothing(prtg):
    before = listing(prtg)
    result = cli(install, "--prtg-dir", prtg, "--role", "core,probe", "--python", PY, "--dry-run",
                 "--reload-lookups", "https://prtg.invalid", "--api-token", "tok3n")
    assert result.exit_code == 0, result.output
    assert "dry run: nothing was written" in result.output and "tok3n" not in result.output
    assert f"write                {prtg / 'Custom Sensors' / 'EXEXML' / 'prtgai_gpu.cmd'}" in result.output
    assert listing(prtg) == before
    assert cli(install, "--prtg-dir", prtg, "--role", "core", "--python", PY).exit_code == 0
    installed = listing(prtg)
    assert cli(uninstall, "--prtg-dir", prtg, "--dry-run").exit_code == 0
    assert listing(prtg) == installed


def test_ssh_target_install_and_uninstall(tmp_path):
    target = tmp_path / "var" / "prtg"
    target.mkdir(parents=True)
    (target / "scripts").mkdir()
    result = cli(install, "--prtg-dir", target, "--role", "ssh-target", "--python", PY)
    assert result.exit_code == 0, result.output
    files = {k for k, v in listing(target).items() if v != "dir"}
    assert files == expected_files(("ssh-target",)) | {"prtg-ai-manifest.json"}
    assert cli(install, "--prtg-dir", target, "--role", "ssh-target", "--python", PY).exit_code == 0
    assert cli(uninstall, "--prtg-dir", target).exit_code == 0
    assert listing(target) == {"scripts": "dir"}


def test_bad_arguments_are_usage_errors(prtg):
    r = cli(install, "--prtg-dir", prtg, "--role", "core,ssh-target")
    assert r.exit_code == 2 and "run it separately" in r.output
    r = cli(install, "--prtg-dir", prtg, "--role", "core", "--python", "relative/python")
    assert r.exit_code == 2 and "not an absolute path" in r.output
    r = cli(install, "--prtg-dir", prtg / "missing", "--role", "probe", "--python", PY)
    assert r.exit_code == 1 and "is not a folder" in r.output


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_unwritable_folder_midway_rolls_everything_back(prtg, tmp_path):
    """A real failure: the probe's python folder is read-only (for a service account without
    root's override). Lookups and EXEXML wrappers are written first, then undone."""
    if is_root() and not shutil.which("setpriv"):
        pytest.skip("needs setpriv to drop root's permission override")
    (prtg / "Custom Sensors/python").mkdir()
    os.chmod(prtg / "Custom Sensors/python", 0o555)
    os.chmod(prtg / "Custom Sensors/EXEXML", 0o777)
    before = listing(prtg)
    proc = subprocess.run([*(UNPRIVILEGED if is_root() else []), PY, "-m", "prtg_ai_installer", "install",
                           "--prtg-dir", str(prtg), "--role", "core,probe", "--python", PY],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "every change of this run was undone" in proc.stderr
    assert "Custom Sensors/python/prtgai_" in proc.stderr  # it got that far
    assert listing(prtg) == before
