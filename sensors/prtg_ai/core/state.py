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
  and adds a note; the scan still reports.
"""

from __future__ import annotations

import json
import os
import time
import zlib

from prtg_ai.core.locking import FileLock, LockTimeout
from prtg_ai.core.log import get_logger
from prtg_ai.core.paths import as_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FORMAT = "prtg-ai-state"
VERSION = 1
LOCK_TIMEOUT_S = 10.0
log = get_logger("prtg_ai.state")


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
        self.folder = os.fspath(directory)
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
                self.save()
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
            with open(self.file, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
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
        return None

    def _set_aside(self) -> None:
        if not self.writable:
            return
        try:
            os.replace(self.file, os.path.splitext(self.file)[0] + ".corrupt")
        except OSError:
            pass

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
        tmp_name = None
        try:
            tmp_name = f"{os.path.splitext(self.file)[0]}.{os.getpid()}.{time.time_ns()}.tmp"
            fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            _replace(tmp_name, self.file)
            tmp_name = None
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            self.notes.append(f"Could not save state to {self.folder} ({reason}); the previous state is kept")
            log.warning("Could not save state %r: %s", self.file, exc)
        finally:
            if tmp_name is not None:
                try:
                    os.unlink(tmp_name)
                except OSError:
                    pass


def _replace(src: str, dst: str) -> None:
    # On Windows a reader holding the target open makes os.replace fail briefly.
    for attempt in range(5):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))


class StateStore:
    """Opens ``StateSession``s in one folder."""

    def __init__(self, directory):
        self.folder = os.fspath(directory)

    def session(self, sensor_id: str, identity: dict[str, Any], max_samples: int = 1024) -> StateSession:
        return StateSession(self.folder, sensor_id, identity, max_samples=max_samples)
