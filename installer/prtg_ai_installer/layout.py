"""Where each role's files go inside a PRTG tree (pure, no I/O except detection).

A *role* is one kind of machine the pack is installed on:

- ``core``: the PRTG core server. Value lookups are resolved there
  (``lookups\\custom``), device templates are read there (``devicetemplates``).
- ``probe``: a (Windows) probe that runs script sensors: EXE/Script Advanced
  (``Custom Sensors\\EXEXML``), Python Script Advanced (``Custom Sensors\\python``)
  and Script v2 (``Custom Sensors\\scripts``).
- ``ssh-target``: a Linux GPU node reached by SSH Script Advanced, whose scripts
  live in ``/var/prtg/scriptsxml`` (the installer's DIR is then ``/var/prtg``).

Folders are kept as tuples of name parts relative to the install root so that
the same layout renders as a Windows path on a probe and as a POSIX path in tests
(sources: prtg-formats.md §1.1, §2, §3, §4, §6, §7).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import PurePath, PureWindowsPath

from prtg_ai.build.wrapper_names import EXEXML, PYTHON, SCRIPTS, SCRIPTSXML

ROLES = ("core", "probe", "ssh-target")

# Folder kinds, each a path relative to the install root of its role.
LOOKUPS = "lookups"
TEMPLATES = "devicetemplates"
# EXEXML, PYTHON, SCRIPTS, SCRIPTSXML: the wrapper kinds, named by the pack (build.wrapper_names).

FOLDERS: dict[str, tuple[str, ...]] = {
    LOOKUPS: ("lookups", "custom"),
    TEMPLATES: ("devicetemplates",),
    EXEXML: ("Custom Sensors", "EXEXML"),
    PYTHON: ("Custom Sensors", "python"),
    SCRIPTS: ("Custom Sensors", "scripts"),
    SCRIPTSXML: ("scriptsxml",),
}

ROLE_FOLDERS: dict[str, tuple[str, ...]] = {
    "core": (LOOKUPS, TEMPLATES),
    "probe": (EXEXML, PYTHON, SCRIPTS),
    "ssh-target": (SCRIPTSXML,),
}

# Which roles share one install root: core and probe both live in the PRTG program
# folder (often the same server); an SSH target is another machine's /var/prtg.
ROOT_KIND = {"core": "prtg", "probe": "prtg", "ssh-target": "ssh"}

DEFAULT_WINDOWS_PRTG_DIR = PureWindowsPath(r"C:\Program Files (x86)\PRTG Network Monitor")
DEFAULT_SSH_DIR = "/var/prtg"

# Registry places that may name PRTG's program folder. The Paessler key exists on
# real installs (32-bit program, hence WOW6432Node); the value names under it are
# UNCONFIRMED, so every candidate is checked to be an existing folder before use.
REGISTRY_CANDIDATES: tuple[tuple[str, str], ...] = (
    (r"SOFTWARE\WOW6432Node\Paessler\PRTG Network Monitor", "exepath"),
    (r"SOFTWARE\Paessler\PRTG Network Monitor", "exepath"),
    (r"SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall\PRTG Network Monitor_is1",
     "InstallLocation"),
    (r"SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\PRTG Network Monitor_is1", "InstallLocation"),
)


class LayoutError(ValueError):
    """A role list or install root the installer cannot work with."""


def parse_roles(values: Iterable[str]) -> tuple[str, ...]:
    """Turn repeated and comma-separated ``--role`` values into a sorted, unique tuple.

    Args:
        values: e.g. ``["core,probe"]`` or ``["core", "probe"]``.

    Raises:
        LayoutError: on an unknown role, no role, or roles that need different roots.
    """
    roles: set[str] = set()
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            if part not in ROLES:
                raise LayoutError(f"unknown role {part!r}; choose from {', '.join(ROLES)}")
            roles.add(part)
    if not roles:
        raise LayoutError(f"no role given; choose from {', '.join(ROLES)}")
    if len({ROOT_KIND[r] for r in roles}) > 1:
        raise LayoutError("ssh-target installs into a GPU node's /var/prtg, not into the PRTG folder: "
                          "run it separately with its own --prtg-dir")
    return tuple(r for r in ROLES if r in roles)


def folder(kind: str) -> tuple[str, ...]:
    """The name parts of folder ``kind`` relative to the install root."""
    return FOLDERS[kind]


def folder_path(root: PurePath, kind: str) -> PurePath:
    """Folder ``kind`` under ``root``, in ``root``'s own flavour (Windows or POSIX)."""
    return root.joinpath(*FOLDERS[kind])


def folders_for(roles: Iterable[str]) -> tuple[str, ...]:
    """The folder kinds the given roles write into, in a stable order."""
    return tuple(kind for role in ROLES if role in set(roles) for kind in ROLE_FOLDERS[role])


def default_root(
    roles: Iterable[str],
    platform: str = sys.platform,
    read_registry: Callable[[str, str], str | None] | None = None,
    is_dir: Callable[[PurePath], bool] | None = None,
) -> PurePath | None:
    """The install root to use when ``--prtg-dir`` is not given, or None when unknown.

    Args:
        roles: the roles being installed.
        platform: ``sys.platform`` of the machine (injected in tests).
        read_registry: ``(subkey, value) -> str | None`` under HKEY_LOCAL_MACHINE;
            defaults to winreg on Windows.
        is_dir: existence check for a candidate (injected in tests).
    """
    roles = tuple(roles)
    if any(ROOT_KIND[r] == "ssh" for r in roles):
        return PurePath(DEFAULT_SSH_DIR) if platform != "win32" else None
    if platform != "win32":
        return None  # PRTG's core and Windows probes only; a Linux probe needs --prtg-dir
    return detect_windows_prtg_dir(read_registry or _winreg_reader, is_dir or _is_dir)


def detect_windows_prtg_dir(
    read_registry: Callable[[str, str], str | None],
    is_dir: Callable[[PurePath], bool],
) -> PureWindowsPath:
    """PRTG's program folder from the registry, else the standard folder.

    Args:
        read_registry: ``(subkey, value) -> str | None`` under HKEY_LOCAL_MACHINE.
        is_dir: tells whether a candidate folder exists.
    """
    for subkey, name in REGISTRY_CANDIDATES:
        value = read_registry(subkey, name)
        if value and value.strip():
            candidate = PureWindowsPath(value.strip().strip('"'))
            # exepath may name a file (PRTG Server.exe) rather than the folder.
            if candidate.suffix.lower() == ".exe":
                candidate = candidate.parent
            if is_dir(candidate):
                return candidate
    return DEFAULT_WINDOWS_PRTG_DIR


def _winreg_reader(subkey: str, name: str) -> str | None:
    import winreg  # only exists on Windows; imported here so the module loads everywhere

    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, subkey) as key:
            value, _kind = winreg.QueryValueEx(key, name)
    except OSError:
        return None
    return value if isinstance(value, str) else None


def _is_dir(path: PurePath) -> bool:
    from pathlib import Path

    return Path(path).is_dir()
