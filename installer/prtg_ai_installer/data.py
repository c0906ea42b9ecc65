"""Find the installer's assets (wrapper templates, bootstraps) in a wheel or a checkout.

A wheel carries them as ``prtg_ai_installer/assets`` (hatch force-include); an
editable install or a source checkout has them at ``installer/assets`` instead
(``prtg_ai.data.package_dir``: package data first, the checkout second).
"""

from __future__ import annotations

from pathlib import Path

from prtg_ai.data import package_dir

_CHECKOUT = Path(__file__).resolve().parents[1] / "assets"


def assets_dir() -> Path:
    """The assets folder of this installation."""
    return package_dir("prtg_ai_installer", "assets", _CHECKOUT)
