"""Attack 15: the low-severity findings, one test each, with real parts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prtg_ai.agent.push import Pusher, parse_targets
from prtg_ai.core.context import Context
from prtg_ai.core.runtime import run_sensor
from security.sec_support import Recorder, attack, leak_check, ok, text_of
from support import UNPRIVILEGED, check_result, cli_env, is_root, run_cli

PAGE = (Path(__file__).resolve().parents[1] / "testcases" / "inference" / "vllm" / "metrics.1.prom").read_text()
HTML_MARKER = "Internal-Proxy-Page-7731"


@pytest.fixture
def ckpt(tmp_path) -> Path:
    folder = tmp_path / "ckpt"
    (folder / "checkpoint-1").mkdir(parents=True)
    return folder


@pytest.mark.skipif(is_root() and not shutil.which("setpriv"), reason="root needs setpriv to feel permissions")
def test_15a_unwritable_state_folder_is_told_to_prtg(tmp_path, ckpt):
    state = tmp_path / "state"
    env = cli_env(state)
    prefix = UNPRIVILEGED if is_root() else None
    run_cli(["run", "checkpoint_volume", "--path", ckpt], env, prefix=prefix)  # lock and state exist now
    os.chmod(state, 0o555)
    try:
        attack()
        doc, _ = run_cli(["run", "checkpoint_volume", "--path", ckpt], env, prefix=prefix)
    finally:
        os.chmod(state, 0o755)
    assert "error" not in doc["prtg"]
    leak_check("Could not save state" in doc["prtg"]["text"], f"the failed save was not told: {doc}")


def test_15b_closed_stdout_gives_no_traceback(tmp_path, ckpt):
    attack()
    command = f'"{sys.executable}" -m prtg_ai.cli run checkpoint_volume --path "{ckpt}" >&-'
    proc = subprocess.run(["bash", "-c", command],
                          capture_output=True, text=True, env=cli_env(tmp_path / "state"), timeout=60)
    leak_check(proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr)


def test_15c_table_format_is_plain_text(agent, ckpt):
    a = agent()
    attack()
    answer = a.get("/sensors/checkpoint_volume", {"path": str(ckpt), "format": "table"})
    leak_check(answer.headers["Content-Type"].startswith("text/plain"), answer.headers["Content-Type"])
    assert "Free Space" in answer.text or "Checkpoints" in answer.text


def test_15d_nul_in_a_path_is_a_parameter_error(agent, ckpt):
    a = agent(allowed_paths=[str(ckpt.parent)])
    attack()
    doc, _ = a.sensor("checkpoint_volume", {"path": f"{ckpt}\x00/etc"})
    leak_check("Internal error" not in text_of(doc) and "path" in text_of(doc), text_of(doc))
    assert ok(a.sensor("checkpoint_volume", {"path": str(ckpt)})[0])


def test_15e_health_honours_allow_and_hides_version(agent):
    import socket

    a = agent(allow=["127.0.0.1/32"])
    attack(2)
    anonymous = a.get("/health", token=False).json()
    leak_check(anonymous == {"status": "ok"}, f"/health told an unauthenticated client {anonymous}")
    assert "version" in a.get("/health").json()  # an authenticated client may see it
    s = socket.socket()
    s.bind(("127.0.0.2", 0))
    s.connect(("127.0.0.1", a.port))
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    try:
        reply = s.recv(200)
    except OSError:
        reply = b""
    s.close()
    leak_check(b"ok" not in reply, f"/health answered a client outside --allow: {reply!r}")


def test_15f_credentials_in_urls_are_not_echoed(agent):
    with Recorder(lambda p: (200, {}, PAGE.encode())) as server:
        a = agent(sensors=["inference"])
        for params in ({"url": server.url, "metrics_url": server.url.replace("//", "//admin:pa55word@") + "/metrics"},
                       {"url": server.url.replace("//", "//admin:pa55word@")}):
            attack()
            doc, raw = a.sensor("inference", params)
            leak_check("pa55word" not in raw and "admin:" not in raw, raw)
            assert not ok(doc)
        leak_check(all("pa55word" not in json.dumps(h) for _, _, h in server.seen), "credentials were sent")


def test_15g_remote_error_bodies_stay_out_of_text_and_logs(tmp_path):
    html = f"<html><body><h1>{HTML_MARKER}</h1>internal hostnames here</body></html>".encode()
    with Recorder(lambda p: (500, {"Content-Type": "text/html"}, html)) as broken:
        env = {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "x" * 40,
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": broken.url, "AWS_EC2_METADATA_DISABLED": "true",
               "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_MAX_ATTEMPTS": "1",
               "PRTG_AI_LOG_LEVEL": "INFO"}
        attack()
        doc, proc = run_cli(["run", "gpu_spend"], cli_env(tmp_path / "state", env), timeout=90)
        leak_check(HTML_MARKER not in json.dumps(doc), "an AWS error page reached PRTG")
        logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "state").rglob("*.log*"))
        leak_check(HTML_MARKER not in logs and HTML_MARKER not in proc.stderr, "an AWS error page reached the log")
        attack()
        pusher = Pusher(broken.url, parse_targets(["checkpoint_volume=push-token-1234"]), ctx=Context(
            state_dir=tmp_path / "push", env={}))
        delivery = pusher.post(pusher.targets[0], '{"prtg":{"text":"x"}}')
        leak_check(HTML_MARKER not in str(delivery), f"a push reply body was kept: {delivery}")


def test_15h_timeout_bounds_the_whole_scan(tmp_path):
    def slow(path: str):
        time.sleep(1.2)
        if path == "/metrics":
            return 200, {}, PAGE.encode()
        if path == "/v1/models":
            return 200, {}, b'{"data": [{"id": "m"}]}'
        return 404, {}, b"{}"

    with Recorder(slow) as server:
        attack()
        started = time.monotonic()
        result = run_sensor("inference", ["--url", server.url, "--probe-prompt", "hi", "--timeout", "2s"],
                            Context(state_dir=tmp_path / "state", env={}))
        took = time.monotonic() - started
        check_result("inference", result)
        leak_check(took < 3.0, f"--timeout 2s, three 1.2 s requests: the scan took {took:.1f} s")


def test_15i_install_refuses_a_folder_that_is_not_prtg(tmp_path):
    for value, why in (("", "empty"), ("/", "does not look like a PRTG folder")):
        attack()
        proc = subprocess.run([sys.executable, "-m", "prtg_ai.cli", "install", "--prtg-dir", value, "--role", "core",
                               "--dry-run"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
        leak_check(proc.returncode != 0 and why in proc.stderr, f"--prtg-dir {value!r}: {proc.stderr}")
    assert list(tmp_path.iterdir()) == []
    prtg = tmp_path / "PRTG"
    (prtg / "lookups" / "custom").mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "prtg_ai.cli", "install", "--prtg-dir", str(prtg), "--role", "core",
                           "--dry-run"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr  # a real PRTG tree is fine
