"""Opening a client-supplied path so that what is opened is what was allowed.

The agent resolves a path parameter and checks it against ``--allow-path`` before
the sensor runs; between that check and the open, someone who can write inside an
allowed folder could swap a component for a symlink to ``/root``. So the sensor
opens the path first and then asks the kernel what it opened (``/proc/self/fd``
on Linux, the path resolved again elsewhere), and uses only that descriptor.
``O_NOFOLLOW`` refuses a symlink as the last component and ``O_NONBLOCK`` keeps a
FIFO from blocking the open.
"""

from __future__ import annotations

import os

O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_PROC_FD = "/proc/self/fd"


class OutsideAllowed(OSError):
    """What was opened is not under the allowed folders (the text never names the path)."""


def opened_path(fd: int, fallback: str) -> str:
    """The real path of an open descriptor (Linux: from /proc; elsewhere ``fallback`` resolved)."""
    try:
        return os.readlink(f"{_PROC_FD}/{fd}")
    except OSError:
        return os.path.realpath(fallback)


def under(real: str, roots) -> bool:
    """Whether the resolved path ``real`` is one of ``roots`` or below one (the agent's check, and this one's)."""
    for root in roots:
        try:
            if os.path.commonpath([real, root]) == root:
                return True
        except ValueError:  # another drive on Windows
            continue
    return False


def open_confined(path, flags: int, roots=None) -> int:
    """``os.open(path, flags | O_NONBLOCK | O_CLOEXEC)``; with ``roots``, also O_NOFOLLOW and a check after opening.

    Raises:
        OutsideAllowed: the descriptor's real path is not under ``roots`` (closed again).
        OSError: as ``os.open``.
    """
    text = os.fspath(path)
    extra = O_NONBLOCK | O_CLOEXEC | (O_NOFOLLOW if roots is not None else 0)
    fd = os.open(text, flags | extra)
    if roots is not None and not under(opened_path(fd, text), roots):
        os.close(fd)
        raise OutsideAllowed("outside the allowed folders")
    return fd
