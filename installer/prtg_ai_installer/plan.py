"""Compute what an install writes (pure: no file system access in ``build_plan``).

A plan is the full list of files the pack owns for the chosen roles, each with its
exact bytes; ``apply`` compares it with the tree and the manifest to decide what to
create, update, back up or remove. ``load_shipped`` is the one reader of the
pack's own data (lookups and device templates), kept apart so plans stay testable.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prtg_ai_installer import layout, wrappers


@dataclass(frozen=True)
class FileOp:
    """One file the pack owns: where it goes (POSIX-style, relative to DIR) and its bytes."""

    path: str
    data: bytes
    role: str
    executable: bool = False
    private: bool = False  # holds a secret (the agent token): written owner-only where the OS allows

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Plan:
    """Every file for ``roles``, plus the folders they live in (relative to DIR)."""

    roles: tuple[str, ...]
    python: str
    version: str
    files: tuple[FileOp, ...]
    folders: tuple[tuple[str, str], ...] = field(default=())  # (relative folder, role)


@dataclass(frozen=True)
class Shipped:
    """The pack's data files, as (file name, bytes) pairs sorted by name."""

    lookups: tuple[tuple[str, bytes], ...]
    templates: tuple[tuple[str, bytes], ...]


def load_shipped(lookups_dir: Path | None = None, templates_dir: Path | None = None) -> Shipped:
    """Read the shipped ``*.ovl`` lookups and ``*.odt`` device templates.

    Args:
        lookups_dir: defaults to the pack's lookups (wheel data or the checkout's ``lookups/``).
        templates_dir: defaults to the pack's device templates.
    """
    from prtg_ai.data import data_dir

    lookups_dir = lookups_dir or data_dir("lookups")
    templates_dir = templates_dir or data_dir("device_templates")

    def read(folder: Path, pattern: str) -> tuple[tuple[str, bytes], ...]:
        if not folder.is_dir():
            return ()
        return tuple((p.name, p.read_bytes()) for p in sorted(folder.glob(pattern)) if p.is_file())

    return Shipped(read(lookups_dir, "*.ovl"), read(templates_dir, "*.odt"))


def build_plan(
    roles: Sequence[str],
    sensors: Iterable[str],
    python: str,
    version: str,
    shipped: Shipped,
    agent_token: str | None = None,
) -> Plan:
    """The files to install for ``roles``.

    Args:
        roles: roles from ``layout.parse_roles``.
        sensors: sensor ids (the registry's, whatever it holds).
        python: absolute interpreter path the wrappers run.
        version: pack version for the wrappers' headers.
        shipped: the pack's lookups and templates.
        agent_token: with ``--agent-token-file``, the token the HTTP device templates'
            URLs carry (those files are then written owner-only).

    Raises:
        wrappers.WrapperError: on a sensor id or interpreter path unfit for a wrapper.
    """
    sensors = sorted(set(sensors))
    files: list[FileOp] = []
    folders: list[tuple[str, str]] = []
    for role in layout.ROLES:
        if role not in roles:
            continue
        for kind in layout.ROLE_FOLDERS[role]:
            base = "/".join(layout.folder(kind))
            folders.append((base, role))
            if kind == layout.LOOKUPS:
                files += [FileOp(f"{base}/{name}", data, role) for name, data in shipped.lookups]
            elif kind == layout.TEMPLATES:
                for name, data in shipped.templates:
                    if agent_token and is_http_template(data):
                        files.append(FileOp(f"{base}/{name}", with_token(data, agent_token), role, private=True))
                    else:
                        files.append(FileOp(f"{base}/{name}", data, role))
            else:
                spec = wrappers.KINDS[kind]
                files += [
                    FileOp(f"{base}/{wrappers.wrapper_name(kind, s)}", wrappers.render(kind, s, python, version),
                           role, spec.executable)
                    for s in sensors
                ]
    if "core" in roles:
        _add_notifications(files, folders, python, version)
    return Plan(tuple(r for r in layout.ROLES if r in roles), python, version, tuple(files), tuple(folders))


def _add_notifications(files: list[FileOp], folders: list[tuple[str, str]], python: str, version: str) -> None:
    """The core's "Execute Program" notification wrappers for ``prtg-ai act stop-idle-gpus`` (dry run by default)."""
    from prtg_ai_installer import notifications

    base = "/".join(notifications.NOTIFICATION_FOLDER)
    folders.append((base, "core"))
    files += [FileOp(f"{base}/{name}", notifications.render(name, python, version), "core")
              for name in sorted(notifications.FILES)]


def is_http_template(data: bytes) -> bool:
    """Whether a device template holds HTTP Data Advanced sensors (URLs polling the agent)."""
    from prtg_ai.build.templates import HTTP_URL_FIELD

    return f"<{HTTP_URL_FIELD}>".encode() in data


def with_token(data: bytes, token: str) -> bytes:
    """The template with ``token=<token>`` added to every agent URL (URL-encoded, XML-escaped)."""
    from prtg_ai.build.templates import add_token

    return add_token(data.decode("utf-8"), token).encode("utf-8")


def default_python() -> str:
    """The interpreter running the installer, as an absolute but un-resolved path.

    Un-resolved on purpose: a venv's ``bin/python`` is a symlink to the base
    interpreter, and only the venv's path sees the venv's site-packages.
    """
    return os.path.abspath(sys.executable)
