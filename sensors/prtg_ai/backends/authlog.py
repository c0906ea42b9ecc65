"""sshd's messages since the last scan: from an auth log file, or from the journal.

Reads either

* a syslog file (``/var/log/auth.log`` on Debian/Ubuntu, ``/var/log/secure`` on
  RHEL-likes, or ``--auth-log FILE``), from where the last scan stopped. The position
  is ``(device, inode, offset)``; a new inode means the file was rotated (the rest of
  the old file is read from ``FILE.1`` or ``FILE-YYYYMMDD`` when it is still there, then
  the new file from its start), a file shorter than the offset was truncated (read from
  the start). The file is opened with ``O_NOFOLLOW | O_NONBLOCK`` and must be a regular
  file (a FIFO or device would block or never end); at most ``MAX_SCAN_BYTES`` are read
  per scan, the newest ones when more is waiting, and only whole lines;
* or the journal, through ``journalctl -o json`` for ``SYSLOG_IDENTIFIER=sshd`` and
  ``sshd-session`` (OpenSSH 9.8+), after a stored cursor.

Needs: read permission on the file (root or group ``adm`` on Debian), or on the
journal (root, group ``systemd-journal`` or ``adm``); without it the sensor says so.

The first scan has no position: it reads the end of the log only to learn which
addresses logins usually come from, and counts nothing.
"""

from __future__ import annotations

import os
import re
import stat

from prtg_ai.maths.records import field, record

MAX_SCAN_BYTES = 4 * 1024 * 1024
FIRST_SCAN_BYTES = 1024 * 1024
MAX_JOURNAL_ENTRIES = 20_000
JOURNAL_IDENTIFIERS = ("sshd", "sshd-session")
DEFAULT_FILES = ("/var/log/auth.log", "/var/log/secure")
JOURNALCTL = "journalctl"
_CURSOR = re.compile(r"^[A-Za-z0-9=;_-]{1,512}$")
_ROTATED_SUFFIXES = (".1", "-[0-9]*")


class AuthLogError(Exception):
    """The log cannot be read; the text says why and what to check."""


@record
class Read:
    """Text read this scan and the position to store for the next."""

    lines: list = field(default_factory=list)   # syslog lines (file) or (pid, message) pairs (journal)
    position: dict = field(default_factory=dict)
    first: bool = False
    skipped_bytes: int = 0
    notes: list = field(default_factory=list)
    source: str = ""


def _open_regular(path: str) -> tuple[int, os.stat_result]:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | \
        getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise AuthLogError(f"{path} does not exist") from None
    except PermissionError:
        raise AuthLogError(f"no permission to read {path} (run as root or add the user to group adm)") from None
    except OSError as exc:
        if exc.errno in (40, 62):  # ELOOP (Linux), ELOOP (BSD): the last component is a symlink
            raise AuthLogError(f"{path} is a symbolic link; give the log file itself") from None
        raise AuthLogError(f"{path} cannot be opened ({exc.strerror or exc})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise AuthLogError(f"{path} is not a regular file")
    return fd, st


def _read_range(fd: int, start: int, end: int) -> bytes:
    os.lseek(fd, start, os.SEEK_SET)
    chunks, left = [], end - start
    while left > 0:
        chunk = os.read(fd, min(left, 1024 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _whole_lines(data: bytes) -> tuple[bytes, int]:
    """Complete lines of ``data`` and their length (a half-written last line waits for the next scan)."""
    cut = data.rfind(b"\n") + 1
    return data[:cut], cut


def _decode(data: bytes) -> list[str]:
    return data.decode("utf-8", "replace").splitlines()


def _rotated_copy(path: str, dev: int, ino: int) -> str | None:
    """The rotated file that still has inode ``ino`` (``FILE.1``, ``FILE-20240101``), if any."""
    folder, name = os.path.split(path)
    try:
        entries = os.listdir(folder or ".")
    except OSError:
        return None
    for entry in entries:
        if entry == name + ".1" or (entry.startswith(name + "-") and entry[len(name) + 1:].isdigit()):
            candidate = os.path.join(folder, entry)
            try:
                st = os.lstat(candidate)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_dev == dev and st.st_ino == ino:
                return candidate
    return None


def read_file(path: str, position: dict | None, cap: int = MAX_SCAN_BYTES) -> Read:
    """sshd lines of ``path`` since ``position`` (None on the first scan)."""
    fd, st = _open_regular(path)
    out = Read(source=path)
    try:
        pos = position if _valid_position(position, path) else None
        if pos is None:
            _read_first(fd, st, path, cap, out)
            return out
        budget = cap
        if (pos["dev"], pos["ino"]) != (st.st_dev, st.st_ino):
            budget -= _read_rotated_rest(path, pos, budget, out)
            offset = 0
        elif st.st_size < pos["offset"]:
            out.notes.append("the auth log was truncated since the last scan: read from its start")
            offset = 0
        else:
            offset = pos["offset"]
        end = _read_since(fd, st.st_size, offset, budget, out)
        out.position = {"path": path, "dev": st.st_dev, "ino": st.st_ino, "offset": end}
        return out
    finally:
        os.close(fd)


def _read_first(fd: int, st: os.stat_result, path: str, cap: int, out: Read) -> None:
    """The first scan: the file's last whole lines (``FIRST_SCAN_BYTES`` at most), to learn from."""
    out.first = True
    start = max(0, st.st_size - min(cap, FIRST_SCAN_BYTES))
    data = _read_range(fd, start, st.st_size)
    if start > 0:
        data = data[data.find(b"\n") + 1:]  # drop the partial first line
    body, used = _whole_lines(data)
    out.lines = _decode(body)
    out.position = {"path": path, "dev": st.st_dev, "ino": st.st_ino, "offset": st.st_size - len(data) + used}


def _read_rotated_rest(path: str, pos: dict, budget: int, out: Read) -> int:
    """The lines the rotated-away file got after ``pos`` (the newest half of ``budget`` at most); bytes read."""
    old = _rotated_copy(path, pos["dev"], pos["ino"])
    if old is None:
        out.notes.append("the auth log was rotated and its old copy is gone: lines between the "
                         "last scan and the rotation are not counted")
        return 0
    try:
        ofd, ost = _open_regular(old)
    except AuthLogError as exc:
        out.notes.append(f"the rotated auth log cannot be read ({exc})")
        return 0
    try:
        start = min(pos["offset"], ost.st_size)
        if ost.st_size - start > budget // 2:
            out.skipped_bytes += ost.st_size - start - budget // 2
            start = ost.st_size - budget // 2
        data = _read_range(ofd, start, ost.st_size)
        out.lines.extend(_decode(data))
        return len(data)
    finally:
        os.close(ofd)


def _read_since(fd: int, size: int, offset: int, budget: int, out: Read) -> int:
    """The whole lines from ``offset`` to the end (the newest ``budget`` bytes at most); the offset reached."""
    start = offset
    if size - start > budget:
        out.skipped_bytes += size - start - budget
        start = size - budget
    data = _read_range(fd, start, size)
    if start > offset:
        cut = data.find(b"\n") + 1
        out.skipped_bytes += cut
        data = data[cut:]
        start += cut
    body, used = _whole_lines(data)
    out.lines.extend(_decode(body))
    return start + used


def _valid_position(position, path: str) -> bool:
    # State is read back from disk: anything malformed starts a fresh baseline.
    if not isinstance(position, dict) or position.get("path") != path:
        return False
    return all(isinstance(position.get(k), int) and not isinstance(position.get(k), bool) and position[k] >= 0
               for k in ("dev", "ino", "offset"))


def default_file() -> str | None:
    """The first of ``/var/log/auth.log`` and ``/var/log/secure`` that exists."""
    for path in DEFAULT_FILES:
        if os.path.exists(path):
            return path
    return None


# -- the journal ---------------------------------------------------------------------
def journalctl_path() -> str | None:
    """journalctl on ``PATH`` (or the usual places); a few stat calls, no shutil import."""
    folders = os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/bin"]
    for folder in folders:
        if folder:
            candidate = os.path.join(folder, JOURNALCTL)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
    return None


def _run_bounded(args: list[str], env: dict, timeout: float, cap: int) -> tuple[int | None, bytes, bytes, bool]:
    """Run ``args``; return (exit status or None on timeout, stdout up to ``cap``, stderr head, cut).

    ``posix_spawn`` and two pipes instead of ``subprocess``, whose import every scan would pay
    (benchmark row "start-up: node_security (console script, whole process)" in
    benchmarks/bench_startup.py); the child is killed at the deadline or when ``cap`` is reached.
    """
    import time

    pid, out_r, err_r = _spawn(args, env)
    deadline = time.monotonic() + timeout
    try:
        out, err, cut, timed_out = _drain(out_r, err_r, deadline, cap)
        status = _reap(pid, deadline, kill_first=timed_out or cut)
        if timed_out:
            status = None
    finally:
        os.close(out_r)
        os.close(err_r)
    return status, bytes(out[:cap]), bytes(err), cut


def _spawn(args: list[str], env: dict) -> tuple[int, int, int]:
    """Start ``args`` reading /dev/null, writing into two pipes: (pid, stdout's read end, stderr's read end)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2),
               (os.POSIX_SPAWN_CLOSE, out_r), (os.POSIX_SPAWN_CLOSE, err_r)]
    try:
        pid = os.posix_spawn(args[0], args, env, file_actions=actions)
    except OSError:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    return pid, out_r, err_r


def _drain(out_r: int, err_r: int, deadline: float, cap: int) -> tuple[bytearray, bytearray, bool, bool]:
    """Read both pipes until both close, stdout passes ``cap`` or the deadline passes.

    Returns (stdout, the first 4 KiB of stderr, cut at the cap, timed out).
    """
    import select
    import time

    out, err = bytearray(), bytearray()
    poller = select.poll()
    open_fds = {out_r: out, err_r: err}
    for fd in open_fds:
        poller.register(fd, select.POLLIN | select.POLLHUP)
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for fd, _ in poller.poll(left * 1000):
            chunk = os.read(fd, 65536)
            if not chunk:
                poller.unregister(fd)
                del open_fds[fd]
                continue
            buf = open_fds[fd]
            if fd == err_r:
                if len(buf) < 4096:
                    buf += chunk[: 4096 - len(buf)]
                continue
            buf += chunk
            if len(buf) > cap:
                return out, err, True, False
    return out, err, False, bool(open_fds)


def _reap(pid: int, deadline: float, kill_first: bool) -> int | None:
    """Wait for the child (killed first when asked, killed anyway at the deadline); its exit status or None."""
    import time

    if kill_first:
        os.kill(pid, 9)
    for _ in range(200):
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(code)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.005)
    return None


def read_journal(cursor: str | None, timeout: float, directory: str | None = None,
                 cap: int = MAX_SCAN_BYTES) -> Read:
    """sshd messages from the journal after ``cursor`` (None: the first scan, learn only)."""
    exe = journalctl_path()
    if exe is None:
        raise AuthLogError("journalctl is not installed on this host")
    out = Read(source="journal")
    if cursor is not None and not _CURSOR.match(cursor):
        cursor = None
        out.notes.append("the stored journal cursor was malformed: started a fresh baseline")
    out.first = cursor is None
    status, stdout, stderr, cut = _run_journalctl(_journal_args(exe, cursor, directory), timeout, cap)
    if status not in (0, None) and not stdout:
        err = stderr.decode("utf-8", "replace").strip().splitlines()
        reason = err[-1][:200] if err else f"exit status {status}"
        if cursor is not None and "cursor" in reason.lower():
            # The entry of the cursor was vacuumed: start again from the end.
            again = read_journal(None, timeout, directory, cap)
            again.notes.insert(0, "the journal no longer has the last scan's position: started a fresh baseline")
            return again
        raise AuthLogError(f"journalctl failed: {reason}")
    if cut:
        out.notes.append(f"more than {cap // (1024 * 1024)} MiB of sshd messages since the last scan: "
                         "counted the first part, the rest follows next scan")
    last_cursor = _journal_entries(stdout, cursor, out.lines)
    out.position = {"cursor": last_cursor} if last_cursor else {}
    return out


def _journal_args(exe: str, cursor: str | None, directory: str | None) -> list[str]:
    """journalctl's command line: sshd's entries after ``cursor``, or the last 2000 without one."""
    # No --quiet: its warning about journals this user may not read is how a lack of permission shows.
    args = [exe, "--no-pager", "-o", "json",
            "--output-fields=MESSAGE,_PID,SYSLOG_PID,SYSLOG_IDENTIFIER"]
    if directory:
        args.append(f"--directory={directory}")
    if cursor is None:
        args += ["-n", "2000"]
    else:
        args += [f"--after-cursor={cursor}", "-n", str(MAX_JOURNAL_ENTRIES)]
    return args + [f"SYSLOG_IDENTIFIER={i}" for i in JOURNAL_IDENTIFIERS]


def _run_journalctl(args: list[str], timeout: float, cap: int) -> tuple[int | None, bytes, bytes, bool]:
    """``_run_bounded`` in a plain environment; ``AuthLogError`` when it cannot start, times out or may not read."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "SYSTEMD_COLORS": "0",
           "SYSTEMD_PAGER": ""}
    try:
        status, stdout, stderr, cut = _run_bounded(args, env, timeout, cap)
    except OSError as exc:
        raise AuthLogError(f"journalctl could not be started ({exc.strerror or exc})") from None
    if status is None and not cut:
        raise AuthLogError(f"journalctl did not finish within {timeout:g}s")
    if b"not seeing messages from other users" in stderr or b"insufficient permissions" in stderr:
        raise AuthLogError("no permission to read the system journal (run as root or add the user to group "
                           "systemd-journal or adm)")
    return status, stdout, stderr, cut


def _journal_entries(stdout: bytes, cursor: str | None, lines: list) -> str | None:
    """Append (pid, message) of each JSON entry in ``stdout`` to ``lines``; return the last cursor seen."""
    import json

    last_cursor = cursor
    for raw in stdout.splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue  # the last line cut by the cap
        if not isinstance(entry, dict):
            continue
        c = entry.get("__CURSOR")
        if isinstance(c, str) and _CURSOR.match(c):
            last_cursor = c
        message = entry.get("MESSAGE")
        if isinstance(message, list):  # journald stores non-UTF-8 messages as a byte array
            try:
                message = bytes(b for b in message if isinstance(b, int) and 0 <= b < 256).decode("utf-8", "replace")
            except ValueError:
                continue
        # SYSLOG_PID is the PID sshd put in its syslog message (the same as _PID for sshd itself).
        pid = entry.get("SYSLOG_PID") or entry.get("_PID")
        if isinstance(message, str) and isinstance(pid, str) and pid.isdigit():
            lines.append((int(pid), message[:2048]))
    return last_cursor


def probe() -> list[tuple[str, bool, str]]:
    """``prtg-ai doctor`` lines for node_security: can the journal and the auth logs be read?"""
    checks = []
    exe = journalctl_path()
    if exe is None:
        checks.append(("Journal (node_security)", False, "journalctl is not installed; the auth log files are used"))
    else:
        try:
            read = read_journal(None, 10.0)
            checks.append(("Journal (node_security)", True, f"{exe} answers ({len(read.lines)} recent sshd messages)"))
        except AuthLogError as exc:
            checks.append(("Journal (node_security)", False, str(exc)))
    found = False
    for path in DEFAULT_FILES:
        if not os.path.exists(path):
            continue
        found = True
        try:
            fd, _ = _open_regular(path)
            os.close(fd)
            checks.append((f"Auth log {path} (node_security)", True, "readable"))
        except AuthLogError as exc:
            checks.append((f"Auth log {path} (node_security)", False, str(exc)))
    if not found:
        checks.append(("Auth log files (node_security)", exe is not None,
                       "neither /var/log/auth.log nor /var/log/secure exists"
                       + ("; the journal is used" if exe else "; pass --auth-log FILE")))
    return checks
