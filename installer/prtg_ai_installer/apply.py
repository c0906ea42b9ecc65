"""Carry out a plan (or an uninstall) on a real tree: safe, idempotent, all or nothing.

Rules, in the order they protect the user:

1. Only the manifest says what is ours. A file at one of our paths that the
   manifest does not list (a *foreign* file), or one whose bytes changed since we
   wrote it (a *modified* file), is moved aside to ``NAME.prtgai-backup-<UTC time>``
   before we write; the suffix goes after the extension so PRTG, which lists
   ``*.ovl``, ``*.cmd``, ``*.py``..., never picks a backup up.
2. Every relative path is checked before anything is written: no absolute paths,
   drives, ``..`` or separators smuggled into a name, no symlink leading out of the
   install root, and never a write through a symlinked file.
3. Every change is journalled; an error anywhere undoes the run's changes in reverse
   order, so the tree is as it was. Replaced and removed files are parked under a
   trash name until the very end, so undo can put them back.
4. Uninstall removes exactly the manifest's files whose bytes are still ours,
   restores the foreign files it had moved aside, and removes the folders it
   created when they are empty: the tree is then byte-identical to before the
   first install. A file the user changed is left where it is, and reported.
5. A run killed half-way (power loss, ``kill -9``) is undone by the next run: each
   change is written to a journal (``JOURNAL_NAME``) *before* it is made, and the
   next install or uninstall first replays the journal backwards (``recover``),
   removing the files it created, putting parked and backed-up files back and
   deleting stray temp files. A file at one of our paths whose bytes are exactly
   this release's counts as ours, never as a foreign file to back up.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from prtg_ai.core.state import write_atomic
from prtg_ai_installer.manifest import (
    FOREIGN, MANIFEST_NAME, MODIFIED, Backup, Entry, Manifest, ManifestError, load, sha256_file,
)
from prtg_ai_installer.plan import Plan

BACKUP_TAG = ".prtgai-backup-"
TRASH_TAG = ".prtgai-trash-"
TEMP_TAG = ".prtgai-tmp-"
JOURNAL_NAME = MANIFEST_NAME + ".journal"


class InstallError(Exception):
    """The install or uninstall could not be done; the tree was left as it was."""


class UnsafePath(InstallError):
    """A path would leave the install root or write through a symlink."""


@dataclass(frozen=True)
class Step:
    """One thing a run does (or, for ``unchanged`` and ``keep``, deliberately does not)."""

    action: str
    path: str
    detail: str = ""


# Actions that change the tree (a dry run shows them; "unchanged"/"keep" do not change it).
CHANGES = {"mkdir", "create", "update", "backup", "remove", "restore", "rmdir", "manifest"}


class FileSystem:
    """Every change to the tree goes through these methods; tests inject faults here."""

    def write(self, path: Path, data: bytes, executable: bool, private: bool = False) -> None:
        """Write ``path`` (which must not exist) via a temp file and an atomic rename.

        ``private`` files (device templates holding the agent token) are created owner-only
        (0600) on POSIX from the first byte; on Windows they inherit the folder's ACL.
        """
        chmod = 0o755 if executable and os.name == "posix" else None  # Windows has no execute bit to set
        write_atomic(path, data, mode=0o600 if private else 0o666, temp=_temp_name(path), chmod=chmod)

    def move(self, src: Path, dst: Path) -> None:
        if dst.exists() or dst.is_symlink():
            raise FileExistsError(f"{dst} already exists")
        os.replace(src, dst)

    def mkdir(self, path: Path) -> None:
        path.mkdir()

    def rmdir(self, path: Path) -> None:
        path.rmdir()

    def unlink(self, path: Path) -> None:
        path.unlink()


def check_relative(rel: str) -> tuple[str, ...]:
    """The name parts of a manifest/plan path, or UnsafePath when it could escape.

    Args:
        rel: a POSIX-style path relative to the install root.
    """
    if not rel or any(c in rel for c in ("\\", "\0", ":")) or rel != rel.strip():
        raise UnsafePath(f"refusing path {rel!r}: not a plain relative path")
    if PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).anchor:
        raise UnsafePath(f"refusing absolute path {rel!r}")
    parts = tuple(rel.split("/"))
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafePath(f"refusing path {rel!r}: empty, '.' or '..' part")
    return parts


def resolve_target(root: Path, rel: str, is_file: bool = True) -> Path:
    """``root/rel`` after checking it stays inside ``root`` once symlinks are followed."""
    target = root.joinpath(*check_relative(rel))
    real_root = root.resolve()
    real = target.resolve()  # follows symlinks in whatever part of the path exists
    if not real.is_relative_to(real_root):
        raise UnsafePath(f"refusing {rel!r}: it leads out of {root} (to {real})")
    if is_file and target.is_symlink():
        raise UnsafePath(f"refusing {rel!r}: it is a symlink, and writing would follow it")
    return target


def preview_install(plan: Plan, root: Path, manifest: Manifest | None = None) -> list[Step]:
    """What ``install`` would do, computed without changing anything.

    Raises:
        UnsafePath: a planned or recorded path is unsafe.
        InstallError: a target is a folder.
    """
    manifest = manifest if manifest is not None else load(root)
    steps = [Step("mkdir", d) for d in _missing_dirs(root, plan)]
    for op in plan.files:
        target = resolve_target(root, op.path)
        entry = manifest.files.get(op.path)
        if not os.path.lexists(target):
            steps.append(Step("create", op.path))
            continue
        if target.is_dir():
            raise InstallError(f"{target} is a folder where prtg-ai installs a file; move it away")
        current = sha256_file(target)
        if entry is not None and current == entry.sha256:
            steps.append(Step("unchanged" if current == op.sha256 else "update", op.path))
        elif current == op.sha256:
            # Exactly this release's bytes (e.g. written by a run that was killed before it
            # saved the manifest): ours, never a foreign file to back up and "restore" later.
            steps.append(Step("unchanged", op.path, "the bytes equal this release's"))
        elif entry is not None:
            steps.append(Step("backup", op.path, "changed since prtg-ai wrote it"))
        else:
            steps.append(Step("backup", op.path, "not written by prtg-ai"))
    planned = {op.path for op in plan.files}
    stale = [e for e in manifest.files.values() if e.role in plan.roles and e.path not in planned]
    for entry in sorted(stale, key=lambda e: e.path):
        steps += _removal_steps(root, entry)
    new = _manifest_after_install(plan, manifest, steps)
    if any(s.action in CHANGES for s in steps) or _manifest_bytes(root) != new.to_bytes():
        steps.append(Step("manifest", MANIFEST_NAME))
    return steps


def preview_uninstall(root: Path, roles: Iterable[str] | None = None) -> list[Step]:
    """What ``uninstall`` would do, computed without changing anything."""
    manifest = load(root)
    chosen = _chosen(manifest, roles)
    steps: list[Step] = []
    for entry in sorted(chosen, key=lambda e: e.path):
        steps += _removal_steps(root, entry)
    for rel, role in sorted(manifest.dirs.items(), key=lambda kv: kv[0].count("/"), reverse=True):
        if roles is None or role in set(roles):
            resolve_target(root, rel, is_file=False)
            steps.append(Step("rmdir", rel, "if empty"))
    if manifest.files or manifest.dirs:
        steps.append(Step("manifest", MANIFEST_NAME))
    return steps


def install(plan: Plan, root: Path, fs: FileSystem | None = None,
            now: Callable[[], float] = time.time) -> list[Step]:
    """Install ``plan`` under ``root``; all or nothing.

    Returns:
        The steps taken (the same list ``preview_install`` gives).

    Raises:
        InstallError: nothing was changed (or every change was undone).
    """
    fs = fs or FileSystem()
    recover(root)
    manifest = load(root)
    steps = preview_install(plan, root, manifest)
    run = _Run(root, fs, now)
    new = copy.deepcopy(manifest)
    new.version, new.python = plan.version, plan.python
    ops = {op.path: op for op in plan.files}
    try:
        for step in steps:
            if step.action == "mkdir":
                run.mkdir(step.path)
                new.dirs.setdefault(step.path, _role_of_dir(plan, step.path))
            elif step.action in ("create", "update", "backup", "unchanged"):
                op = ops[step.path]
                entry = new.files.get(op.path) or Entry(op.path, op.sha256, op.role, op.executable)
                if step.action == "update":
                    run.park(op.path)
                elif step.action == "backup":
                    origin = MODIFIED if op.path in manifest.files else FOREIGN
                    entry.backups.append(run.backup(op.path, origin))
                if step.action != "unchanged":
                    run.write(op.path, op.data, op.executable, **({"private": True} if op.private else {}))
                entry.sha256, entry.role, entry.executable = op.sha256, op.role, op.executable
                new.files[op.path] = entry
            elif step.action in ("remove", "restore"):
                run.removal_step(step, manifest)
            if step.path in manifest.files and step.path not in ops and step.action != "restore":
                new.files.pop(step.path, None)  # stale entry of a role we install: no longer ours
        run.save_manifest(new)
    except BaseException as exc:
        run.rollback()
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise InstallError(f"install failed at {run.where} ({type(exc).__name__}: {exc}); "
                           f"every change of this run was undone") from exc
    run.commit()
    return steps


def uninstall(root: Path, roles: Iterable[str] | None = None, fs: FileSystem | None = None) -> list[Step]:
    """Remove what the manifest lists (for ``roles``, default all); all or nothing."""
    fs = fs or FileSystem()
    roles = tuple(roles) if roles is not None else None
    recover(root)
    manifest = load(root)
    steps = preview_uninstall(root, roles)
    run = _Run(root, fs, time.time)
    new = copy.deepcopy(manifest)
    for entry in _chosen(manifest, roles):
        new.files.pop(entry.path, None)
    try:
        for step in steps:
            if step.action in ("remove", "restore"):
                run.removal_step(step, manifest)
            elif step.action == "rmdir":
                if run.rmdir_if_empty(step.path):
                    new.dirs.pop(step.path, None)
                elif not new.files:
                    new.dirs.pop(step.path, None)  # the user put files in it: it is theirs now
        run.save_manifest(new)
    except BaseException as exc:
        run.rollback()
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise InstallError(f"uninstall failed at {run.where} ({type(exc).__name__}: {exc}); "
                           f"every change of this run was undone") from exc
    run.commit()
    return steps


class _Run:
    """The changes of one run, with the undo of each, in order."""

    def __init__(self, root: Path, fs: FileSystem, now: Callable[[], float]):
        self.root, self.fs, self.now = root, fs, now
        self.undo: list[Callable[[], None]] = []
        self.trash: list[Path] = []
        self.dropped_dirs: list[Path] = []  # removed at commit, deepest first
        self.where = "start"
        self.journal: list[dict] = []

    def note(self, **action) -> None:
        """Record ``action`` in the on-disk journal before it is carried out (crash recovery)."""
        self.journal.append(action)
        _write_journal(self.root, {"pid": os.getpid(), "committed": False, "actions": self.journal})

    def path(self, rel: str) -> Path:
        return resolve_target(self.root, rel)

    def mkdir(self, rel: str) -> None:
        self.where = rel
        target = resolve_target(self.root, rel, is_file=False)
        self.note(do="mkdir", path=rel)
        self.fs.mkdir(target)
        self.undo.append(lambda: target.rmdir())

    def write(self, rel: str, data: bytes, executable: bool, **extra) -> None:
        self.where = rel
        target = self.path(rel)
        import hashlib

        self.note(do="create", path=rel, sha256=hashlib.sha256(data).hexdigest(),
                  temp=_temp_name(target).name)
        self.fs.write(target, data, executable, **extra)
        self.undo.append(lambda: target.unlink())

    def park(self, rel: str) -> None:
        """Move our old copy to a trash name: deleted on commit, put back on rollback."""
        self.where = rel
        target = self.path(rel)
        parked = _free_name(target, f"{TRASH_TAG}{os.getpid()}")
        self.note(do="park", path=rel, to=parked.relative_to(self.root).as_posix())
        self.fs.move(target, parked)
        self.trash.append(parked)
        self.undo.append(lambda: os.replace(parked, target))

    def backup(self, rel: str, origin: str) -> Backup:
        self.where = rel
        target = self.path(rel)
        digest = sha256_file(target)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.now()))
        saved = _free_name(target, f"{BACKUP_TAG}{stamp}")
        self.note(do="park", path=rel, to=saved.relative_to(self.root).as_posix())
        self.fs.move(target, saved)
        self.undo.append(lambda: os.replace(saved, target))
        return Backup(saved.relative_to(self.root).as_posix(), digest, origin)

    def removal_step(self, step: Step, manifest: Manifest) -> None:
        if step.action == "remove":
            self.park(step.path)
            return
        # restore: step.path is the backup, step.detail the original path
        self.where = step.path
        saved, target = self.path(step.path), self.path(step.detail)
        self.note(do="restore", path=step.path, to=step.detail)
        self.fs.move(saved, target)
        self.undo.append(lambda: os.replace(target, saved))

    def rmdir_if_empty(self, rel: str) -> bool:
        """Remove the folder at commit when nothing but this run's parked files is in it.

        Parked files stay in their folder until commit (so rollback can rename them
        back), which is why the removal itself waits for commit too.
        """
        self.where = rel
        target = resolve_target(self.root, rel, is_file=False)
        if not target.is_dir():
            return False
        leftover = set(target.iterdir()) - set(self.trash) - set(self.dropped_dirs)
        if leftover:
            return False
        self.dropped_dirs.append(target)
        return True

    def save_manifest(self, manifest: Manifest) -> None:
        self.where = MANIFEST_NAME
        data = manifest.to_bytes()
        target = self.root / MANIFEST_NAME
        old = target.read_bytes() if target.exists() else None
        if old == data:
            return
        if old is not None:
            self.park(MANIFEST_NAME)
        if manifest.files or manifest.dirs:
            self.write(MANIFEST_NAME, data, False)

    def rollback(self) -> None:
        for undo in reversed(self.undo):
            try:
                undo()
            except OSError:
                pass  # keep undoing the rest: one stuck file must not strand all the others
        self.undo.clear()
        self.trash.clear()
        self.dropped_dirs.clear()
        _drop_journal(self.root)

    def commit(self) -> None:
        if self.journal:
            _write_journal(self.root, {"pid": os.getpid(), "committed": True, "actions": self.journal,
                                       "trash": [p.relative_to(self.root).as_posix() for p in self.trash],
                                       "dirs": [p.relative_to(self.root).as_posix() for p in self.dropped_dirs]})
        for parked in self.trash:
            _quiet_unlink(parked)
        for folder in self.dropped_dirs:
            try:
                self.fs.rmdir(folder)
            except OSError:
                pass  # something appeared in it meanwhile: it is the user's now
        self.trash.clear()
        self.dropped_dirs.clear()
        _drop_journal(self.root)


def _removal_steps(root: Path, entry: Entry) -> list[Step]:
    """Steps that take one manifest entry out of the tree."""
    target = resolve_target(root, entry.path)
    steps: list[Step] = []
    freed = True
    if not os.path.lexists(target):
        steps.append(Step("keep", entry.path, "already gone"))
    elif not target.is_dir() and sha256_file(target) == entry.sha256:
        steps.append(Step("remove", entry.path))
    else:
        freed = False
        steps.append(Step("keep", entry.path, "changed since prtg-ai wrote it: left in place for you"))
    for backup in entry.backups:
        saved = resolve_target(root, backup.path)
        if backup.sha256 == entry.sha256 and saved.is_file() and sha256_file(saved) == backup.sha256:
            # A "backup" of prtg-ai's own bytes (an older release's re-run after a crash): ours to remove.
            steps.append(Step("remove", backup.path, "a copy of prtg-ai's own file"))
            continue
        if backup.origin == FOREIGN and freed and saved.is_file() and sha256_file(saved) == backup.sha256:
            steps.append(Step("restore", backup.path, entry.path))
            freed = False  # one restore per path
        elif saved.exists():
            steps.append(Step("keep", backup.path, f"backup of the {backup.origin} {entry.path}: left for you"))
    return steps


def _chosen(manifest: Manifest, roles: Iterable[str] | None) -> list[Entry]:
    if roles is None:
        return list(manifest.files.values())
    roles = set(roles)
    return [e for e in manifest.files.values() if e.role in roles]


def _missing_dirs(root: Path, plan: Plan) -> list[str]:
    missing: list[str] = []
    for rel, _role in plan.folders:
        parts = check_relative(rel)
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            target = resolve_target(root, sub, is_file=False)
            if not target.exists() and sub not in missing:
                missing.append(sub)
    return missing


def _role_of_dir(plan: Plan, rel: str) -> str:
    for folder, role in plan.folders:
        if folder == rel or folder.startswith(rel + "/"):
            return role
    return plan.roles[0]


def _manifest_after_install(plan: Plan, manifest: Manifest, steps: list[Step]) -> Manifest:
    """The manifest an install would write, less the backup records (those come with a
    ``backup`` step, which rewrites the manifest anyway)."""
    new = copy.deepcopy(manifest)
    new.version, new.python = plan.version, plan.python
    for step in steps:
        if step.action == "mkdir":
            new.dirs.setdefault(step.path, _role_of_dir(plan, step.path))
        if step.path in manifest.files and step.action in ("remove", "keep"):
            new.files.pop(step.path, None)
    for op in plan.files:
        entry = new.files.get(op.path) or Entry(op.path, op.sha256, op.role, op.executable)
        entry.sha256, entry.role, entry.executable = op.sha256, op.role, op.executable
        new.files[op.path] = entry
    return new


def _manifest_bytes(root: Path) -> bytes | None:
    path = root / MANIFEST_NAME
    return path.read_bytes() if path.is_file() else None


def _free_name(target: Path, tag: str) -> Path:
    candidate = target.with_name(target.name + tag)
    n = 2
    while os.path.lexists(candidate):
        candidate = target.with_name(f"{target.name}{tag}-{n}")
        n += 1
    return candidate


def _temp_name(path: Path) -> Path:
    """Where ``path`` is written before its rename (``recover`` removes what a crash leaves)."""
    return path.with_name(f"{path.name}{TEMP_TAG}{os.getpid()}")


def _quiet_unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _write_journal(root: Path, doc: dict) -> None:
    path = root / JOURNAL_NAME
    write_atomic(path, json.dumps(doc).encode("utf-8"), mode=0o666, temp=_temp_name(path))


def _drop_journal(root: Path) -> None:
    _quiet_unlink(root / JOURNAL_NAME)


def recover(root: Path) -> list[str]:
    """Undo a run that was killed half-way, from its journal; return what was done (for the log).

    Each journalled action is checked against the tree before it is undone (it may
    not have happened): a created file is removed only while it still has the bytes
    that run wrote, a parked or backed-up file is moved back only where its place
    is free. A committed run only had its trash left to delete. Stray temp files of
    that run go too. Nothing is done without a journal.
    """
    path = root / JOURNAL_NAME
    try:
        doc = json.loads(path.read_bytes())
        actions = doc["actions"]
        pid = int(doc.get("pid", 0))
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError):
        _quiet_unlink(path)
        return ["dropped an unreadable install journal"]

    def target(rel) -> Path | None:
        try:
            return resolve_target(root, str(rel), is_file=False)
        except (InstallError, ValueError, OSError):
            return None  # a journal naming an unsafe path is ignored, never followed

    done: list[str] = []
    if doc.get("committed"):
        _finish_committed(doc, target, done)
    else:
        for action in reversed([a for a in actions if isinstance(a, dict)]):
            _undo(action, target, done)
    stray = root / f"{JOURNAL_NAME}{TEMP_TAG}{pid}"
    _quiet_unlink(stray)
    _quiet_unlink(path)
    return done


def _finish_committed(doc: dict, target, done: list[str]) -> None:
    """A committed run's leftovers: its trash files, then its emptied folders."""
    for rel in doc.get("trash", []):
        t = target(rel)
        if t is not None and os.path.isfile(t) and not os.path.islink(t):
            _quiet_unlink(t)
            done.append(f"deleted {rel}")
    for rel in doc.get("dirs", []):
        t = target(rel)
        if t is not None:
            try:
                t.rmdir()
            except OSError:
                pass


def _undo(action: dict, target, done: list[str]) -> None:
    """Undo one journalled action of an unfinished run, where the tree shows it happened."""
    kind, t = action.get("do"), target(action.get("path", ""))
    if t is None:
        return
    if kind == "create":
        temp = t.with_name(str(action.get("temp", "")))
        if TEMP_TAG in temp.name and os.path.lexists(temp) and not temp.is_symlink():
            _quiet_unlink(temp)
            done.append(f"deleted {temp.name}")
        if t.is_file() and not t.is_symlink() and sha256_file(t) == action.get("sha256"):
            _quiet_unlink(t)
            done.append(f"removed {action['path']}")
    elif kind in ("park", "restore"):
        moved = target(action.get("to", ""))
        if moved is not None and os.path.lexists(moved) and not os.path.lexists(t):
            os.replace(moved, t)
            done.append(f"{'put back' if kind == 'park' else 'moved back'} {action['path']}")
    elif kind == "mkdir":
        try:
            t.rmdir()
            done.append(f"removed folder {action['path']}")
        except OSError:
            pass  # not empty: something of the user's is in it


__all__ = ["FileSystem", "InstallError", "ManifestError", "Step", "UnsafePath", "check_relative",
           "install", "preview_install", "preview_uninstall", "recover", "resolve_target", "uninstall"]
