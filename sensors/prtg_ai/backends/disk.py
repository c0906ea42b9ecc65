"""Filesystem reads for the checkpoint sensor: capacity, inodes and top-level entries.

Reads ``statvfs`` (Linux) or the Win32 free-space API through ``shutil`` (Windows,
no inode figures there) and lists only the top-level entries of a folder, within
a time budget, so a multi-terabyte checkpoint tree is never walked.

A folder named by an agent client is opened once (``open_folder``: no symlink as
the last component, confined to ``--allow-path`` on the opened descriptor) and
every later read goes through that descriptor (``fstatvfs``, ``scandir(fd)``,
``openat``): nothing a local user swaps in afterwards is followed.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from prtg_ai.core.deadline import doing, done
from prtg_ai.core.errors import SensorError


class FsUsage:
    """Capacity of the filesystem holding a folder, in bytes (and inodes).

    ``avail`` is what a normal user can write (f_bavail: what a training job can
    use); ``free`` includes root-reserved blocks (f_bfree).
    """

    __slots__ = ("total", "avail", "free", "files", "files_free", "readonly")

    def __init__(self, total: int, avail: int, free: int, files: int | None, files_free: int | None,
                 readonly: bool):
        self.total, self.avail, self.free = total, avail, free
        self.files, self.files_free, self.readonly = files, files_free, readonly

    @property
    def used(self) -> int:
        return self.total - self.free

    @property
    def used_percent(self) -> float:
        # df's (and psutil's) definition: used / (used + avail), so reserved blocks count as full.
        denominator = self.used + self.avail
        return 100.0 * self.used / denominator if denominator else 0.0

    @property
    def files_free_percent(self) -> float | None:
        if not self.files or self.files_free is None:
            return None
        return 100.0 * self.files_free / self.files


def fs_usage(path: Path) -> FsUsage:
    """Return capacity figures for the filesystem that holds ``path``."""
    try:
        if hasattr(os, "statvfs"):
            st = os.statvfs(path)
            frsize = st.f_frsize or st.f_bsize
            return FsUsage(
                total=st.f_blocks * frsize,
                avail=st.f_bavail * frsize,
                free=st.f_bfree * frsize,
                # Filesystems without inode accounting (some FUSE / network mounts) report 0.
                files=st.f_files or None,
                files_free=st.f_favail if st.f_files else None,
                readonly=bool(st.f_flag & os.ST_RDONLY),
            )
        import shutil  # Windows only: keeps shutil off the Linux start-up path

        usage = shutil.disk_usage(path)  # Windows: GetDiskFreeSpaceExW; free == caller's avail
        return FsUsage(total=usage.total, avail=usage.free, free=usage.free, files=None,
                       files_free=None, readonly=False)
    except OSError as exc:
        raise _as_sensor_error(path, exc) from None


class Entry:
    """A top-level entry: name, modification time, folder or not, a file's size (0 for folders)."""

    __slots__ = ("name", "mtime", "is_dir", "size")

    def __init__(self, name: str, mtime: float, is_dir: bool, size: int):
        self.name, self.mtime, self.is_dir, self.size = name, mtime, is_dir, size


class FolderScan:
    """The entries of a folder that matched, and whether the scan saw every entry."""

    __slots__ = ("entries", "seen", "complete", "elapsed")

    def __init__(self):
        self.entries: list[Entry] = []
        self.seen = 0
        self.complete = True
        self.elapsed = 0.0


def open_folder(path: Path, roots) -> int:
    """Open a client's folder for reading through a descriptor; errors as ``SensorError``.

    The text of a refusal is the same whether or not the path exists.
    """
    from prtg_ai.backends.confined import O_DIRECTORY, OutsideAllowed, open_confined

    try:
        return open_confined(path, os.O_RDONLY | O_DIRECTORY, roots)
    except (OutsideAllowed, NotADirectoryError, OSError) as exc:
        if isinstance(exc, (OutsideAllowed, NotADirectoryError)) or getattr(exc, "errno", None) == 40:  # ELOOP
            raise SensorError("The folder is not under the agent's --allow-path folders (or is a symlink).",
                              "Ask the node's administrator which folders the agent serves.") from None
        raise _as_sensor_error(path, exc) from None


@contextmanager
def opened_folder(path: Path, roots) -> Iterator[Path | int]:
    """The folder to read: a descriptor checked after opening when ``roots`` confine it, else the path.

    An agent client's folder (``roots`` from ``--allow-path``) is read through one
    descriptor, so a symlink swapped in after the check cannot lead the scan elsewhere.
    Where the platform cannot list or stat by descriptor (Windows), the path is used.
    """
    if roots is None or not hasattr(os, "fstatvfs") or os.scandir not in os.supports_fd:
        check_folder(path)
        yield path
        return
    fd = open_folder(path, roots)
    try:
        yield fd
    finally:
        os.close(fd)


def tree_size_at(dir_fd: int, name: str, budget_s: float, max_entries: int = 200_000,
                 monotonic: Callable[[], float] = time.monotonic) -> tuple[int, bool]:
    """``tree_size`` of the entry ``name`` in the open folder ``dir_fd``, walking by descriptors only."""
    from prtg_ai.backends.confined import O_CLOEXEC, O_DIRECTORY, O_NOFOLLOW

    flags = os.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
    try:
        stack = [os.open(name, flags, dir_fd=dir_fd)]
    except OSError:
        return 0, True
    try:
        return _sum_tree(stack, lambda fd, entry: os.open(entry.name, flags, dir_fd=fd), os.close,
                         budget_s, max_entries, monotonic)
    finally:
        for fd in stack:  # what an early stop left open
            os.close(fd)


def _sum_tree(stack: list, child: Callable, release: Callable, budget_s: float, max_entries: int,
              monotonic: Callable[[], float]) -> tuple[int, bool]:
    """Sum file sizes below the folders on ``stack`` (paths, or descriptors ``release`` closes).

    ``child(folder, entry)`` gives the sub-folder to push. Bounded in time and entries;
    returns ``(bytes, complete)``. Symlinks are never followed.
    """
    started = monotonic()
    total, seen = 0, 0
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    seen += 1
                    if seen > max_entries or (seen % 256 == 0 and monotonic() - started > budget_s):
                        return total, False
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(child(folder, entry))
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            pass  # a shard folder pruned mid-walk
        finally:
            release(folder)
    return total, True


def check_folder(path: Path) -> None:
    """Raise a SensorError with a hint unless ``path`` is a readable folder."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _as_sensor_error(path, exc) from None
    if not stat.S_ISDIR(st.st_mode):
        raise SensorError(f"{path} is a file, not a folder.",
                          "Set --path to the folder the training job writes its checkpoints into.")
    try:
        with os.scandir(path):
            pass
    except OSError as exc:
        raise _as_sensor_error(path, exc) from None


def scan_top_level(path: Path, patterns: Sequence[str], budget_s: float,
                   monotonic: Callable[[], float] = time.monotonic) -> FolderScan:
    """List the top-level entries of ``path`` whose names match any of ``patterns``.

    Hidden entries (a leading dot: temporary saves, ``.ipynb_checkpoints``) are skipped
    unless a pattern itself starts with a dot. The scan stops when ``budget_s`` is
    spent and says so (``complete`` is False).
    """
    started = monotonic()
    scan = FolderScan()
    try:
        doing("listing the folder given as --path")
        iterator = os.scandir(path)
    except OSError as exc:
        raise _as_sensor_error(path, exc) from None
    with iterator:
        for entry in iterator:
            scan.seen += 1
            if scan.seen % 256 == 0 and monotonic() - started > budget_s:
                scan.complete = False
                break
            name = entry.name
            if not _matches(name, patterns):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # removed between listing and stat: retention pruned it
            is_dir = stat.S_ISDIR(st.st_mode)
            scan.entries.append(Entry(name, st.st_mtime, is_dir, 0 if is_dir else st.st_size))
    scan.elapsed = monotonic() - started
    done()
    return scan


def _matches(name: str, patterns: Sequence[str]) -> bool:
    for pattern in patterns:
        if name.startswith(".") and not pattern.startswith("."):
            continue
        if fnmatch.fnmatch(name, pattern):
            return True
    return False


def tree_size(path: Path, budget_s: float, max_entries: int = 200_000,
              monotonic: Callable[[], float] = time.monotonic) -> tuple[int, bool]:
    """Sum the file sizes under ``path`` (one checkpoint), bounded in time and entries.

    Returns ``(bytes, complete)``. By paths (Windows has no ``dir_fd``); an agent
    client's folder goes through ``tree_size_at`` instead.
    """
    return _sum_tree([path], lambda _folder, entry: Path(entry.path), lambda _folder: None,
                     budget_s, max_entries, monotonic)


def _as_sensor_error(path: Path, exc: OSError) -> SensorError:
    if isinstance(exc, FileNotFoundError):
        return SensorError(f"Folder {path} does not exist on this host.",
                           "Check --path (and that the volume is mounted where the sensor runs).")
    if isinstance(exc, NotADirectoryError):
        return SensorError(f"{path} is not a folder.", "Set --path to the checkpoint folder.")
    if isinstance(exc, PermissionError):
        who = _who()
        return SensorError(f"Permission denied reading {path}.",
                           f"Grant the account the sensor runs as{who} read and list access to the folder.")
    return SensorError(f"Cannot read {path}: {exc.strerror or exc}.",
                       "Check that the volume is mounted and healthy.")


def _who() -> str:
    try:
        import getpass

        return f" ({getpass.getuser()})"
    except Exception:  # no user database entry (containers): leave the name out
        return ""
