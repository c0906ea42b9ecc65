"""Listening TCP sockets of this host and the processes behind them, from procfs.

Reads (under the context's proc root, ``/proc`` by default):

* ``net/tcp`` and ``net/tcp6``: every socket of the network namespace the reader
  runs in (``/proc/net`` follows the reading process), keeping state ``0A`` (LISTEN);
* ``<pid>/fd/*`` link targets (``socket:[inode]``), to find which process owns a
  listener, only for the listeners asked about;
* ``<pid>/comm``, ``<pid>/cmdline``, ``<pid>/status`` (``Uid:``), ``<pid>/cgroup``
  and the ``<pid>/exe`` link, to name a process, its user and its container or pod.

Needs: nothing to list the sockets (``/proc/net/tcp*`` is world-readable). Naming the
process of another user's socket needs root (its ``fd`` folder is private): without
it the process is ``None`` and the sensor says so.

This is what ``psutil.net_connections`` reads on Linux; reading it here keeps the
proc root injectable (fixture trees in tests, ``PRTG_AI_PROC_ROOT`` in containers
that mount the host's ``/proc`` elsewhere) and keeps psutil off the scan's path.
"""

from __future__ import annotations

import os
import sys

from prtg_ai.maths.records import record

LISTEN = "0A"
MAX_SOCKET_LINES = 200_000      # a /proc/net/tcp with more lines is read only this far
MAX_FD_ENTRIES = 500_000        # fd links looked at per scan while naming listeners
MAX_CMDLINE = 4096
MAX_TABLE_BYTES = 64 * 1024 * 1024  # /proc/net/tcp of a very busy host: ~150 bytes a socket
_CGROUP_MAX = 16 * 1024


@record(frozen=True)
class Listener:
    """One listening TCP socket."""

    address: str        # as bound: 0.0.0.0, ::, 10.0.0.5, ...
    port: int
    family: int         # 4 or 6
    uid: int
    inode: int

    @property
    def loopback(self) -> bool:
        return is_loopback(self.address)

    @property
    def probe_address(self) -> str:
        """Where the node itself reaches this listener: loopback for a wildcard bind."""
        if self.address == "0.0.0.0":
            return "127.0.0.1"
        if self.address == "::":
            return "::1"
        if self.address.startswith("::ffff:") and "." in self.address:
            return self.address[7:]
        return self.address

    @property
    def shown(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


@record(frozen=True)
class ProcessInfo:
    """What procfs says about one process (fields ``None`` where it would not say)."""

    pid: int
    comm: str | None
    exe_name: str | None
    argv: tuple[str, ...]
    uid: int | None
    user: str | None
    container: str | None
    pod: str | None

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the process goes by: comm, the executable's file name, argv[0]'s."""
        out = []
        for n in (self.comm, self.exe_name, _basename(self.argv[0]) if self.argv else None):
            if n and n not in out:
                out.append(n)
        return tuple(out)

    @property
    def label(self) -> str:
        return self.exe_name or self.comm or (_basename(self.argv[0]) if self.argv else "") or "?"


def is_loopback(address: str) -> bool:
    if address.startswith("127.") or address == "::1":
        return True
    return address.startswith("::ffff:127.")


def _decode_address(hex_addr: str, family: int) -> str:
    raw = bytes.fromhex(hex_addr)
    # The kernel prints each 32-bit word in host byte order.
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    if family == 6:
        return format_ipv6(raw)
    return ".".join(str(b) for b in raw)


def format_ipv6(raw: bytes) -> str:
    """RFC 5952 text of 16 address bytes (what ``inet_ntop`` prints), without importing socket."""
    if len(raw) != 16:
        raise ValueError("an IPv6 address has 16 bytes")
    words = [raw[i] << 8 | raw[i + 1] for i in range(0, 16, 2)]
    best_start, best_len, start = -1, 0, None
    for i, w in enumerate(words + [1]):
        if w == 0 and i < 8:
            if start is None:
                start = i
        elif start is not None:
            if i - start > best_len and i - start >= 2:
                best_start, best_len = start, i - start
            start = None
    hexes = [f"{w:x}" for w in words]
    if best_start == 0 and (best_len == 6 or (best_len == 5 and words[5] == 0xFFFF)):
        # IPv4-mapped and IPv4-compatible addresses end in dotted quad, as glibc prints them.
        return "::" + ("ffff:" if best_len == 5 else "") + ".".join(str(b) for b in raw[12:])
    if best_start < 0:
        return ":".join(hexes)
    return ":".join(hexes[:best_start]) + "::" + ":".join(hexes[best_start + best_len:])


def parse_net_tcp(text: str, family: int) -> list[Listener]:
    """Listening sockets from the text of ``/proc/net/tcp`` (4) or ``/proc/net/tcp6`` (6)."""
    out = []
    for n, line in enumerate(text.splitlines()[1:]):
        if n >= MAX_SOCKET_LINES:
            break
        parts = line.split()
        if len(parts) < 10 or parts[3] != LISTEN:
            continue
        try:
            addr_hex, port_hex = parts[1].split(":")
            address = _decode_address(addr_hex, family)
            out.append(Listener(address, int(port_hex, 16), family, int(parts[7]), int(parts[9])))
        except (ValueError, OSError):
            continue  # a line we cannot read is no listener we can report
    return out


def _read_table(path: str, limit: int = MAX_TABLE_BYTES) -> str:
    # In chunks: read(limit) on a text file would allocate the whole limit up front.
    chunks, size = [], 0
    with open(path, "rb") as fh:
        while size < limit:
            chunk = fh.read(256 * 1024)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    return b"".join(chunks).decode("ascii", "replace")


def listening(proc_root: str) -> tuple[list[Listener], list[str]]:
    """Every listening TCP socket; and the tables that could not be read (with why)."""
    found: list[Listener] = []
    problems = []
    for name, family in (("tcp", 4), ("tcp6", 6)):
        path = os.path.join(proc_root, "net", name)
        try:
            text = _read_table(path)
        except FileNotFoundError:
            if family == 4:
                problems.append(f"{path} does not exist")
            continue  # no IPv6 in this kernel or namespace
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror or exc}")
            continue
        found.extend(parse_net_tcp(text, family))
    return found, problems


def owners(proc_root: str, inodes: set[int], deadline: float | None = None, monotonic=None) -> dict[int, int]:
    """inode -> pid for the listening sockets ``inodes``, from the ``fd`` links in procfs."""
    wanted = {f"socket:[{i}]": i for i in inodes}
    found: dict[int, int] = {}
    if not wanted:
        return found
    seen = 0
    try:
        pids = [e for e in os.listdir(proc_root) if e.isdigit()]
    except OSError:
        return found
    for pid in pids:
        fd_dir = os.path.join(proc_root, pid, "fd")
        try:
            entries = os.listdir(fd_dir)
        except OSError:
            continue  # another user's process without root, or gone
        for fd in entries:
            seen += 1
            if seen > MAX_FD_ENTRIES:
                return found
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            inode = wanted.get(target)
            if inode is not None and inode not in found:
                found[inode] = int(pid)
        if len(found) == len(wanted):
            break
        if deadline is not None and monotonic is not None and monotonic() > deadline:
            break
    return found


def _read(path: str, limit: int = 4096) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def _basename(path: str) -> str:
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def describe(proc_root: str, pid: int) -> ProcessInfo:
    """Name, user and container of ``pid`` (fields ``None`` where procfs would not say)."""
    base = os.path.join(proc_root, str(int(pid)))
    comm = _read(os.path.join(base, "comm"), 256)
    comm = comm.strip() if comm else None
    raw_cmd = _read(os.path.join(base, "cmdline"), MAX_CMDLINE)
    argv = tuple(a for a in raw_cmd.split("\x00") if a) if raw_cmd else ()
    try:
        exe = os.readlink(os.path.join(base, "exe"))
        exe_name = _basename(exe.removesuffix(" (deleted)")) or None
    except OSError:
        exe_name = None
    uid = None
    status = _read(os.path.join(base, "status"), 8192) or ""
    for line in status.splitlines():
        if line.startswith("Uid:"):
            try:
                uid = int(line.split()[1])
            except (IndexError, ValueError):
                pass
            break
    container, pod = parse_cgroup(_read(os.path.join(base, "cgroup"), _CGROUP_MAX) or "")
    return ProcessInfo(int(pid), comm, exe_name, argv, uid, user_name(uid), container, pod)


def user_name(uid: int | None) -> str | None:
    if uid is None:
        return None
    try:
        import pwd  # POSIX only; the sensor is Linux-only, the import stays portable
        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def _pod_uid(text: str) -> str | None:
    # A pod UID is a UUID; anything else in a cgroup path (a delegated sub-cgroup's name) is not shown.
    if 32 <= len(text) <= 36 and all(c in "0123456789abcdef-" for c in text):
        return text
    return None


def parse_cgroup(text: str) -> tuple[str | None, str | None]:
    """(short container id, pod UID) from ``/proc/<pid>/cgroup`` (docker, containerd, CRI-O, kubepods)."""
    container = pod = None
    for line in text.splitlines():
        path = line.rsplit(":", 1)[-1]
        for part in path.split("/"):
            if part.startswith("kubepods") and "pod" in part and pod is None:
                # kubepods-besteffort-pod1234_5678.slice (systemd) or pod1234-5678 (cgroupfs)
                pod = _pod_uid(part.split("pod")[-1].removesuffix(".slice").replace("_", "-"))
            elif part.startswith("pod") and pod is None:
                pod = _pod_uid(part[3:])
            name = part.removesuffix(".scope")
            for prefix in ("docker-", "cri-containerd-", "crio-", "libpod-", ""):
                if name.startswith(prefix):
                    cid = name[len(prefix):]
                    if len(cid) == 64 and all(c in "0123456789abcdef" for c in cid):
                        container = cid[:12]
                    break
    return container, pod
