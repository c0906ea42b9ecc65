"""XID events from the kernel log: the record NVRM writes for every GPU fault.

Reads: ``/dev/kmsg`` (Linux; readable by root, or by anyone when
``kernel.dmesg_restrict=0``), or a text file holding ``dmesg`` / ``journalctl -k``
output or kmsg records, given as ``--xid-log``. The boot id comes from
``<proc_root>/sys/kernel/random/boot_id``.

Polling NVML cannot see XIDs (an NVML event set only records events raised while it
is registered), so a scan reads the kernel's own record instead. The parser
(``parse``) and the cursor logic (``since``) are pure; ``read_log`` is the only I/O.

A kernel line looks like (stas00/ml-engineering, NVIDIA's Xid catalogue)::

    NVRM: Xid (PCI:0000:18:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from prtg_ai.records import record

KMSG = Path("/dev/kmsg")
MAX_TEXT_BYTES = 4 * 1024 * 1024   # a text log is read from its tail: the recent part matters
MAX_RECORDS = 200_000              # the kernel ring buffer holds far fewer
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
        if kmsg:
            order, kind = float(kmsg.group("seq")), "seq"
        elif dmesg:
            order, kind = float(dmesg.group("sec")), "ts"
        else:
            order, kind = float(lineno), "line"
        events.append(XidEvent(normalise_pci(match.group("pci")), int(match.group("code")),
                               match.group("detail").strip()[:200], order, kind))
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


def read_log(path: Path) -> LogRead:
    """Read the kernel log at ``path``: ``/dev/kmsg`` record by record, or a text file's tail."""
    source = str(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return LogRead(None, source, f"{source} does not exist")
    except OSError as exc:
        return LogRead(None, source, f"{source} cannot be read ({exc.strerror or exc})")
    try:
        if stat.S_ISCHR(mode):
            return LogRead(_read_kmsg(path), source)
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - MAX_TEXT_BYTES))
            return LogRead(fh.read().decode("utf-8", errors="replace"), source)
    except PermissionError:
        return LogRead(None, source, f"no permission to read {source} (kernel.dmesg_restrict=1 limits it to root "
                                     "or CAP_SYSLOG; README: XIDs)")
    except OSError as exc:
        return LogRead(None, source, f"{source} cannot be read ({exc.strerror or exc})")


def _read_kmsg(path: Path) -> str:
    """Read every record now in the kernel ring buffer without blocking."""
    nonblock = getattr(os, "O_NONBLOCK", None)
    if nonblock is None:  # Windows has no kmsg; read_log is only reached with a char device on POSIX
        raise OSError(errno.ENOTSUP, "kmsg needs POSIX non-blocking reads")
    fd = os.open(path, os.O_RDONLY | nonblock)
    records = []
    try:
        while len(records) < MAX_RECORDS:
            try:
                chunk = os.read(fd, 8192)  # kmsg returns exactly one record per read
            except BlockingIOError:
                break
            except BrokenPipeError:
                continue  # the record was overwritten while we read: take the next one
            if not chunk:
                break
            records.append(chunk.decode("utf-8", errors="replace").rstrip("\n"))
    finally:
        os.close(fd)
    return "\n".join(records)
