"""Find the pack's data folders (lookups, device templates) in a wheel or a checkout.

A wheel carries them as ``prtg_ai/data/...`` (hatch force-include); an editable
install or a source checkout has them at the repository root instead.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DATA = Path(__file__).resolve().parent / "data"
_REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir(name: str) -> Path:
    """Return the folder ``name`` (``lookups`` or ``device_templates``)."""
    packaged = _PACKAGE_DATA / name
    if packaged.is_dir():
        return packaged
    return _REPO_ROOT / name


def repo_root() -> Path | None:
    """The source checkout holding this package, when running from one."""
    return _REPO_ROOT if (_REPO_ROOT / "pyproject.toml").is_file() else None


def package_rows(package: str, name: str) -> list[dict[str, str]]:
    """The rows of the CSV file ``name`` shipped inside ``package`` (tables a sensor carries with it)."""
    import csv
    from importlib.resources import files

    with files(package).joinpath(name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))
