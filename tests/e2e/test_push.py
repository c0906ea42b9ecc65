"""``prtg-ai push`` against a local HTTP server that answers as PRTG's push port does."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from prtg_ai.agent.push import PushConfigError, Pusher, backoff_delay, check_probe_url, parse_targets
from prtg_ai.core.context import Context
from prtg_ai.prtg.validate import validate
from support import FakeClock, cli_env, stop_with_sigterm

TOKEN = "PUSH-TOKEN-0A1B2C3D"


class FakeProbe:
    """PRTG's push port: records each request; answers with scripted statuses, then 200 Ok."""

    def __init__(self, statuses=(), matching: str = "1", tls: ssl.SSLContext | None = None):
        self.requests: list[dict] = []
        self.statuses = list(statuses)
        self.matching = matching
        self.got = threading.Event()
        probe = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                probe.requests.append({"path": self.path, "type": self.headers.get("Content-Type"), "body": body})
                status = probe.statuses.pop(0) if probe.statuses else 200
                reply = (json.dumps({"status": "Ok", "Matching Sensors": probe.matching}) if status == 200
                         else "Internal Server Error").encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
                probe.got.set()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def probe():
    made = []

    def _make(**kwargs) -> FakeProbe:
        made.append(FakeProbe(**kwargs))
        return made[-1]

    yield _make
    for p in made:
        p.close()


@pytest.fixture
def folder(tmp_path) -> Path:
    f = tmp_path / "ckpt"
    (f / "checkpoint-7").mkdir(parents=True)
    return f


def make_pusher(url, folder, tmp_path, **kwargs) -> Pusher:
    targets = parse_targets([f"checkpoint_volume={TOKEN}"], [f'checkpoint_volume="--path" "{folder}"'])
    ctx = Context(state_dir=tmp_path / "state", env={})
    return Pusher(url, targets, kwargs.pop("interval", 60.0), ctx=ctx, **kwargs)


def test_push_posts_valid_prtg_json_to_the_token_url(probe, folder, tmp_path, caplog):
    caplog.set_level("INFO", logger="prtg_ai")
    p = probe()
    assert make_pusher(p.url, folder, tmp_path).run(once=True) == 0
    assert len(p.requests) == 1
    req = p.requests[0]
    assert req["path"] == f"/{TOKEN}" and req["type"] == "application/json"
    assert validate(req["body"]) == []
    doc = json.loads(req["body"])
    assert "error" not in doc["prtg"], doc
    assert {ch["channel"]: ch["value"] for ch in doc["prtg"]["result"]}["Checkpoints"] == 1
    assert "Pushed checkpoint_volume: status 'Ok', matching sensors 1" in caplog.text
    assert TOKEN not in caplog.text


def test_backoff_on_500s_with_injected_sleep(probe, folder, tmp_path):
    p = probe(statuses=[500, 503, 500])
    clock = FakeClock(1000.0)
    sleeps: list[float] = []

    def sleep(seconds: float) -> bool:
        sleeps.append(round(seconds, 6))
        clock.advance(seconds)
        return False

    pusher = make_pusher(p.url, folder, tmp_path, sleep=sleep, clock=clock, rand=lambda: 0.5)
    assert pusher.run(max_pushes=6) == 0
    assert len(p.requests) == 6  # 3 failures, then 3 regular pushes
    # 1 s * 2**(n-1), jitter factor 0.75 (rand 0.5): 0.75, 1.5, 3.0; then the regular 60 s grid,
    # unshifted by the retries: the 1st success lands at t+5.25, the next slot is t+60.
    assert sleeps == [0.75, 1.5, 3.0, 54.75, 60.0]
    assert all(validate(r["body"]) == [] for r in p.requests)


def test_backoff_delay_bounds():
    assert [backoff_delay(n, cap=60, rand=lambda: 0.0) for n in (1, 2, 3, 7, 8, 50)] == [0.5, 1, 2, 30, 30, 30]
    assert [backoff_delay(n, cap=60, rand=lambda: 0.999999) for n in (1, 6, 7)] == pytest.approx([1, 32, 60], 1e-5)
    delays = [backoff_delay(4, cap=60) for _ in range(200)]
    assert min(delays) >= 4 and max(delays) <= 8 and len(set(delays)) > 100  # jittered


def test_matching_sensors_zero_warns(probe, folder, tmp_path, caplog):
    p = probe(matching="0")
    assert make_pusher(p.url, folder, tmp_path).run(once=True) == 0
    assert "no sensor with its token (Matching Sensors: 0)" in caplog.text
    assert TOKEN not in caplog.text


def test_unreachable_probe_gives_up_once_and_never_logs_the_token(folder, tmp_path, caplog):
    sleeps = []
    pusher = make_pusher("http://127.0.0.1:9", folder, tmp_path, sleep=lambda s: sleeps.append(s) or False,
                         timeout=2)
    assert pusher.run(once=True, max_attempts=3) == 1
    assert len(sleeps) == 2
    assert caplog.text.count("Push of checkpoint_volume failed") == 3
    assert TOKEN not in caplog.text


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
@pytest.mark.filterwarnings("ignore:Unverified HTTPS request")
def test_tls_is_verified_by_default(probe, folder, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=30)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    p = probe(tls=tls)
    no_retry = {"sleep": lambda s: False}
    assert make_pusher(p.url, folder, tmp_path, **no_retry).run(once=True, max_attempts=1) == 1
    assert p.requests == []  # the self-signed certificate was refused before any data left
    assert make_pusher(p.url, folder, tmp_path, verify=str(cert)).run(once=True) == 0
    assert make_pusher(p.url, folder, tmp_path, verify=False).run(once=True) == 0
    assert len(p.requests) == 2 and all(validate(r["body"]) == [] for r in p.requests)


def test_config_errors():
    with pytest.raises(PushConfigError, match="unknown sensor 'nope'"):
        parse_targets(["nope=abc"])
    with pytest.raises(PushConfigError, match="given twice"):
        parse_targets(["checkpoint_volume=a", "checkpoint_volume=b"])
    with pytest.raises(PushConfigError, match="--sensor-args"):
        parse_targets(["checkpoint_volume=a"], ["gpu=--x 1"])
    with pytest.raises(PushConfigError):
        parse_targets(["checkpoint_volume"])
    two = parse_targets(["checkpoint_volume:a=t1", "checkpoint_volume:b=t2"],
                        ["checkpoint_volume:a=--path /a", "checkpoint_volume:b=--path '/b c'"])
    assert [(t.key, t.sensor_id, t.argv, t.token) for t in two] == [
        ("checkpoint_volume:a", "checkpoint_volume", ["--path", "/a"], "t1"),
        ("checkpoint_volume:b", "checkpoint_volume", ["--path", "/b c"], "t2")]
    assert check_probe_url("https://probe:5051/") == "https://probe:5051"
    for bad in ("probe:5050", "ftp://probe", "http://probe:5050/?x=1", "http://u:p@probe:5050"):
        with pytest.raises(PushConfigError):
            check_probe_url(bad)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_push_subprocess_exits_cleanly_on_sigterm(probe, folder, tmp_path):
    p = probe()
    env = cli_env(tmp_path / "state", {"PRTG_AI_LOG_LEVEL": "INFO"})
    proc = subprocess.Popen([sys.executable, "-m", "prtg_ai.cli", "push", "--probe", p.url,
                             "--token", f"checkpoint_volume={TOKEN}",
                             "--sensor-args", f"checkpoint_volume=--path {folder}", "--interval", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert p.got.wait(30), "no push arrived"
        time.sleep(0.2)  # now sleeping until the next interval
        out, err, took = stop_with_sigterm(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert took < 5.0
    assert len(p.requests) == 1 and validate(p.requests[0]["body"]) == []
    assert "Pushed checkpoint_volume" in err and "stopped by a signal" in err
    assert TOKEN not in out + err and "Traceback" not in err


def test_push_cli_once_and_bad_options(probe, folder, tmp_path):
    p = probe()
    env = cli_env(tmp_path / "state")
    base = [sys.executable, "-m", "prtg_ai.cli", "push", "--probe", p.url]
    ok = subprocess.run(base + ["--token", f"checkpoint_volume={TOKEN}", "--sensor-args",
                                f"checkpoint_volume=--path {folder}", "--once"],
                        capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert len(p.requests) == 1 and validate(p.requests[0]["body"]) == []
    bad = subprocess.run(base + ["--token", f"no_such={TOKEN}"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 1 and "unknown sensor 'no_such'" in bad.stderr and TOKEN not in bad.stderr
    # Tokens from the environment (a Kubernetes Secret) work the same way.
    env_ok = subprocess.run(base + ["--sensor-args", f"checkpoint_volume=--path {folder}", "--once"],
                            capture_output=True, text=True, timeout=60,
                            env={**env, "PRTG_AI_PUSH_TOKENS": f"checkpoint_volume={TOKEN}"})
    assert env_ok.returncode == 0, env_ok.stderr
    assert [r["path"] for r in p.requests] == [f"/{TOKEN}", f"/{TOKEN}"]
