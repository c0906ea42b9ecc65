"""Every installed wrapper, executed: .sh with bash, .py with the current interpreter standing
in for PRTG's Python, .cmd by its exact command line (and that line run on Linux)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from prtg_ai.prtg.validate import validate
from prtg_ai_installer.cli import install
from support import cli_env

PY = os.path.abspath(sys.executable)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("wrappers")
    prtg, ssh = base / "PRTG Network Monitor", base / "var" / "prtg"
    prtg.mkdir()
    ssh.mkdir(parents=True)
    for args in (["--prtg-dir", prtg, "--role", "probe"], ["--prtg-dir", ssh, "--role", "ssh-target"]):
        result = CliRunner().invoke(install, [*map(str, args), "--python", PY], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return prtg, ssh


@pytest.fixture
def volume(tmp_path) -> Path:
    folder = tmp_path / "ckpt dir"
    (folder / "checkpoint-100").mkdir(parents=True)
    (folder / "checkpoint-100" / "model.safetensors").write_bytes(b"x" * 4096)
    return folder


def check_prtg_json(stdout: str) -> dict:
    assert validate(stdout) == [], stdout
    doc = json.loads(stdout)
    assert "error" not in doc["prtg"], doc
    return doc


def test_sh_wrapper_runs_with_bash_and_prints_valid_prtg_json(trees, volume, tmp_path):
    _, ssh = trees
    script = ssh / "scriptsxml" / "prtgai_checkpoint_volume.sh"
    for runner in (["bash"], []):  # through bash, and as PRTG's SSH does: the executable itself
        proc = subprocess.run([*runner, str(script), "--path", str(volume)], capture_output=True, text=True,
                              env=cli_env(tmp_path / "state"), timeout=60)
        assert proc.returncode == 0, proc.stderr
        doc = check_prtg_json(proc.stdout)
        assert "Free Space" in {c["channel"] for c in doc["prtg"]["result"]}


def test_every_sh_wrapper_answers_prtg_json(trees, tmp_path):
    _, ssh = trees
    for script in sorted((ssh / "scriptsxml").glob("*.sh")):
        proc = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                              env=cli_env(tmp_path / "state"), timeout=60)
        assert proc.returncode == 0 and validate(proc.stdout) == [], (script.name, proc.stdout, proc.stderr)


def test_python_script_advanced_wrapper_takes_prtgs_json_in_argv1(trees, volume, tmp_path):
    prtg, _ = trees
    script = prtg / "Custom Sensors" / "python" / "prtgai_checkpoint_volume.py"
    document = json.dumps({"host": "gpu-node-1", "params": f"--path {shlex.quote(str(volume))}",
                           "linuxloginpassword": "hunter2"})
    proc = subprocess.run([sys.executable, str(script), document], capture_output=True, text=True,
                          env=cli_env(tmp_path / "state"), timeout=60, cwd=script.parent)
    assert proc.returncode == 0, proc.stderr
    doc = check_prtg_json(proc.stdout)
    assert "Free Space" in {c["channel"] for c in doc["prtg"]["result"]}
    assert "hunter2" not in proc.stdout + proc.stderr


def test_python_wrapper_reports_a_missing_interpreter_as_prtg_error(trees, tmp_path):
    prtg, _ = trees
    source = (prtg / "Custom Sensors" / "python" / "prtgai_gpu.py").read_text()
    broken = tmp_path / "broken.py"
    broken.write_text(source.replace(repr(PY), repr(str(tmp_path / "gone" / "python"))))
    proc = subprocess.run([sys.executable, str(broken), "{}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["prtg"]["error"] == 1 and "could not start" in doc["prtg"]["text"]
    assert validate(proc.stdout) == []


def test_script_v2_wrapper_prints_v2_json(trees, volume, tmp_path):
    prtg, _ = trees
    script = prtg / "Custom Sensors" / "scripts" / "prtgai_checkpoint_volume.py"
    for argv, stdin in (([ "--path", str(volume)], None), ([], f"--path {shlex.quote(str(volume))}")):
        proc = subprocess.run([sys.executable, "-E", str(script), *argv], input=stdin or "", capture_output=True,
                              text=True, env=cli_env(tmp_path / "state"), timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert validate(proc.stdout) == [], proc.stdout
        doc = json.loads(proc.stdout)
        assert doc["version"] == 2 and doc["status"] != "error", doc
        assert "Free Space" in {c["name"] for c in doc["channels"]}


def test_cmd_wrapper_command_line_is_exact_and_runs(trees, volume, tmp_path):
    prtg, _ = trees
    for script in sorted((prtg / "Custom Sensors" / "EXEXML").glob("prtgai_*.cmd")):
        sensor = script.stem[len("prtgai_"):]
        data = script.read_bytes()
        assert data.endswith(b"\r\n") and data.count(b"\n") == data.count(b"\r\n")
        assert f'"{PY}" -m prtg_ai.cli run {sensor} %*' in data.decode().split("\r\n")
    # The same command line, with %* standing for PRTG's "Parameters" field, run here.
    lines = (prtg / "Custom Sensors" / "EXEXML" / "prtgai_checkpoint_volume.cmd").read_bytes().decode().split("\r\n")
    line = next(x for x in lines if x.endswith(" %*") and x.startswith('"'))
    exe, rest = line[1:].split('" ', 1)
    assert rest == "-m prtg_ai.cli run checkpoint_volume %*"
    env = cli_env(tmp_path / "state", {"prtg_host": "gpu-node-1"})  # placeholders arrive as environment
    proc = subprocess.run([exe, *rest.replace("%*", "").split(), "--path", str(volume)], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    check_prtg_json(proc.stdout)


def _install_ssh(tmp_path: Path, python: str) -> Path:
    ssh = tmp_path / "var" / "prtg"
    ssh.mkdir(parents=True)
    result = CliRunner().invoke(install, ["--prtg-dir", str(ssh), "--role", "ssh-target", "--python", python],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return ssh / "scriptsxml" / "prtgai_gpu.sh"


def test_sh_wrapper_with_a_missing_interpreter_prints_prtg_error_json_and_exits_0(tmp_path):
    gone = str(tmp_path / "removed venv" / "bin" / "python")
    script = _install_ssh(tmp_path, gone)
    for runner in (["sh"], []):
        proc = subprocess.run([*runner, str(script), "--gpu", "0"], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        assert validate(proc.stdout) == [], proc.stdout
        doc = json.loads(proc.stdout)
        assert doc["prtg"]["error"] == 1 and gone in doc["prtg"]["text"] and "missing" in doc["prtg"]["text"]


def test_sh_wrapper_with_an_interpreter_lacking_the_pack_prints_prtg_error_json(tmp_path):
    # A Python that runs but has no prtg_ai (the venv was rebuilt without the pack): -I ignores PYTHONPATH.
    fake = tmp_path / "python-without-pack"
    fake.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -I -S \"$@\"\n")
    fake.chmod(0o755)
    script = _install_ssh(tmp_path, str(fake))
    proc = subprocess.run([str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["prtg"]["error"] == 1 and "no PRTG result" in doc["prtg"]["text"], doc
