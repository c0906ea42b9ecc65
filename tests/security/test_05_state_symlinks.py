"""Attack 5: symlinks and special files planted in the state folder.

Real parts: a shared state folder (mode 1777, as /tmp is), a real unprivileged
user (``nobody`` via setpriv) planting symlinks to a root-owned 0600 file, to a
path to be created, to a FIFO and to /dev/zero; then ``prtg-ai run`` as root, as
PRTG's SSH sensor would start it. Skipped (with the reason) when not root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from prtg_ai.core.state import instance_file_stem
from security.sec_support import attack, leak_check
from support import cli_env, is_root, run_cli

pytestmark = pytest.mark.skipif(not is_root() or not shutil.which("setpriv"),
                                reason="needs root (to run as PRTG's root sensor) and setpriv (to be 'nobody')")
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


def as_nobody(*cmd: str) -> None:
    subprocess.run([*AS_NOBODY, *cmd], check=True, timeout=30)


@pytest.fixture
def reachable(tmp_path):
    """A folder 'nobody' can reach (pytest's own tmp folders are 0700 to other users)."""
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="prtgai-sec14-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_05_planted_symlinks_in_a_shared_state_folder(reachable):
    tmp_path = reachable
    shared = tmp_path / "shared-state"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    victim = tmp_path / "root-only.conf"
    victim.write_text("root's own file\n")
    os.chmod(victim, 0o600)
    created = tmp_path / "created-by-root"
    ckpt = tmp_path / "ckpt"
    (ckpt / "checkpoint-1").mkdir(parents=True)
    stem = instance_file_stem("checkpoint_volume", {"path": str(ckpt)})
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # The attacker, an unprivileged local user, plants symlinks where root will log, lock and keep state.
    as_nobody("ln", "-s", str(victim), str(shared / "prtg-ai.log"))
    as_nobody("ln", "-s", str(created), str(shared / f"{stem}.lock"))
    as_nobody("ln", "-s", str(fifo), str(shared / f"{stem}.json"))
    env = cli_env(shared, {"PRTG_AI_LOG_LEVEL": "INFO"})
    for _ in range(2):
        attack(3)
        started = time.monotonic()
        doc, proc = run_cli(["run", "checkpoint_volume", "--path", ckpt], env, timeout=30)
        leak_check(time.monotonic() - started < 10, "a planted FIFO blocked the scan")
        assert "error" not in doc["prtg"], doc  # the legitimate scan still reports
    leak_check(victim.read_text() == "root's own file\n", "root wrote through the planted log symlink")
    leak_check(not created.exists(), "root created a file through the planted lock symlink")
    private = shared / f"prtg-ai-{os.geteuid()}"
    assert private.is_dir() and (private.stat().st_mode & 0o777) == 0o700
    assert (private / f"{stem}.json").is_file()  # state is kept, privately
    assert json.loads((private / f"{stem}.json").read_text())["sensor"] == "checkpoint_volume"


def test_05_symlinks_to_devices_in_a_private_folder_are_set_aside(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    ckpt = tmp_path / "ckpt"
    (ckpt / "checkpoint-1").mkdir(parents=True)
    stem = instance_file_stem("checkpoint_volume", {"path": str(ckpt)})
    os.symlink("/dev/zero", state / f"{stem}.json")
    attack()
    started = time.monotonic()
    doc, _ = run_cli(["run", "checkpoint_volume", "--path", ckpt], cli_env(state), timeout=30)
    leak_check(time.monotonic() - started < 10, "/dev/zero as a state file was read")
    assert "error" not in doc["prtg"] and "set it aside" in doc["prtg"]["text"]
    assert (state / f"{stem}.corrupt").is_symlink()  # the link itself was moved, never followed
