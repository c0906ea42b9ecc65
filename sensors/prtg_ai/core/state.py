"""Per-instance state between scans: bounded samples, atomic writes, a cross-process lock.

PRTG starts a new process for every scan of a script sensor, and several sensors
(and the agent) may run at once, so rates and trends keep their samples in a
small JSON file per sensor instance (sensor id + the parameters that identify it).

* Reads and writes happen under an exclusive file lock (``core.locking``: flock on
  Linux, msvcrt on Windows), so concurrent scans never lose each other's samples.
* Writes go to a temporary file in the same folder, are flushed to disk, then
  ``os.replace``d over the old file: a crash leaves the old or the new file, never half.
* A corrupt, truncated, foreign or unreadable file is set aside (``.corrupt``) and a
  fresh baseline starts, with a note for the sensor message; never an exception.
* A state that cannot be saved (read-only folder, full disk) keeps the old file
  and adds a note; the scan still reports (the runtime adds notes that arrive
  after the sensor copied its notes: the ``late`` list of ``begin_run``).

Hostile folders (the folder may be shared with other local users):

* a folder writable by group or others, or owned by another user (not root), is
  not used as it is: state goes to a private ``prtg-ai-<uid>`` subfolder (0700,
  ours, no symlink), or is not kept at all (``secure_folder``);
* state, lock and log files are opened without following symlinks, non-blocking,
  and only regular files are read, at most ``MAX_STATE_BYTES``;
* a file whose contents have the wrong types makes the sensor fail once: the
  runtime sets every state file that run loaded aside (``.corrupt``) and runs the
  sensor again from a fresh baseline (the ``loaded`` list of ``begin_run``), so it never sticks;
* at most ``MAX_STATE_FILES`` instance files are kept, and files unused for
  ``STATE_EXPIRE_S`` are removed, checked whenever a new instance file is created.
"""

from __future__ import annotations

import json
import os
import stat
import time
import zlib
from contextvars import ContextVar

from prtg_ai.core.locking import FileLock, LockTimeout
from prtg_ai.core.log import get_logger
from prtg_ai.core.paths import as_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FORMAT = "prtg-ai-state"
VERSION = 1
LOCK_TIMEOUT_S = 10.0
MAX_STATE_BYTES = 16 * 1024 * 1024  # the largest legitimate file (a gpu_spend cost cache) is far below
MAX_STATE_FILES = 1000  # instance files per folder: a node's sensors need tens; client-chosen ids could need more
STATE_EXPIRE_S = 30 * 86400.0  # an instance file unused this long belongs to a sensor that is gone
FILE_MODE = 0o600
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
log = get_logger("prtg_ai.state")
# Per run (the agent runs sensors in threads; each run sets its own): files loaded, late notes.
_RUN: ContextVar[dict | None] = ContextVar("prtg_ai_state_run", default=None)
_SECURED: dict[str, tuple[str | None, str | None]] = {}


def begin_run() -> dict:
    """Start tracking the state files and late notes of one sensor run (the runtime calls this)."""
    run = {"loaded": [], "late": []}
    _RUN.set(run)
    return run


def secure_folder(folder: str) -> tuple[str | None, str | None]:
    """The folder to keep state in, and a note when it is not ``folder`` itself.

    A folder that other users may write to (group/world-writable) or that another
    user owns could receive planted symlinks; state then goes to a private
    subfolder ``prtg-ai-<uid>`` (mode 0700, owned by us, not a symlink). Returns
    ``(None, why)`` when no safe folder can be had. POSIX only; Windows ACLs are
    set by the installer. Cached per process.
    """
    if not hasattr(os, "geteuid"):
        return folder, None
    cached = _SECURED.get(folder)
    if cached is not None:
        return cached
    uid = os.geteuid()
    try:
        os.makedirs(folder, exist_ok=True)
        st = os.stat(folder)
    except OSError:
        return folder, None  # the caller reports the folder as unusable
    if st.st_uid in (uid, 0) and not st.st_mode & 0o022:
        answer: tuple[str | None, str | None] = (folder, None)
    else:
        private = os.path.join(folder, f"prtg-ai-{uid}")
        try:
            os.mkdir(private, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            answer = (None, f"state folder {folder} is writable by other users or owned by another one, and "
                            f"no private subfolder could be made ({exc.strerror or exc})")
            _SECURED[folder] = answer
            return answer
        try:
            pst = os.lstat(private)
        except OSError:
            pst = None
        if pst is None or not stat.S_ISDIR(pst.st_mode) or pst.st_uid != uid or pst.st_mode & 0o077:
            answer = (None, f"state folder {folder} is writable by other users or owned by another one, and its "
                            f"private subfolder prtg-ai-{uid} is not private (not ours, a symlink, or open to others)")
        else:
            answer = (private, f"state folder {folder} is writable by other users; kept state in prtg-ai-{uid}")
    _SECURED[folder] = answer  # before logging: the log file's own set-up asks for this folder too
    if answer[1]:
        log.warning("State folder %r: %s", folder, answer[1])
    return answer


def read_state_bytes(path: str, limit: int = MAX_STATE_BYTES) -> bytes:
    """A state file's bytes: no symlink followed, never blocking, regular files only, at most ``limit``.

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: it is not a regular file or is larger than ``limit`` (text says which).
        OSError: it cannot be read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        if getattr(exc, "errno", None) == 40:  # ELOOP: the name is a symlink
            raise ValueError("unreadable (a symlink, not a state file)") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("unreadable (not a regular file)")
        if st.st_size > limit:
            raise ValueError(f"larger than {limit // (1024 * 1024)} MiB")
        parts, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
            if total > limit:
                raise ValueError(f"larger than {limit // (1024 * 1024)} MiB")
        return b"".join(parts)
    finally:
        os.close(fd)


def set_aside(path: str) -> bool:
    """Rename ``path`` to ``<stem>.corrupt`` (the file or symlink itself, never its target)."""
    try:
        os.replace(path, os.path.splitext(path)[0] + ".corrupt")
        return True
    except OSError:
        return False


def prune(folder: str, now: float, keep: str | None = None, limit: int | None = None,
          expire_s: float | None = None) -> int:
    """Remove expired instance files, then the oldest beyond ``limit``; return how many were removed."""
    from prtg_ai.core.locking import FileLock, LockTimeout

    limit = MAX_STATE_FILES if limit is None else limit
    expire_s = STATE_EXPIRE_S if expire_s is None else expire_s

    try:
        with os.scandir(folder) as it:
            files = []
            for entry in it:
                if entry.name.endswith((".json", ".corrupt")) and entry.path != keep:
                    try:
                        files.append((entry.stat(follow_symlinks=False).st_mtime, entry.path))
                    except OSError:
                        continue
    except OSError:
        return 0
    files.sort()
    excess = max(0, len([f for f in files if f[1].endswith(".json")]) + 1 - limit)
    removed = 0
    for mtime, path in files:
        expired = now - mtime > expire_s
        if not expired and (excess <= 0 or not path.endswith(".json")):
            continue
        stem = os.path.splitext(path)[0]
        lock = FileLock(stem + ".lock", timeout=0)
        try:
            lock.acquire()  # never remove an instance another scan is using
        except (LockTimeout, OSError):
            continue
        try:
            os.unlink(path)
            removed += 1
            if path.endswith(".json"):
                excess -= 1
            if not os.path.exists(stem + ".json"):
                os.unlink(stem + ".lock")
        except OSError:
            pass
        finally:
            lock.release()
    if removed:
        log.info("Removed %d unused state file(s) from %r", removed, folder)
    return removed


def instance_file_stem(sensor_id: str, identity: dict[str, Any]) -> str:
    # Two independent 32-bit checksums: a 64-bit name without importing hashlib
    # (OpenSSL) on every scan. The file also records its identity in full.
    key = json.dumps(identity, sort_keys=True).encode()
    return f"{sensor_id}-{zlib.crc32(key):08x}{zlib.adler32(key):08x}"


class StateSession:
    """State of one sensor instance for the duration of one scan (use as a context manager)."""

    def __init__(self, directory, sensor_id: str, identity: dict[str, Any],
                 max_samples: int = 1024, lock_timeout: float = LOCK_TIMEOUT_S):
        # Strings inside (no pathlib import on a scan's path); Path views for callers below.
        self.requested = os.fspath(directory)
        self.folder, self._folder_problem = secure_folder(self.requested)
        if self.folder is None:
            self.folder = self.requested
        self.sensor_id = sensor_id
        self.identity = identity
        self.max_samples = max_samples
        self.lock_timeout = lock_timeout
        stem = instance_file_stem(sensor_id, identity)
        self.file = os.path.join(self.folder, f"{stem}.json")
        self._lock_file = os.path.join(self.folder, f"{stem}.lock")
        self._lock: FileLock | None = None
        self.samples: list[Any] = []
        self.data: dict[str, Any] = {}
        self.notes: list[str] = []
        self.fresh = True
        self.writable = True

    @property
    def directory(self):
        return as_path(self.folder)

    @property
    def path(self):
        return as_path(self.file)

    @property
    def _lock_path(self):
        return as_path(self._lock_file)

    # -- context manager -------------------------------------------------
    def __enter__(self) -> "StateSession":
        if self.folder == self.requested and self._folder_problem:
            self._cannot_persist(self._folder_problem)
            return self
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as exc:
            self._cannot_persist(f"state folder {self.folder} cannot be created ({exc.strerror or exc})")
            return self
        try:
            self._lock = FileLock(self._lock_file, timeout=self.lock_timeout)
            self._lock.acquire()
        except LockTimeout:
            self._lock = None
            self._cannot_persist(f"state file {self._name} stayed locked for {self.lock_timeout:g}s by another scan")
        except OSError as exc:
            self._lock = None
            self._cannot_persist(f"state folder {self.folder} is not writable ({exc.strerror or exc})")
        self._load()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and self.writable:
                before = len(self.notes)
                self.save()
                run = _RUN.get()
                if run is not None:
                    run["late"].extend(self.notes[before:])  # the sensor has copied its notes already
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    # -- loading ---------------------------------------------------------
    def _cannot_persist(self, why: str) -> None:
        self.writable = False
        self.notes.append(f"State is not kept: {why}; rates and trends restart every scan")
        log.warning("State not kept: %s", why)

    @property
    def _name(self) -> str:
        return os.path.basename(self.file)

    def _load(self) -> None:
        try:
            raw = read_state_bytes(self.file)
        except FileNotFoundError:
            return
        except ValueError as exc:
            self.notes.append(f"State file {self._name} was {exc}; set it aside and started a fresh baseline")
            log.warning("Discarding state file %r: %s", self.file, exc)
            self._set_aside()
            return
        except OSError as exc:
            self.notes.append(f"State file {self._name} is unreadable ({exc.strerror or exc}); started a fresh baseline")
            log.warning("Unreadable state file %r: %s", self.file, exc)
            return
        problem = self._parse(raw)
        if problem:
            self.notes.append(f"State file {self._name} was {problem}; set it aside and started a fresh baseline")
            log.warning("Discarding state file %r: %s", self.file, problem)
            self._set_aside()

    def _parse(self, raw: bytes) -> str | None:
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return "corrupt or truncated"
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            return "not a prtg-ai state file"
        if doc.get("version") != VERSION:
            return f"written by another version (format {doc.get('version')!r})"
        if doc.get("sensor") != self.sensor_id:
            return "written for another sensor"
        samples, data = doc.get("samples"), doc.get("data")
        if not isinstance(samples, list) or not isinstance(data, dict):
            return "malformed"
        self.samples = samples[-self.max_samples:]
        self.data = data
        self.fresh = False
        run = _RUN.get()
        if run is not None and (samples or data):
            run["loaded"].append(self.file)
        return None

    def _set_aside(self) -> None:
        if self.writable:
            set_aside(self.file)

    # -- saving ----------------------------------------------------------
    def append(self, sample: Any) -> None:
        self.samples.append(sample)
        del self.samples[: -self.max_samples]

    def save(self) -> None:
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "sensor": self.sensor_id,
            "instance": self.identity,
            "saved_at": time.time(),
            "samples": self.samples[-self.max_samples:],
            "data": self.data,
        }
        payload = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")
        if self.fresh and not os.path.lexists(self.file):
            prune(self.folder, time.time(), keep=self.file)  # a new instance: keep the folder bounded
        try:
            write_atomic(self.file, payload)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            self.notes.append(f"Could not save state to {self.folder} ({reason}); the previous state is kept")
            log.warning("Could not save state %r: %s", self.file, exc)


def write_atomic(path, data: bytes, mode: int = FILE_MODE, temp=None, chmod: int | None = None) -> None:
    """Replace ``path`` by ``data`` at once: a crash leaves the old file or the new one, never half of either.

    The pack's one atomic write (state files, the action's daily file, the installer's
    files and journal). ``data`` goes to ``temp`` (default ``<path>.<pid>.<ns>.tmp``:
    beside ``path``, so the rename stays on one filesystem), created exclusively with
    ``mode`` (less the umask) so no other reader sees it half-written or with looser
    permissions, flushed to disk, given ``chmod`` when set (a mode the umask must not
    narrow), then renamed over ``path``. The temp file is removed when anything fails.
    """
    path = os.fspath(path)
    temp = os.fspath(temp) if temp is not None else f"{path}.{os.getpid()}.{time.time_ns()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    try:  # from here on the temp file is ours to remove
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if chmod is not None:
            os.chmod(temp, chmod)
        _replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def _replace(src: str, dst: str) -> None:
    # On Windows a reader holding the target open makes os.replace fail briefly.
    for attempt in range(5):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if attempt == 4:
                raise
            from prtg_ai.maths.backoff import backoff_s  # Windows only: off every other scan's path

            time.sleep(backoff_s(attempt + 1, 0.05, 0.4))


class StateStore:
    """Opens ``StateSession``s in one folder."""

    def __init__(self, directory):
        self.folder = os.fspath(directory)

    def session(self, sensor_id: str, identity: dict[str, Any], max_samples: int = 1024) -> StateSession:
        return StateSession(self.folder, sensor_id, identity, max_samples=max_samples)

    def identities(self, sensor_id: str) -> list[dict[str, Any]]:
        """The identities of every ``sensor_id`` instance with a state file here (unreadable ones skipped)."""
        prefix = f"{sensor_id}-"
        try:
            names = sorted(n for n in os.listdir(self.folder) if n.startswith(prefix) and n.endswith(".json"))
        except OSError:
            return []
        found = []
        for name in names:
            try:
                identity = json.loads(read_state_bytes(os.path.join(self.folder, name))).get("instance")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(identity, dict):
                found.append(identity)
        return found
