"""The install manifest: the only record of which files in a PRTG tree are ours.

It lives in the install root as ``prtg-ai-manifest.json`` and lists every file the
installer wrote (with its SHA-256), the backups it made of files that were in the
way, and the folders it created. Its text is deterministic (sorted, no timestamps)
so an idempotent re-install leaves it byte-identical.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST_NAME = "prtg-ai-manifest.json"
TOOL = "prtg-ai"
FORMAT = 1

# Why a backup exists: "foreign" = a file that was there before we first wrote the
# path (restored on uninstall); "modified" = the user's edit of a file we wrote
# (kept for the user, never deleted by us).
FOREIGN = "foreign"
MODIFIED = "modified"


class ManifestError(Exception):
    """The manifest cannot be read or is not ours: refuse rather than guess."""


@dataclass
class Backup:
    path: str
    sha256: str
    origin: str


@dataclass
class Entry:
    path: str
    sha256: str
    role: str
    executable: bool = False
    backups: list[Backup] = field(default_factory=list)


@dataclass
class Manifest:
    version: str = ""
    python: str = ""
    files: dict[str, Entry] = field(default_factory=dict)
    dirs: dict[str, str] = field(default_factory=dict)  # created folder -> role

    def to_bytes(self) -> bytes:
        doc = {
            "tool": TOOL,
            "format": FORMAT,
            "version": self.version,
            "python": self.python,
            "files": [
                {"path": e.path, "sha256": e.sha256, "role": e.role, "executable": e.executable,
                 "backups": [{"path": b.path, "sha256": b.sha256, "origin": b.origin} for b in e.backups]}
                for e in sorted(self.files.values(), key=lambda e: e.path)
            ],
            "dirs": [{"path": p, "role": r} for p, r in sorted(self.dirs.items())],
        }
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, where: str = MANIFEST_NAME) -> Manifest:
        try:
            doc = json.loads(data.decode("utf-8"))
            if not isinstance(doc, dict) or doc.get("tool") != TOOL:
                raise ManifestError(f"{where} was not written by prtg-ai install; move it away and retry")
            if doc.get("format") != FORMAT:
                raise ManifestError(f"{where} has format {doc.get('format')!r}; this installer reads {FORMAT}")
            files = {}
            for f in doc["files"]:
                backups = [Backup(str(b["path"]), str(b["sha256"]), str(b["origin"])) for b in f.get("backups", [])]
                files[str(f["path"])] = Entry(str(f["path"]), str(f["sha256"]), str(f["role"]),
                                              bool(f.get("executable", False)), backups)
            dirs = {str(d["path"]): str(d["role"]) for d in doc.get("dirs", [])}
            return cls(str(doc.get("version", "")), str(doc.get("python", "")), files, dirs)
        except ManifestError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(f"{where} is damaged ({type(exc).__name__}: {exc}); "
                                "restore it from a backup or move it away") from None


def load(root: Path) -> Manifest:
    """The manifest under ``root``, or an empty one when there is none yet."""
    path = root / MANIFEST_NAME
    if path.is_symlink():
        raise ManifestError(f"{path} is a symlink; refusing to trust it")
    if not path.exists():
        return Manifest()
    return Manifest.from_bytes(path.read_bytes(), str(path))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()
