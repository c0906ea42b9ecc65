"""Parameters from the command line, Python Script Advanced JSON and PRTG's environment placeholders."""

from __future__ import annotations

import json
from pathlib import Path, PureWindowsPath

import pytest

from prtg_ai.core.errors import ConfigError
from prtg_ai.core.params import Param, format_duration, parse_duration, resolve
from prtg_ai.core.paths import default_state_dir

DECLARED = (
    Param("host", "str", env=("prtg_host",)),
    Param("path", "path", required=True),
    Param("window", "duration", default=21600.0, minimum=3600.0),
    Param("pattern", "glob", multiple=True, default=["*"]),
    Param("count", "int", default=1, minimum=1, maximum=8),
    Param("verbose", "flag", default=False),
)


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("30m", 1800), ("6h", 21600), ("2d", 172800),
                                           ("1w", 604800), ("45", 45), ("1.5h", 5400), (" 6H ", 21600)])
def test_durations(text, seconds):
    assert parse_duration("window", text) == seconds


def test_format_duration():
    assert [format_duration(x) for x in (21600, 1800, 86400, 90, 7.5)] == ["6h", "30m", "1d", "90s", "7.5s"]


def test_cli_options_and_defaults():
    v = resolve(DECLARED, ["--path", "/d", "--window=2h", "--pattern", "a*,b*", "--pattern", "c*", "--verbose"], {})
    assert v == {"host": None, "path": Path("/d"), "window": 7200.0, "pattern": ["a*", "b*", "c*"], "count": 1,
                 "verbose": True}


def test_every_repeatable_parameter_takes_comma_lists_and_no_other_does():
    declared = (*DECLARED, Param("region", "str", multiple=True))
    values = resolve(declared, ["--path", "/d", "--region", " us-east-1, eu-west-1,", "--region", "ap-south-1",
                                "--pattern", "*.pt,*.safetensors", "--host", "a,b"], {})
    assert values["region"] == ["us-east-1", "eu-west-1", "ap-south-1"]
    assert values["pattern"] == ["*.pt", "*.safetensors"] and values["host"] == "a,b"


def test_python_script_advanced_json():
    doc = json.dumps({"host": "10.0.0.5", "linuxloginpassword": "s3cret", "params": "--path '/mnt/a b' --count 4"})
    v = resolve(DECLARED, [doc], {})
    assert v["host"] == "10.0.0.5" and v["path"] == Path("/mnt/a b") and v["count"] == 4


def test_python_script_advanced_ignores_keys_that_merely_match_a_parameter_name():
    # PRTG's own keys include "timeout" (scanning interval minus one second): never a parameter.
    declared = (*DECLARED, Param("timeout", "duration", default=10.0, maximum=50.0))
    doc = json.dumps({"host": "gpu-3", "timeout": 59, "count": 8, "window": "1s", "path": "/etc",
                      "params": "--path /data"})
    v = resolve(declared, [doc], {})
    assert v["timeout"] == 10.0 and v["count"] == 1 and v["window"] == 21600.0
    assert v["path"] == Path("/data") and v["host"] == "gpu-3"


def test_inference_psa_document_with_prtg_timeout_runs(tmp_path):
    from prtg_ai.core.context import Context
    from prtg_ai.core.runtime import run_sensor

    doc = json.dumps({"host": "127.0.0.1", "timeout": 59, "params": "--url http://127.0.0.1:9/metrics"})
    result = run_sensor("inference", [doc], Context(env={}, state_dir=tmp_path))
    assert "--timeout" not in result.message()  # PRTG's timeout key is not our parameter


def test_environment_placeholders_fill_declared_parameters_only():
    v = resolve(DECLARED, ["--path", "/d"], {"prtg_host": "gpu-17", "prtg_linuxpassword": "x"})
    assert v["host"] == "gpu-17"
    assert resolve(DECLARED, ["--path", "/d", "--host", "explicit"], {"prtg_host": "gpu-17"})["host"] == "explicit"


@pytest.mark.parametrize("argv, message", [
    ([], "Parameter --path: is required"),
    (["--path", "/d", "--count", "nine"], "Parameter --count: expected a whole number"),
    (["--path", "/d", "--count", "9"], "above the maximum of 8"),
    (["--path", "/d", "--window", "10m"], "below the minimum of 1h"),
    (["--path", "/d", "--verbose=maybe"], "expected yes or no"),
    (["--path", "/d", "--nope"], "Unknown option '--nope'"),
    (["--path", "a\x00b"], "NUL"),
    (["{broken json"], "does not parse"),
])
def test_bad_parameters_name_themselves(argv, message):
    with pytest.raises(ConfigError) as exc:
        resolve(DECLARED, argv, {})
    assert message in exc.value.message()


def test_state_dir_override_and_platform_defaults(monkeypatch):
    assert default_state_dir({"PRTG_AI_STATE_DIR": "/x/y"}) == Path("/x/y")
    monkeypatch.setattr("sys.platform", "win32")
    win = default_state_dir({"PROGRAMDATA": r"C:\ProgramData"})
    assert PureWindowsPath(str(win).replace("/", "\\")) == PureWindowsPath(r"C:\ProgramData\prtg-ai\state")
