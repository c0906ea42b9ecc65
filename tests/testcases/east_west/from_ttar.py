"""Extract part of a ttar archive (the format of node_exporter's and procfs's fixtures) into a folder.

Usage: python from_ttar.py ARCHIVE PREFIX DEST [PREFIX DEST]...

Every entry whose path starts with PREFIX is written below DEST with PREFIX removed:
``Directory:`` entries become folders, ``Path:`` + ``Lines:`` entries become files with
exactly those lines, ``SymlinkTo:`` entries become symbolic links. The archives are the
public captures named in each case's SOURCE.md; this script only unpacks them.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def entries(text: str):
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("Directory: "):
            yield "dir", line[len("Directory: "):], None
            i += 1
        elif line.startswith("Path: "):
            path = line[len("Path: "):]
            nxt = lines[i + 1]
            if nxt.startswith("SymlinkTo: "):
                yield "link", path, nxt[len("SymlinkTo: "):]
                i += 2
            elif nxt.startswith("Lines: "):
                count = int(nxt[len("Lines: "):])
                body = lines[i + 2:i + 2 + count]
                yield "file", path, "".join(f"{b}\n" for b in body)
                i += 2 + count
            else:
                raise ValueError(f"unexpected line after {line!r}: {nxt!r}")
        else:
            i += 1


def extract(archive: Path, pairs: list[tuple[str, Path]]) -> int:
    written = 0
    for kind, path, data in entries(archive.read_text(encoding="utf-8")):
        for prefix, dest in pairs:
            if path != prefix.rstrip("/") and not path.startswith(prefix):
                continue
            rel = path[len(prefix):].lstrip("/")
            target = dest / rel if rel else dest
            if kind == "dir":
                target.mkdir(parents=True, exist_ok=True)
            elif kind == "file":
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(data, encoding="utf-8")
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_symlink() or target.exists():
                    target.unlink()
                os.symlink(data.rstrip("/"), target)
            written += 1
    return written


if __name__ == "__main__":
    archive, *rest = sys.argv[1:]
    pairs = [(rest[i], Path(rest[i + 1])) for i in range(0, len(rest), 2)]
    print(extract(Path(archive), pairs), "entries")
