"""Attack 13: the installer killed half-way (kill -9), then re-run and uninstalled.

Real parts: a PRTG tree on disk with the user's own files, ``prtg-ai install`` in
a subprocess that really receives SIGKILL after its N-th file write, a normal
re-run, and an uninstall that must give back the tree byte for byte.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from prtg_ai_installer.apply import BACKUP_TAG, JOURNAL_NAME, TEMP_TAG, TRASH_TAG
from security.sec_support import attack, leak_check
from support import tree_listing

PY = os.path.abspath(sys.executable)
# Runs the real install; the N-th write (temp file written, not yet renamed) ends in SIGKILL.
KILLER = r"""
import os, signal, sys
from prtg_ai_installer import apply
n = int(sys.argv[1]); count = [0]
real_write = apply.FileSystem.write
def write(self, path, data, executable):
    count[0] += 1
    if count[0] == n:
        temp = path.with_name(f"{path.name}{apply.TEMP_TAG}{os.getpid()}")
        temp.write_bytes(data[: len(data) // 2])  # half a temp file, as a kill mid-write leaves it
        os.kill(os.getpid(), signal.SIGKILL)
    return real_write(self, path, data, executable)
apply.FileSystem.write = write
from prtg_ai.cli import main
sys.exit(main(["install", "--prtg-dir", sys.argv[2], "--role", "core,probe", "--python", sys.argv[3]]))
"""


@pytest.fixture
def prtg(tmp_path) -> Path:
    root = tmp_path / "PRTG Network Monitor"
    for folder in ("lookups/custom", "Custom Sensors/EXEXML", "devicetemplates"):
        (root / folder).mkdir(parents=True)
    (root / "lookups/custom/users-own.ovl").write_bytes(b"<ValueLookup id='mine'/>")
    (root / "devicetemplates/ping.odt").write_bytes(b"<devicetemplate/>")
    return root


def install(root: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "prtg_ai.cli", *extra, "--prtg-dir", str(root)], capture_output=True,
                          text=True, timeout=120)


def strays(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if any(t in p.name for t in (BACKUP_TAG, TEMP_TAG, TRASH_TAG))]


@pytest.mark.parametrize("kill_at", [pytest.param(1, marks=pytest.mark.slow), 6,
                                     pytest.param(15, marks=pytest.mark.slow)])
def test_13_killed_install_is_undone_and_uninstall_restores_the_tree(prtg, kill_at):
    before = tree_listing(prtg)
    attack()
    killed = subprocess.run([PY, "-c", KILLER, str(kill_at), str(prtg), PY], capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (prtg / JOURNAL_NAME).exists()  # the journal was written before the changes
    rerun = install(prtg, "install", "--role", "core,probe", "--python", PY)
    assert rerun.returncode == 0, rerun.stderr
    leak_check(strays(prtg) == [], f"left behind after the re-run: {strays(prtg)}")
    leak_check(" 0 backup(s)" in rerun.stdout, "the re-run backed up the pack's own files as foreign")
    gone = install(prtg, "uninstall")
    assert gone.returncode == 0, gone.stderr
    after = tree_listing(prtg)
    leak_check(after == before, f"pack files stayed after uninstall: {sorted(set(after) - set(before))}")


def test_13_identical_files_without_a_journal_are_recognised(prtg):
    """A tree an older release left after a crash: our files, no manifest, no journal."""
    before = tree_listing(prtg)
    attack()
    killed = subprocess.run([PY, "-c", KILLER, "12", str(prtg), PY], capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    (prtg / JOURNAL_NAME).unlink()
    for temp in [p for p in prtg.rglob("*") if TEMP_TAG in p.name]:
        temp.unlink()
    rerun = install(prtg, "install", "--role", "core,probe", "--python", PY)
    assert rerun.returncode == 0, rerun.stderr
    leak_check(not any(BACKUP_TAG in p.name for p in prtg.rglob("*")), "identical files were backed up")
    assert install(prtg, "uninstall").returncode == 0
    files = {k: v for k, v in tree_listing(prtg).items() if v != "dir"}
    # Files come back exactly; empty folders that journal-less run made are not known to be ours and stay.
    leak_check(files == {k: v for k, v in before.items() if v != "dir"}, "pack files stayed after uninstall")
