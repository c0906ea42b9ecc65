"""Render the per-sensor script wrappers PRTG starts (pure: text in, bytes out).

One wrapper per sensor and folder kind (templates in ``assets/wrappers``):

- EXEXML ``.cmd`` (EXE/Script Advanced): runs ``"<python>" -m prtg_ai.cli run SENSOR %*``.
  Guarded: a missing interpreter, or one that ends with an error and no result (the
  pack missing or broken in it), prints a PRTG error document and exits 0.
- python ``.py`` (Python Script Advanced): PRTG runs it with its bundled Python; it
  re-runs the pack's interpreter with PRTG's JSON (``sys.argv[1]``) on stdin.
- scripts ``.py`` (Script v2): re-runs the pack with ``--format v2``.
- scriptsxml ``.sh`` (SSH Script Advanced): runs ``"<python>" -m prtg_ai.cli run SENSOR "$@"``
  and relays its result; guarded like the ``.cmd`` (PRTG error JSON, exit 0).

The interpreter is an absolute path, kept un-resolved: a venv's ``python`` is a
symlink to the base interpreter, and resolving it would step out of the venv.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from prtg_ai.build.wrapper_names import (  # noqa: F401  (re-exported: the installer's callers use them)
    SUFFIXES,
    WRAPPER_PREFIX,
    WrapperError,
    check_sensor_id,
    wrapper_name,
)
from prtg_ai_installer import layout
from prtg_ai_installer.data import assets_dir


@dataclass(frozen=True)
class WrapperKind:
    """How one folder kind's wrappers are named and rendered."""

    folder: str
    template: str
    suffix: str
    newline: str
    executable: bool


KINDS: dict[str, WrapperKind] = {
    layout.EXEXML: WrapperKind(layout.EXEXML, "exexml.cmd.j2", SUFFIXES[layout.EXEXML], "\r\n", False),
    layout.PYTHON: WrapperKind(layout.PYTHON, "python_script_advanced.py.j2", SUFFIXES[layout.PYTHON], "\n", False),
    layout.SCRIPTS: WrapperKind(layout.SCRIPTS, "script_v2.py.j2", SUFFIXES[layout.SCRIPTS], "\n", True),
    layout.SCRIPTSXML: WrapperKind(layout.SCRIPTSXML, "ssh_script_advanced.sh.j2", SUFFIXES[layout.SCRIPTSXML], "\n", True),
}


def cmd_command(python: str, sensor: str) -> str:
    """The one command line of the ``.cmd`` wrapper.

    Double quotes keep ``C:\\Program Files (x86)\\...`` one word for cmd.exe; ``%``
    is doubled because cmd expands ``%...%`` inside batch files even within quotes.
    """
    check_sensor_id(sensor)
    if '"' in python or "\n" in python or "\r" in python:
        raise WrapperError(f"interpreter path {python!r} cannot be quoted for cmd.exe")
    return f'"{python.replace("%", "%%")}" -m prtg_ai.cli run {sensor} %*'


def sh_quoted(python: str) -> str:
    """``python`` inside POSIX sh double quotes."""
    if "\n" in python or "\0" in python:
        raise WrapperError(f"interpreter path {python!r} cannot be quoted for sh")
    return '"' + re.sub(r'([\\"$`])', r"\\\1", python) + '"'


def sh_command(python: str, sensor: str) -> str:
    """The run line of the ``.sh`` wrapper: the pack's stdout captured, so a failed start can be answered."""
    check_sensor_id(sensor)
    return f'out=$({sh_quoted(python)} -m prtg_ai.cli run {sensor} "$@")'


def missing_text(python: str) -> str:
    """PRTG error text when the wrapper's interpreter is gone or not executable."""
    return (f"prtg-ai: the interpreter {python} is missing or not executable here (moved, removed or never "
            "installed on this machine). Run prtg-ai install again with --python naming the pack's interpreter.")


def broken_text(python: str) -> str:
    """PRTG error text when the interpreter runs but the pack printed no result (missing or broken pack)."""
    return (f"prtg-ai printed no PRTG result under {python} (the pack is missing or broken in that Python). "
            f"Run: {python} -m prtg_ai.cli doctor  - or reinstall the pack.")


def _error_json(text: str) -> str:
    import json

    return json.dumps({"prtg": {"error": 1, "text": text}})


def sh_literal(text: str) -> str:
    """``text`` as one POSIX sh single-quoted word."""
    return "'" + text.replace("'", "'\\''") + "'"


def cmd_echo(text: str) -> str:
    """``echo`` of ``text`` for cmd.exe in a batch file.

    ``%`` is doubled everywhere (expanded before quotes are seen); ``^ & | < > ( )`` are
    escaped with ``^`` only outside double quotes, because inside them cmd.exe takes
    them, and the caret itself, literally.
    """
    out, quoted = [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch in "^&|<>()" and not quoted:
            out.append("^")
        out.append("%%" if ch == "%" else ch)
    return "echo " + "".join(out)


def render(kind: str, sensor: str, python: str, version: str) -> bytes:
    """Render ``sensor``'s wrapper for folder ``kind`` with interpreter ``python``.

    Args:
        kind: a folder kind with wrappers (``layout.EXEXML``, ``PYTHON``, ``SCRIPTS``, ``SCRIPTSXML``).
        sensor: sensor id from the registry.
        python: absolute path of the pack's interpreter on the target machine.
        version: pack version, written into the header comment.

    Returns:
        The file's bytes, with the line endings its interpreter expects.
    """
    spec = KINDS[kind]
    check_sensor_id(sensor)
    values = {
        "sensor": sensor,
        "version": version,
        "python_literal": _py_literal(python),
        "sensor_literal": _py_literal(sensor),
    }
    if kind == layout.EXEXML:
        values["command"] = cmd_command(python, sensor)
        values["python_cmd"] = python.replace("%", "%%")
        values["echo_missing"] = cmd_echo(_error_json(missing_text(python)))
        values["echo_broken"] = cmd_echo(_error_json(broken_text(python)))
    elif kind == layout.SCRIPTSXML:
        values["command"] = sh_command(python, sensor)
        values["python_sh"] = sh_quoted(python)
        values["json_missing"] = sh_literal(_error_json(missing_text(python)))
        values["json_broken"] = sh_literal(_error_json(broken_text(python)))
    text = _environment().get_template(spec.template).render(**values)
    lines = text.splitlines()
    # A .cmd is read by cmd.exe in the console code page; keep it ASCII-safe text but
    # let a non-ASCII venv path through as UTF-8 (see the report: fragile on Windows).
    return (spec.newline.join(lines) + spec.newline).encode("utf-8")


def _py_literal(value: str) -> str:
    # repr() of a str is a valid literal for every Python 3 (PRTG's bundled 3.4 included).
    return repr(str(value))


@lru_cache(maxsize=1)
def _environment():
    import jinja2  # only the installer needs jinja2; sensors never import this module

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(wrapper_templates())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # shell and batch text, not HTML
    )


def wrapper_templates() -> Path:
    """The folder of wrapper templates (package data in a wheel, the repo's in a checkout)."""
    return assets_dir() / "wrappers"
