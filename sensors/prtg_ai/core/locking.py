"""A cross-process exclusive lock on a file, for Linux and Windows.

Hand-written rather than ``filelock``: every scan PRTG starts would import that library,
and the start-up rows of benchmarks/bench_startup.py budget each import (the tightest:
"start-up: gpu (console script, whole process)", <= 1.3 of the bare pynvml import). The
OS primitives are small: ``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows.
Both locks vanish when the process dies, so a crashed scan never leaves a stale lock.
"""

from __future__ import annotations

import errno
import os
import stat
import time

_SAFE = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def _regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


class LockTimeout(Exception):
    """The lock stayed held by another process for longer than the timeout."""


class FileLock:
    """``with FileLock(path, timeout):`` holds an exclusive lock on ``path``."""

    def __init__(self, path, timeout: float = 10.0, poll: float = 0.02):
        self.path = os.fspath(path)
        self.timeout = timeout
        self.poll = poll
        self._fd: int | None = None

    def acquire(self) -> None:
        from prtg_ai.core.deadline import doing, done

        doing(f"the state lock {os.path.basename(self.path)}")
        # No symlink followed (a planted .lock must not create or truncate a file elsewhere),
        # never blocking on a FIFO, and only a regular file is locked.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _SAFE, 0o600)
        if not _regular(fd):
            os.close(fd)
            raise OSError(errno.EINVAL, f"{self.path} is not a regular file")
        deadline = time.monotonic() + self.timeout
        try:
            while not _try_lock(fd):
                if time.monotonic() >= deadline:
                    raise LockTimeout(self.path)
                time.sleep(self.poll)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        done()

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            _unlock(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


if os.name == "nt":  # pragma: no cover - exercised on Windows probes
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
