"""Find the pack's data: its folders (lookups, device templates, installer assets) and tables.

Everything is read through ``importlib.resources``, package data first. A wheel carries
the folders inside its packages (hatch force-include: ``prtg_ai/data/lookups``,
``prtg_ai/data/device_templates``, ``prtg_ai_installer/assets``); an editable install or
a source checkout does not get those copies, so there the checkout's own folders
(``lookups/``, ``device_templates/``, ``installer/assets/``) are used instead.
"""

from __future__ import annotations

from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]


def package_dir(package: str, name: str, checkout: Path) -> Path:
    """The folder ``name`` shipped inside ``package``, or ``checkout`` where the package has none.

    A wheel installs as plain files, so the package's folder is a real ``Path`` (never a
    zip member); ``checkout`` serves an editable install and a source checkout.
    """
    from importlib.resources import files

    packaged = files(package).joinpath(name)
    return packaged if isinstance(packaged, Path) and packaged.is_dir() else checkout


def data_dir(name: str) -> Path:
    """Return the folder ``name`` (``lookups`` or ``device_templates``)."""
    return package_dir("prtg_ai", f"data/{name}", _REPO_ROOT / name)


def repo_root() -> Path | None:
    """The source checkout holding this package, when running from one."""
    return _REPO_ROOT if (_REPO_ROOT / "pyproject.toml").is_file() else None


def package_rows(package: str, name: str) -> list[dict[str, str]]:
    """The rows of the CSV file ``name`` shipped inside ``package`` (tables a sensor carries with it)."""
    import csv
    from importlib.resources import files

    with files(package).joinpath(name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))
