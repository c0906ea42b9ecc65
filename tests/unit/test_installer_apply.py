"""plan -> apply: idempotence, backups, uninstall, rollback at every step, refusal of escaping paths."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from prtg_ai_installer import apply, plan as plan_mod, wrappers
from prtg_ai_installer.manifest import MANIFEST_NAME, ManifestError

SHIPPED = plan_mod.Shipped(
    lookups=(("prtgai.a.ovl", b"<ValueLookup id='prtgai.a'/>\n"), ("prtgai.b.ovl", b"<ValueLookup id='prtgai.b'/>\n")),
    templates=(("prtgai-node.odt", b"<devicetemplate/>\n"),),
)
from support import tree_listing as listing

PY = "/opt/prtg-ai/bin/python"
STAMP = 1_790_000_000.0  # 2026-09-21T14:13:20Z




def make_plan(roles=("core", "probe"), sensors=("gpu", "checkpoint_volume"), shipped=SHIPPED, version="1.0"):
    return plan_mod.build_plan(roles, sensors, PY, version, shipped)


@pytest.fixture
def tree(tmp_path) -> Path:
    """A PRTG program folder: standard lookups, a user's custom lookup and EXEXML script."""
    root = tmp_path / "PRTG Network Monitor"
    (root / "lookups" / "custom").mkdir(parents=True)
    (root / "lookups" / "prtg.standardlookups.yesno.stateyesok.ovl").write_bytes(b"<std/>")
    (root / "lookups" / "custom" / "mine.ovl").write_bytes(b"<mine/>")
    (root / "Custom Sensors" / "EXEXML").mkdir(parents=True)
    (root / "Custom Sensors" / "EXEXML" / "someone_else.ps1").write_bytes(b"Write-Output 1")
    return root


def test_plan_lists_every_file_for_every_sensor():
    p = make_plan()
    assert [f.path for f in p.files] == [
        "lookups/custom/prtgai.a.ovl", "lookups/custom/prtgai.b.ovl", "devicetemplates/prtgai-node.odt",
        "Custom Sensors/EXEXML/prtgai_checkpoint_volume.cmd", "Custom Sensors/EXEXML/prtgai_gpu.cmd",
        "Custom Sensors/python/prtgai_checkpoint_volume.py", "Custom Sensors/python/prtgai_gpu.py",
        "Custom Sensors/scripts/prtgai_checkpoint_volume.py", "Custom Sensors/scripts/prtgai_gpu.py",
        # The core's "Execute Program" notification wrappers for prtg-ai act stop-idle-gpus.
        "Notifications/EXE/prtgai_stop_idle_gpus.bat", "Notifications/EXE/prtgai_stop_idle_gpus.ps1",
    ]
    assert [f.role for f in p.files] == ["core"] * 3 + ["probe"] * 6 + ["core"] * 2
    assert p.files[0].data == SHIPPED.lookups[0][1]
    assert make_plan(roles=("ssh-target",), sensors=("gpu",)).files[0].path == "scriptsxml/prtgai_gpu.sh"


def test_plan_covers_whatever_the_registry_holds():
    from prtg_ai.core.registry import sensor_ids

    p = plan_mod.build_plan(("ssh-target",), sensor_ids(), PY, "1", plan_mod.load_shipped())
    assert [f.path for f in p.files] == [f"scriptsxml/prtgai_{s}.sh" for s in sorted(sensor_ids())]
    assert all(f.executable for f in p.files)


def test_plan_refuses_a_sensor_id_that_would_escape():
    with pytest.raises(wrappers.WrapperError):
        make_plan(sensors=("../../evil",))


def test_install_twice_is_identical_and_keeps_the_manifest_bytes(tree):
    before = listing(tree)
    steps = apply.install(make_plan(), tree)
    assert {s.action for s in steps} == {"mkdir", "create", "manifest"}
    first = listing(tree)
    manifest = (tree / MANIFEST_NAME).read_bytes()
    steps = apply.install(make_plan(), tree)
    assert {s.action for s in steps} == {"unchanged"}
    assert listing(tree) == first
    assert (tree / MANIFEST_NAME).read_bytes() == manifest
    # Exactly our files were added, the user's are untouched.
    added = set(first) - set(before)
    assert added == {f.path for f in make_plan().files} | {MANIFEST_NAME, "devicetemplates",
                                                           "Custom Sensors/python", "Custom Sensors/scripts",
                                                           "Notifications", "Notifications/EXE"}
    assert all(first[k] == v for k, v in before.items())
    doc = json.loads(manifest)
    assert {f["path"]: f["sha256"] for f in doc["files"]} == {f.path: f.sha256 for f in make_plan().files}


def test_user_modified_lookup_is_backed_up_and_recoverable(tree):
    apply.install(make_plan(), tree, now=lambda: STAMP)
    target = tree / "lookups/custom/prtgai.a.ovl"
    target.write_bytes(b"<my tuned states/>")
    steps = apply.install(make_plan(), tree, now=lambda: STAMP)
    assert [s for s in steps if s.action == "backup"] == [
        apply.Step("backup", "lookups/custom/prtgai.a.ovl", "changed since prtg-ai wrote it")]
    assert target.read_bytes() == SHIPPED.lookups[0][1]
    backup = tree / "lookups/custom/prtgai.a.ovl.prtgai-backup-20260921T141320Z"
    assert backup.read_bytes() == b"<my tuned states/>"
    # Uninstall removes ours but never the user's backup.
    apply.uninstall(tree)
    assert not target.exists() and backup.read_bytes() == b"<my tuned states/>"


def test_foreign_file_at_our_path_is_restored_by_uninstall(tree):
    foreign = tree / "Custom Sensors/EXEXML/prtgai_gpu.cmd"
    foreign.write_bytes(b"@echo old hand-made wrapper\r\n")
    before = listing(tree)
    apply.install(make_plan(), tree, now=lambda: STAMP)
    assert foreign.read_bytes().startswith(b"@echo off")
    assert (tree / "Custom Sensors/EXEXML/prtgai_gpu.cmd.prtgai-backup-20260921T141320Z").read_bytes() == \
        b"@echo old hand-made wrapper\r\n"
    apply.install(make_plan(), tree, now=lambda: STAMP + 60)  # idempotent with a backup recorded too
    apply.uninstall(tree)
    assert listing(tree) == before


def test_uninstall_leaves_the_tree_byte_identical(tree):
    before = listing(tree)
    apply.install(make_plan(), tree)
    apply.install(make_plan(version="2.0"), tree)  # an upgrade in between
    apply.uninstall(tree)
    assert listing(tree) == before


def test_uninstall_by_role_keeps_the_other_role(tree):
    apply.install(make_plan(), tree)
    apply.uninstall(tree, roles=["probe"])
    assert (tree / "lookups/custom/prtgai.b.ovl").exists()
    assert not (tree / "Custom Sensors/python").exists()
    doc = json.loads((tree / MANIFEST_NAME).read_bytes())
    assert {f["role"] for f in doc["files"]} == {"core"}


def test_a_sensor_gone_from_the_registry_loses_its_wrappers(tree):
    apply.install(make_plan(sensors=("gpu", "checkpoint_volume")), tree)
    steps = apply.install(make_plan(sensors=("gpu",)), tree)
    assert {s.path for s in steps if s.action == "remove"} == {
        "Custom Sensors/EXEXML/prtgai_checkpoint_volume.cmd", "Custom Sensors/python/prtgai_checkpoint_volume.py",
        "Custom Sensors/scripts/prtgai_checkpoint_volume.py"}
    assert not (tree / "Custom Sensors/EXEXML/prtgai_checkpoint_volume.cmd").exists()


def test_preview_writes_nothing(tree):
    before = listing(tree)
    steps = apply.preview_install(make_plan(), tree)
    assert sum(s.action == "create" for s in steps) == len(make_plan().files)
    assert listing(tree) == before
    apply.install(make_plan(), tree)
    (tree / "lookups/custom/prtgai.b.ovl").write_bytes(b"edited")
    after = listing(tree)
    assert apply.preview_uninstall(tree)[-1] == apply.Step("manifest", MANIFEST_NAME)
    assert listing(tree) == after


class FaultAt(apply.FileSystem):
    """Raises at the n-th change (1-based); counts changes when n is None."""

    def __init__(self, n=None):
        self.n, self.calls = n, 0

    def _tick(self):
        self.calls += 1
        if self.calls == self.n:
            raise OSError(28, "No space left on device (injected)")

    def write(self, path, data, executable):
        self._tick()
        super().write(path, data, executable)

    def move(self, src, dst):
        self._tick()
        super().move(src, dst)

    def mkdir(self, path):
        self._tick()
        super().mkdir(path)


def _prepared(tree: Path) -> None:
    """Install, then change one of ours and drop a foreign file on a path of ours: the
    next install then mixes updates, backups, creates, removals and a manifest rewrite."""
    apply.install(make_plan(sensors=("gpu", "checkpoint_volume")), tree)
    (tree / "lookups/custom/prtgai.a.ovl").write_bytes(b"edited")
    (tree / "Custom Sensors/scripts/prtgai_gpu.py").unlink()


@pytest.mark.parametrize("scenario", ["fresh", "upgrade", "uninstall"])
def test_failure_at_every_step_rolls_everything_back(tree, tmp_path, scenario):
    pristine = tmp_path / "pristine"
    shutil.copytree(tree, pristine)
    if scenario != "fresh":
        _prepared(pristine)

    def attempt(fs):
        work = tmp_path / "work"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(pristine, work)
        if scenario == "uninstall":
            apply.uninstall(work, fs=fs)
        else:
            apply.install(make_plan(sensors=("gpu", "east_west"), version="2"), work, fs=fs)
        return work

    counter = FaultAt()
    attempt(counter)
    assert counter.calls >= 8
    expected = listing(pristine)
    for n in range(1, counter.calls + 1):
        with pytest.raises(apply.InstallError, match="every change of this run was undone"):
            attempt(FaultAt(n))
        work = tmp_path / "work"
        assert listing(work) == expected, f"step {n} of {counter.calls} left changes behind"


@pytest.mark.parametrize("rel", ["../outside.ovl", "/etc/passwd", "C:/Windows/x.cmd", "a/../../x", "a\\..\\x",
                                 "lookups//x", "./x", "c:x", ""])
def test_escaping_relative_paths_are_refused(rel):
    with pytest.raises(apply.UnsafePath):
        apply.check_relative(rel)


def test_tampered_manifest_cannot_make_uninstall_delete_outside(tree, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    apply.install(make_plan(), tree)
    doc = json.loads((tree / MANIFEST_NAME).read_bytes())
    doc["files"].append({"path": "../victim.txt", "sha256": hashlib.sha256(b"precious").hexdigest(),
                         "role": "core", "executable": False, "backups": []})
    (tree / MANIFEST_NAME).write_text(json.dumps(doc))
    before = listing(tree)
    with pytest.raises(apply.UnsafePath):
        apply.uninstall(tree)
    assert victim.read_bytes() == b"precious" and listing(tree) == before


def test_symlinked_folder_leading_out_is_refused(tree, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.rmtree(tree / "lookups" / "custom")
    (tree / "lookups" / "custom").symlink_to(outside, target_is_directory=True)
    before = listing(tree)
    with pytest.raises(apply.UnsafePath, match="leads out of"):
        apply.install(make_plan(), tree)
    assert list(outside.iterdir()) == [] and listing(tree) == before


def test_symlinked_file_is_never_written_through(tree, tmp_path):
    outside = tmp_path / "target.txt"
    outside.write_bytes(b"keep")
    (tree / "lookups/custom/prtgai.a.ovl").symlink_to(tree / "lookups/custom/mine.ovl")
    with pytest.raises(apply.UnsafePath, match="symlink"):
        apply.install(make_plan(), tree)
    assert (tree / "lookups/custom/mine.ovl").read_bytes() == b"<mine/>"


def test_damaged_or_foreign_manifest_stops_the_install(tree):
    (tree / MANIFEST_NAME).write_bytes(b"{not json")
    with pytest.raises(ManifestError, match="damaged"):
        apply.install(make_plan(), tree)
    (tree / MANIFEST_NAME).write_bytes(b'{"tool": "other"}')
    with pytest.raises(ManifestError, match="not written by prtg-ai"):
        apply.install(make_plan(), tree)
    assert sorted(p.name for p in (tree / "lookups/custom").iterdir()) == ["mine.ovl"]


def test_a_folder_where_a_file_goes_is_reported_before_any_change(tree):
    (tree / "lookups/custom/prtgai.b.ovl").mkdir()
    before = listing(tree)
    with pytest.raises(apply.InstallError, match="is a folder"):
        apply.install(make_plan(), tree)
    assert listing(tree) == before


@pytest.mark.skipif(os.name != "posix", reason="execute bits are POSIX")
def test_ssh_wrappers_are_executable(tmp_path):
    apply.install(make_plan(roles=("ssh-target",), sensors=("gpu",)), tmp_path)
    assert (tmp_path / "scriptsxml/prtgai_gpu.sh").stat().st_mode & 0o777 == 0o755
