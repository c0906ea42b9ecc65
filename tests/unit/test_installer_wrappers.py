"""Wrapper rendering: exact command lines, quoting for spaces and metacharacters, line endings."""

from __future__ import annotations

import ast

import pytest

from prtg_ai_installer import layout, wrappers

WIN_PY = r"C:\Program Files (x86)\PRTG Network Monitor\prtg-ai\venv\Scripts\python.exe"


def test_cmd_wrapper_quotes_program_files_x86_and_passes_arguments():
    data = wrappers.render(layout.EXEXML, "gpu", WIN_PY, "9.9")
    lines = data.decode().split("\r\n")
    assert lines[0] == "@echo off"
    assert f'"{WIN_PY}" -m prtg_ai.cli run gpu %*' in lines
    assert lines[-1] == ""  # CRLF-terminated, no bare LF anywhere
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert "9.9" in lines[2]


def test_cmd_wrapper_doubles_percent_signs():
    assert wrappers.cmd_command(r"C:\100%\python.exe", "gpu") == r'"C:\100%%\python.exe" -m prtg_ai.cli run gpu %*'
    with pytest.raises(wrappers.WrapperError):
        wrappers.cmd_command('C:\\a"b\\python.exe', "gpu")


def test_sh_wrapper_execs_the_absolute_interpreter_with_all_arguments():
    data = wrappers.render(layout.SCRIPTSXML, "checkpoint_volume", "/opt/prtg-ai/bin/python", "9.9")
    lines = data.decode().split("\n")
    assert lines[0] == "#!/bin/sh"
    assert 'out=$("/opt/prtg-ai/bin/python" -m prtg_ai.cli run checkpoint_volume "$@")' in lines
    assert lines[-2] == "exit 0"
    assert b"\r" not in data


def test_sh_wrapper_escapes_double_quote_metacharacters():
    assert wrappers.sh_command('/srv/a $b`c"d\\e/python', "gpu") == \
        'out=$("/srv/a \\$b\\`c\\"d\\\\e/python" -m prtg_ai.cli run gpu "$@")'


@pytest.mark.parametrize("kind", [layout.PYTHON, layout.SCRIPTS])
def test_python_wrappers_hold_the_interpreter_and_sensor_as_literals(kind):
    text = wrappers.render(kind, "east_west", WIN_PY, "9.9").decode()
    tree = ast.parse(text)  # valid Python
    consts = {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body
              if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
              and n.targets[0].id in ("PYTHON", "SENSOR")}
    assert consts == {"PYTHON": WIN_PY, "SENSOR": "east_west"}
    assert "f\"" not in text and "f'" not in text  # PRTG's bundled Python may be 3.4


@pytest.mark.parametrize("bad", ["../x", "GPU", "gpu;rm -rf", "", "a" * 80, "gpu\n"])
def test_odd_sensor_ids_are_refused(bad):
    with pytest.raises(wrappers.WrapperError):
        wrappers.wrapper_name(layout.EXEXML, bad)


def test_wrapper_names():
    assert [wrappers.wrapper_name(k, "gpu") for k in wrappers.KINDS] == \
        ["prtgai_gpu.cmd", "prtgai_gpu.py", "prtgai_gpu.py", "prtgai_gpu.sh"]


def test_cmd_wrapper_text_is_guarded():
    """The .cmd text: a missing interpreter and a run without a result each echo PRTG error JSON, exit 0."""
    import json

    py = r"C:\Program Files (x86)\100%\a&b\python.exe"
    lines = wrappers.render(layout.EXEXML, "gpu", py, "9.9").decode().split("\r\n")
    cmd_py = py.replace("%", "%%")
    assert lines.index(f'if not exist "{cmd_py}" goto missing') < lines.index(f'"{cmd_py}" -m prtg_ai.cli run gpu %*')
    run = lines.index(f'"{cmd_py}" -m prtg_ai.cli run gpu %*')
    assert lines[run + 1:run + 3] == ["if errorlevel 1 goto broken", "exit /b 0"]
    for label in (":missing", ":broken"):
        i = lines.index(label)
        echo, after = lines[i + 1], lines[i + 2]
        assert echo.startswith("echo ") and after == "exit /b 0"
        # What cmd.exe prints: %% -> %, and no caret inside the quoted JSON string.
        printed = echo[5:].replace("%%", "%")
        doc = json.loads(printed)
        assert doc["prtg"]["error"] == 1 and py in doc["prtg"]["text"]
    assert lines[-2] == "exit /b 0"
