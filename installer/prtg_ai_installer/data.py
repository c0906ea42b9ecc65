"""Find the installer's assets (wrapper templates, bootstraps) in a wheel or a checkout.

A wheel carries them as ``prtg_ai_installer/assets`` (hatch force-include); an
editable install or a source checkout has them at ``installer/assets`` instead.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGED = Path(__file__).resolve().parent / "assets"
_CHECKOUT = Path(__file__).resolve().parents[1] / "assets"


def assets_dir() -> Path:
    """The assets folder of this installation."""
    return _PACKAGED if _PACKAGED.is_dir() else _CHECKOUT
