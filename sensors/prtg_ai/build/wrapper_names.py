"""The file names of the wrappers PRTG's sensor dropdowns show: one contract, two users.

The device templates (``build.templates``) name the wrapper a sensor runs; the
installer (``prtg_ai_installer.wrappers``) writes files under the same names. The
names live here, in the pack, so the installer imports the pack and never the
other way round.
"""

from __future__ import annotations

import re

WRAPPER_PREFIX = "prtgai_"
SENSOR_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

# PRTG's custom-sensor folder kinds (the installer's layout maps each to a folder).
EXEXML = "exexml"
PYTHON = "python"
SCRIPTS = "scripts"
SCRIPTSXML = "scriptsxml"

SUFFIXES = {EXEXML: ".cmd", PYTHON: ".py", SCRIPTS: ".py", SCRIPTSXML: ".sh"}


class WrapperError(ValueError):
    """A sensor id or interpreter path that cannot be put into a wrapper safely."""


def check_sensor_id(sensor: str) -> None:
    """Refuse ids that would make odd file names or inject into a script."""
    if not isinstance(sensor, str) or not SENSOR_ID.fullmatch(sensor):
        raise WrapperError(f"sensor id {sensor!r} is not a snake_case word; refusing to write a wrapper for it")


def wrapper_name(kind: str, sensor: str) -> str:
    """File name of ``sensor``'s wrapper in folder ``kind`` (the name PRTG's dropdown shows)."""
    check_sensor_id(sensor)
    return f"{WRAPPER_PREFIX}{sensor}{SUFFIXES[kind]}"
