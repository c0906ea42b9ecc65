"""checkpoint_volume as PRTG runs it: a new process per scan, bad input, hostile input.

Every case must exit 0 with valid PRTG JSON on stdout and no traceback anywhere.
"""

from __future__ import annotations

import json
import os

import pytest

import shutil

from support import UNPRIVILEGED, channels, cli_env, is_root, run_cli


@pytest.fixture
def env(tmp_path):
    return cli_env(tmp_path / "state")


@pytest.fixture
def ckpt(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "checkpoint-100").mkdir()
    for rank in range(4):
        (folder / "checkpoint-100" / f"__{rank}_0.distcp").write_bytes(b"\0" * 1000)
    (folder / "checkpoint-100" / ".metadata").write_bytes(b"\0" * 24)
    (folder / "README.txt").write_text("not a checkpoint")
    (folder / ".tmp-checkpoint-200").mkdir()  # a save in progress, hidden
    return folder


def error_text(doc: dict) -> str:
    assert doc["prtg"]["error"] == 1, doc
    return doc["prtg"]["text"]


def test_a_real_scan_in_a_new_process(ckpt, env):
    doc, _ = run_cli(["run", "checkpoint_volume", "--path", ckpt], env)
    ch = channels(doc)
    assert ch["Checkpoints"] == 1  # README.txt and the hidden save do not count
    assert ch["Newest Checkpoint Size"] == 4 * 1000 + 24  # a DCP folder: sum of its shard files


@pytest.mark.parametrize("args, expected", [
    ([], "Parameter --path: is required"),
    (["--path"], "Parameter --path: needs a value"),
    (["--path", "{missing}"], "does not exist on this host"),
    (["--path", "{file}"], "is a file, not a folder"),
    (["--path", "{ckpt}", "--window", "6x"], "Parameter --window: '6x' is not a duration"),
    (["--path", "{ckpt}", "--window", "5m"], "Parameter --window: '5m' is below the minimum of 1h"),
    (["--path", "{ckpt}", "--window", "-1h"], "Parameter --window"),
    (["--path", "{ckpt}", "--scan-budget", "10d"], "above the maximum"),
    (["--path", "{ckpt}", "--pattern", "a/b"], "may not contain a path separator"),
    (["--path", "{ckpt}", "--colour", "red"], "Unknown option '--colour'"),
    (["--path", "{ckpt}", "stray"], "Unexpected argument 'stray'"),
    (["--path", "{ckpt}", "--path", "{ckpt}"], "given more than once"),
])
def test_bad_input_gives_a_clear_prtg_error(args, expected, ckpt, tmp_path, env):
    (tmp_path / "afile").write_text("x")
    subs = {"{missing}": str(tmp_path / "nope"), "{file}": str(tmp_path / "afile"), "{ckpt}": str(ckpt)}
    args = [subs.get(a, a) for a in args]
    doc, _ = run_cli(["run", "checkpoint_volume", *args], env)
    assert expected in error_text(doc)


def test_unknown_sensor_and_missing_sensor(env):
    doc, _ = run_cli(["run", "gpu_melter"], env)
    assert "Unknown sensor 'gpu_melter'" in error_text(doc) and "checkpoint_volume" in error_text(doc)
    doc, _ = run_cli(["run"], env)
    assert "No sensor named" in error_text(doc)
    doc, _ = run_cli(["run", "checkpoint_volume", "--format", "xml"], env)
    assert "--format 'xml' is not one of prtg, v2, table" in error_text(doc)


@pytest.mark.parametrize("hostile", [
    "../../../../etc/passwd",
    "$(touch /tmp/prtgai-pwned)",
    "; rm -rf / #",
    "x" * 120_000,  # just under Linux's 128 KiB limit for one argument
    "\udcff\udcfe-not-utf8",
    "C:\\Program Files (x86)\\PRTG Network Monitor\\..\\..\\Windows",
])
def test_hostile_paths_are_refused_cleanly(hostile, env, tmp_path):
    doc, _ = run_cli(["run", "checkpoint_volume", "--path", hostile], env)
    text = error_text(doc)
    assert any(s in text for s in ("does not exist on this host", "at most 4096 are accepted", "is a file, not a folder"))
    assert len(text) <= 2000
    assert not os.path.exists("/tmp/prtgai-pwned")


def test_a_one_megabyte_value_is_refused_in_process(sensor_run):
    result = sensor_run("checkpoint_volume", ["--path", "x" * 1_000_000])
    assert result.error and "at most 4096 are accepted" in result.message()


@pytest.mark.skipif(not is_root() or not shutil.which("setpriv"),
                    reason="dropping the permission-bypass capabilities needs root and setpriv")
def test_unreadable_folder_names_the_problem(tmp_path, ckpt, env):
    os.chown(ckpt, 12345, 12345)
    os.chmod(ckpt, 0o700)  # another account's folder, closed to everyone else
    doc, _ = run_cli(["run", "checkpoint_volume", "--path", ckpt], env, prefix=UNPRIVILEGED)
    text = error_text(doc)
    assert f"Permission denied reading {ckpt}" in text and "Grant the account" in text


def test_python_script_advanced_json_and_environment_placeholders(ckpt, env):
    doc, _ = run_cli(["run", "checkpoint_volume",
                      json.dumps({"host": "gpu-node-1", "params": f"--path '{ckpt}' --window 2h"})], env)
    assert channels(doc)["Checkpoints"] == 1


def test_corrupt_state_file_starts_a_fresh_baseline(ckpt, env, tmp_path):
    run_cli(["run", "checkpoint_volume", "--path", ckpt], env)
    [state_file] = (tmp_path / "state").glob("checkpoint_volume-*.json")
    state_file.write_bytes(b'{"format": "prtg-ai-state", "version": 1, "samp')  # torn write
    doc, _ = run_cli(["run", "checkpoint_volume", "--path", ckpt], env)
    assert "was corrupt or truncated; set it aside and started a fresh baseline" in doc["prtg"]["text"]
    assert channels(doc)["Checkpoints"] == 1
    assert state_file.with_suffix(".corrupt").is_file()  # kept for inspection, not destroyed
    json.loads(state_file.read_text())  # and a good state file was written again


def test_table_and_v2_formats(ckpt, env):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "prtg_ai.cli", "run", "checkpoint_volume", "--path", str(ckpt),
                           "--format", "table"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0
    assert "Checkpoints" in proc.stdout and "Used Space" in proc.stdout and "max warn 95" in proc.stdout
    doc, _ = run_cli(["run", "checkpoint_volume", "--path", ckpt, "--format", "v2"], env)
    assert doc["version"] == 2 and doc["status"] == "ok"
    ids = {c["name"]: c["id"] for c in doc["channels"]}
    assert ids["Execution Time"] == 10 and ids["Free Space"] == 11
