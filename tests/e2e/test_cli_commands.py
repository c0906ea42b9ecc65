"""The non-run commands a person types: list, validate, doctor, --version, --help."""

from __future__ import annotations

import json
import subprocess
import sys

from prtg_ai import __version__
from prtg_ai.core import registry
from support import cli_env


def prtg_ai(*args: str, env=None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prtg_ai.cli", *args], capture_output=True, text=True,
                          env=env, input=stdin, timeout=60)


def test_list_names_every_sensor_its_parameters_and_the_runtime_options(tmp_path):
    env = cli_env(tmp_path / "state")
    text = prtg_ai("list", env=env).stdout
    for sid in registry.sensor_ids():
        assert f"{sid}  -  " in text
        for param in registry.get(sid).params:
            assert param.option in text
    assert "every sensor" in text and "--baseline" in text
    doc = json.loads(prtg_ai("list", "--json", env=env).stdout)
    assert [s["id"] for s in doc["sensors"]] == registry.sensor_ids()
    assert [e["option"] for e in doc["every_sensor"]] == ["--baseline", "--deadline"]
    checkpoint = next(s for s in doc["sensors"] if s["id"] == "checkpoint_volume")
    assert {"option": "--path", "kind": "path", "required": True}.items() <= checkpoint["params"][0].items()


def test_validate_accepts_and_rejects(tmp_path):
    good = '{"prtg":{"result":[{"channel":"A","value":1}]}}'
    ok = prtg_ai("validate", "-", stdin=good)
    assert ok.returncode == 0 and ok.stdout.strip() == "valid"
    bad = prtg_ai("validate", "-", stdin='{"prtg":{"result":[{"channel":"A","value":0.5}]}}')
    assert bad.returncode == 1 and "needs float: 1" in bad.stderr
    path = tmp_path / "result.json"
    path.write_text('{"version": 2, "status": "ok", "message": "", "channels": [{"id": 3, "name": "A", '
                    '"type": "integer", "value": 1}]}')
    assert "must be an integer in 10" in prtg_ai("validate", str(path)).stderr


def test_doctor_reports_what_this_host_can_monitor(tmp_path):
    env = cli_env(tmp_path / "state", {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                                        "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true"})
    env.pop("AWS_ACCESS_KEY_ID", None)
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    proc = prtg_ai("doctor", "--json", env=env)
    checks = {c["check"]: c for c in json.loads(proc.stdout)}
    assert checks["State folder writable"]["ok"] and str(tmp_path / "state") in checks["State folder writable"]["detail"]
    assert checks["NVML (gpu, gpu_host)"]["ok"] is False  # no driver on this machine
    assert "driver" in checks["NVML (gpu, gpu_host)"]["detail"]
    assert checks["AWS credentials (gpu_spend)"]["ok"] is False
    assert "Traceback" not in proc.stderr


def test_version_and_help():
    assert prtg_ai("--version").stdout.strip().endswith(__version__)
    text = prtg_ai("--help").stdout
    for command in ("run", "list", "validate", "doctor", "render", "serve", "push", "install", "uninstall",
                    "accept-gpu-count"):
        assert command in text
    assert "--format" in prtg_ai("run", "--help").stdout
