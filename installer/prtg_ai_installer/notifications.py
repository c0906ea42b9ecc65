"""Render PRTG "Execute Program" notification wrappers for ``prtg-ai act stop-idle-gpus`` (pure).

PRTG's "Execute Program" notification runs a program from the ``Notifications\\EXE``
folder of the core server's program directory (the folder is UNCONFIRMED from
Paessler's manual; widely documented by notification projects that install there:
``NOTIFICATION_FOLDER``), with a "Parameters" field in which PRTG substitutes
placeholders such as ``%sensorid``, ``%device``, ``%sensor``, ``%status``, ``%message``.

Two wrappers, both a dry run unless the administrator adds ``--execute`` / ``-Execute``
to the notification's parameters (no file edit, so a re-install never undoes it):

- ``prtgai_stop_idle_gpus.bat``: positional ``"%sensorid" "%device" "%sensor" "%status"``
  then up to five more option words (``--execute --region eu-west-1``);
- ``prtgai_stop_idle_gpus.ps1``: named ``-SensorId '%sensorid' ... -Message '%message'``,
  ``-Execute``, ``-Region``, ``-MaxInstances``, ``-IdleFor``, ``-MinAge``.
"""

from __future__ import annotations

from functools import lru_cache

from prtg_ai_installer.data import assets_dir
from prtg_ai_installer.wrappers import WRAPPER_PREFIX, WrapperError

# Relative to the PRTG program folder of the core server. UNCONFIRMED (see the module docstring).
NOTIFICATION_FOLDER = ("Notifications", "EXE")
ACTION = "stop-idle-gpus"
STEM = f"{WRAPPER_PREFIX}stop_idle_gpus"
# file name -> (template, newline)
FILES = {
    f"{STEM}.bat": ("stop_idle_gpus.bat.j2", "\r\n"),
    f"{STEM}.ps1": ("stop_idle_gpus.ps1.j2", "\r\n"),
}


def bat_command(python: str) -> str:
    """The one command line of the ``.bat`` wrapper (``%`` doubled: cmd expands it even in quotes)."""
    if '"' in python or "\n" in python or "\r" in python:
        raise WrapperError(f"interpreter path {python!r} cannot be quoted for cmd.exe")
    return (f'"{python.replace("%", "%%")}" -m prtg_ai.cli act {ACTION} --prtg-sensorid "%~1" '
            f'--prtg-device "%~2" --prtg-sensor "%~3" --prtg-status "%~4" %5 %6 %7 %8 %9')


def ps_literal(text: str) -> str:
    """The body of a PowerShell single-quoted string (a quote is doubled; nothing else is special)."""
    if "\n" in text or "\r" in text:
        raise WrapperError(f"interpreter path {text!r} cannot be put into a PowerShell string")
    return text.replace("'", "''").replace("\u2019", "\u2019\u2019").replace("\u2018", "\u2018\u2018")


def render(name: str, python: str, version: str) -> bytes:
    """The bytes of notification wrapper ``name`` (a key of ``FILES``) running ``python``."""
    template, newline = FILES[name]
    text = _environment().get_template(template).render(
        version=version, command=bat_command(python), python_ps=ps_literal(python))
    return (newline.join(text.splitlines()) + newline).encode("utf-8")


@lru_cache(maxsize=1)
def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(assets_dir() / "notifications")),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
