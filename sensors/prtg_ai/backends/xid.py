"""XID events from the kernel log: the record NVRM writes for every GPU fault.

Reads: ``/dev/kmsg`` (Linux; readable by root, or by anyone when
``kernel.dmesg_restrict=0``), or a text file holding ``dmesg`` / ``journalctl -k``
output or kmsg records, given as ``--xid-log``. The boot id comes from
``<proc_root>/sys/kernel/random/boot_id``.

Polling NVML cannot see XIDs (an NVML event set only records events raised while it
is registered), so a scan reads the kernel's own record instead. The parser
(``parse``) and the cursor logic (``since``) are pure; ``read_log`` is the only I/O
besides ``uptime`` (``<proc>/uptime``), which dates the kmsg/dmesg stamps so that XIDs
already in the log at the first scan can be held if they are recent.

A kernel line looks like (stas00/ml-engineering, NVIDIA's Xid catalogue)::

    NVRM: Xid (PCI:0000:18:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from prtg_ai.maths.records import record

KMSG = Path("/dev/kmsg")
MAX_TEXT_BYTES = 4 * 1024 * 1024   # a text log is read from its tail: the recent part matters
MAX_RECORDS = 200_000              # the kernel ring buffer holds far fewer
MAX_KMSG_BYTES = 16 * 1024 * 1024  # the largest ring buffer (log_buf_len max 32 MiB) is mostly shorter records
KMSG_DEVICE = (1, 11)
_XID = re.compile(r"NVRM: Xid \(PCI:(?P<pci>[0-9a-fA-F]+:[0-9a-fA-F]+:[0-9a-fA-F]+)(?:\.\d+)?\): "
                  r"(?P<code>\d+)\s*,?\s*(?P<detail>.*)$")
_KMSG = re.compile(r"^(?P<prio>\d+),(?P<seq>\d+),(?P<usec>\d+),[^;]*;")
_DMESG = re.compile(r"^\s*\[\s*(?P<sec>\d+\.\d+)\]")


@record(frozen=True)
class XidEvent:
    """One XID line.

    ``order`` sorts events within one boot: the kmsg sequence number, else the
    seconds-since-boot stamp of dmesg, else the line number.
    """

    pci: str
    code: int
    detail: str
    order: float
    order_kind: str   # "seq", "ts" or "line"
    mono: float | None = None  # seconds since boot (kmsg and dmesg stamps); None without a stamp


@record(frozen=True)
class LogRead:
    """What ``read_log`` got: the text, where from, or why nothing."""

    text: str | None
    source: str
    problem: str | None = None


def normalise_pci(bus_id: str) -> str:
    """``00000000:18:00.0`` (NVML) and ``0000:18:00`` (NVRM) both become ``0000:18:00``."""
    text = bus_id.strip().lower()
    if text.startswith("pci:"):
        text = text[4:]
    text = text.split(".")[0]
    parts = text.split(":")
    if len(parts) == 2:
        parts = ["0", *parts]
    try:
        domain, bus, dev = (int(p, 16) for p in parts[-3:])
    except ValueError:
        return text
    return f"{domain & 0xFFFF:04x}:{bus:02x}:{dev:02x}"


def parse(text: str) -> list[XidEvent]:
    """Every XID line in ``text`` (kmsg records, dmesg or journalctl output), in log order."""
    events = []
    for lineno, line in enumerate(text.splitlines()):
        match = _XID.search(line)
        if not match:
            continue
        kmsg, dmesg = _KMSG.match(line), _DMESG.match(line)
        mono = None
        if kmsg:
            order, kind = float(kmsg.group("seq")), "seq"
            mono = int(kmsg.group("usec")) / 1e6
        elif dmesg:
            order, kind = float(dmesg.group("sec")), "ts"
            mono = order
        else:
            order, kind = float(lineno), "line"
        events.append(XidEvent(normalise_pci(match.group("pci")), int(match.group("code")),
                               match.group("detail").strip()[:200], order, kind, mono))
    return events


def since(events: list[XidEvent], cursor: dict | None, boot_id: str | None) -> tuple[list[XidEvent] | None, dict]:
    """The events after ``cursor``, and the cursor to keep for the next scan.

    Returns ``None`` as the event list on the first scan (no cursor: a baseline, so
    an install does not alarm on faults from days ago). A new boot, or a cursor
    beyond the end of the log (ring buffer restarted), makes every event new.
    """
    last = events[-1] if events else None
    new_cursor = {"boot": boot_id, "order": last.order if last else None,
                  "kind": last.order_kind if last else None}
    if not cursor:
        return None, new_cursor
    if boot_id and cursor.get("boot") and cursor.get("boot") != boot_id:
        return list(events), new_cursor
    prev, kind = cursor.get("order"), cursor.get("kind")
    if prev is None:
        return list(events), new_cursor
    same_kind = [e for e in events if e.order_kind == kind]
    if kind is not None and same_kind and max(e.order for e in same_kind) < prev:
        return list(events), new_cursor  # the log went backwards: a restart or rotation
    if not same_kind and events:
        # The log format changed between scans: nothing to compare against, keep quiet.
        return [], new_cursor
    if last is None:
        new_cursor.update(order=prev, kind=kind)
    return [e for e in events if e.order_kind == kind and e.order > prev], new_cursor


def boot_id(proc_root: Path) -> str | None:
    """The kernel's boot id (changes on every boot), or None where there is none (Windows)."""
    try:
        return (Path(proc_root) / "sys" / "kernel" / "random" / "boot_id").read_text().strip() or None
    except OSError:
        return None


def uptime(proc_root: Path) -> float | None:
    """Seconds since boot from ``<proc>/uptime`` (None where there is none): dates kernel-log stamps."""
    try:
        with open(Path(proc_root) / "uptime", "rb") as fh:
            return float(fh.read(64).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_log(path: Path, roots=None) -> LogRead:
    """Read the kernel log at ``path``: ``/dev/kmsg`` record by record, or a text file's tail.

    Only a regular file or the kernel-log character device is read (a FIFO, a socket
    or ``/dev/zero`` would block a worker or fill its memory); both are capped in
    bytes. The file is opened non-blocking, and type-checked on the descriptor that
    was opened, so nothing can be swapped in between.

    Args:
        roots: for a path from an agent client, the ``--allow-path`` folders it must
            lie in (checked on the opened descriptor); None when unconfined.
    """
    from prtg_ai.backends.confined import OutsideAllowed, open_confined

    source = str(path)
    try:
        fd = open_confined(path, os.O_RDONLY | getattr(os, "O_BINARY", 0), roots)
    except OutsideAllowed:
        return LogRead(None, "--xid-log", "--xid-log is not under the agent's --allow-path folders")
    except FileNotFoundError:
        return LogRead(None, source, f"{source} does not exist")
    except PermissionError:
        return LogRead(None, source, f"no permission to read {source} (kernel.dmesg_restrict=1 limits it to root "
                                     "or CAP_SYSLOG; docs/agent.md: XIDs)")
    except OSError as exc:
        return LogRead(None, source, f"{source} cannot be read ({exc.strerror or exc})")
    try:
        mode = os.fstat(fd)
        if stat.S_ISCHR(mode.st_mode) and is_kmsg_device(mode.st_rdev):
            return LogRead(_read_kmsg(fd), source)
        if not stat.S_ISREG(mode.st_mode):
            return LogRead(None, source, f"{source} is neither a regular file nor the kernel log device")
        size = os.lseek(fd, 0, os.SEEK_END)
        os.lseek(fd, max(0, size - MAX_TEXT_BYTES), os.SEEK_SET)
        return LogRead(_read_capped(fd, MAX_TEXT_BYTES).decode("utf-8", errors="replace"), source)
    except PermissionError:
        return LogRead(None, source, f"no permission to read {source} (kernel.dmesg_restrict=1 limits it to root)")
    except OSError as exc:
        return LogRead(None, source, f"{source} cannot be read ({exc.strerror or exc})")
    finally:
        os.close(fd)


def is_kmsg_device(rdev: int) -> bool:
    """``/dev/kmsg`` is character device 1:11 on Linux (Documentation/admin-guide/devices.txt)."""
    return (os.major(rdev), os.minor(rdev)) == KMSG_DEVICE if hasattr(os, "major") else False


def _read_capped(fd: int, limit: int) -> bytes:
    parts, total = [], 0
    while total < limit:
        try:
            chunk = os.read(fd, min(1 << 20, limit - total))
        except BlockingIOError:
            break
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)


def _read_kmsg(fd: int) -> str:
    """Read every record now in the kernel ring buffer without blocking (``fd`` is non-blocking)."""
    if not getattr(os, "O_NONBLOCK", 0):  # Windows has no kmsg
        raise OSError(errno.ENOTSUP, "kmsg needs POSIX non-blocking reads")
    records, total = [], 0
    while len(records) < MAX_RECORDS and total < MAX_KMSG_BYTES:
        try:
            chunk = os.read(fd, 8192)  # kmsg returns exactly one record per read
        except BlockingIOError:
            break
        except BrokenPipeError:
            continue  # the record was overwritten while we read: take the next one
        if not chunk:
            break
        total += len(chunk)
        records.append(chunk.decode("utf-8", errors="replace").rstrip("\n"))
    return "\n".join(records)
