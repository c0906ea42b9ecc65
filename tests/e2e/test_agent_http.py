"""The agent end to end: the real waitress server on 127.0.0.1, real HTTP clients.

The served sensor is ``checkpoint_volume`` on a temporary folder. Every body PRTG
would read is checked with the validator of PRTG's rules.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit
from pathlib import Path

import pytest
import requests

from prtg_ai.agent.app import AgentApp
from prtg_ai.agent.auth import Authenticator
from prtg_ai.agent.server import AgentServer, tls_context
from prtg_ai.prtg.validate import validate
from support import check_channels, cli_env, stop_with_sigterm

TOKEN = "agent-token-0123456789"
USER, PASSWORD = "prtg", "basic-pass-98765"


class Running:
    """A server running in a thread; ``url(path)`` builds its URLs."""

    def __init__(self, server: AgentServer, app: AgentApp, folder: Path):
        self.server, self.app, self.folder = server, app, folder
        self.thread = threading.Thread(target=server.run, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"{self.server.scheme}://127.0.0.1:{self.server.port}{path}"

    def sensor_url(self, **extra) -> str:
        query = "&".join([f"path={self.folder}"] + [f"{k}={v}" for k, v in extra.items()])
        return self.url(f"/sensors/checkpoint_volume?{query}")

    def close(self) -> None:
        self.server.stop()
        self.thread.join(10)
        assert not self.thread.is_alive(), "server did not stop within 10 s"


@pytest.fixture
def agent(tmp_path):
    """Start an agent (token + basic auth) on a free loopback port; yield a Running."""
    servers = []

    def _start(**limits) -> Running:
        folder = tmp_path / "ckpt"
        folder.mkdir(exist_ok=True)
        (folder / "checkpoint-100").mkdir(exist_ok=True)
        (folder / "checkpoint-100" / "model.safetensors").write_bytes(b"x" * 4096)
        auth = Authenticator(tokens=[TOKEN], basic=[(USER, PASSWORD)])
        app = AgentApp(auth, tmp_path / "state", env={}, cache_ttl=limits.pop("cache_ttl", 5.0))
        server = AgentServer(app, "127.0.0.1", 0, **limits)
        assert server.scheme == ("https" if limits.get("ssl_context") else "http")
        running = Running(server, app, folder)
        servers.append(running)
        return running

    yield _start
    for running in servers:
        running.close()


def prtg_doc(response: requests.Response) -> dict:
    """The PRTG answer of a /sensors/<id> request, checked as valid and, channel by channel, as catalogued."""
    assert response.headers["Content-Type"] == "application/json"
    assert validate(response.text) == [], response.text
    doc = json.loads(response.text)
    path = urlsplit(response.url).path
    if path.startswith("/sensors/") and "prtg" in doc:
        check_channels(path.rsplit("/", 1)[-1], doc)
    return doc


def test_auth_is_required_and_enforced(agent):
    run = agent()
    missing = requests.get(run.sensor_url(), timeout=10)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Basic")
    assert prtg_doc(missing)["prtg"]["error"] == 1
    for bad in (requests.get(run.sensor_url(token="wrong-token-0000"), timeout=10),
                requests.get(run.sensor_url(), headers={"Authorization": "Bearer " + TOKEN[:-1]}, timeout=10),
                requests.get(run.sensor_url(), auth=(USER, PASSWORD + "x"), timeout=10),
                requests.get(run.sensor_url(), auth=("admin", PASSWORD), timeout=10)):
        assert bad.status_code == 401
        doc = prtg_doc(bad)
        assert "failed" in doc["prtg"]["text"]
        assert TOKEN not in bad.text and PASSWORD not in bad.text
    for good in (requests.get(run.sensor_url(token=TOKEN), timeout=10),
                 requests.get(run.sensor_url(), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10),
                 requests.get(run.sensor_url(), auth=(USER, PASSWORD), timeout=10)):
        assert good.status_code == 200
        doc = prtg_doc(good)
        assert "error" not in doc["prtg"], good.text
        names = {ch["channel"] for ch in doc["prtg"]["result"]}
        assert {"Free Space", "Checkpoints"} <= names
        assert next(ch["value"] for ch in doc["prtg"]["result"] if ch["channel"] == "Checkpoints") == 1
    # /health answers without credentials (liveness probes carry none) and says nothing more.
    health = requests.get(run.url("/health"), timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_unknown_sensor_bad_parameter_and_traversal(agent):
    run = agent()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    unknown = requests.get(run.url("/sensors/no_such_sensor"), headers=auth, timeout=10)
    assert unknown.status_code == 404
    assert "checkpoint_volume" in prtg_doc(unknown)["prtg"]["text"]
    for path in ("/sensors/..%2f..%2fetc%2fpasswd", "/sensors/checkpoint_volume/../../x",
                 "/sensors/CHECKPOINT_VOLUME", "/etc/passwd"):
        answer = requests.get(run.url(path), headers=auth, timeout=10)
        assert answer.status_code == 404, path
        assert prtg_doc(answer)["prtg"]["error"] == 1
    bad_value = requests.get(run.sensor_url(window="soon"), headers=auth, timeout=10)
    assert bad_value.status_code == 200
    assert prtg_doc(bad_value)["prtg"]["text"].startswith("Parameter --window:")
    unknown_param = requests.get(run.sensor_url(colour="red"), headers=auth, timeout=10)
    assert unknown_param.status_code == 200
    text = prtg_doc(unknown_param)["prtg"]["text"]
    assert "Unknown parameter 'colour'" in text and "stall_after" in text
    missing = requests.get(run.url("/sensors/checkpoint_volume"), headers=auth, timeout=10)
    # A required parameter neither in the URL nor a node setting: the exact --sensor-defaults line to add.
    assert prtg_doc(missing)["prtg"]["text"].startswith("Sensor checkpoint_volume needs --path")
    assert 'Add --sensor-defaults checkpoint_volume="--path DIR"' in prtg_doc(missing)["prtg"]["text"]
    post = requests.post(run.sensor_url(), headers=auth, timeout=10)
    assert post.status_code == 405 and post.headers["Allow"] == "GET, HEAD"
    v2 = requests.get(run.sensor_url(format="v2"), headers=auth, timeout=10)
    assert validate(v2.text) == [] and v2.json()["version"] == 2


def test_index_lists_sensors_without_secrets(agent):
    run = agent()
    page = requests.get(run.url("/"), auth=(USER, PASSWORD), timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert f"http://127.0.0.1:{run.server.port}/sensors/checkpoint_volume?path=DIR&amp;token=TOKEN" in page.text
    assert TOKEN not in page.text and PASSWORD not in page.text


def test_keep_alive_and_bounded_request_size(agent):
    run = agent()
    with socket.create_connection(("127.0.0.1", run.server.port), timeout=10) as sock:
        request = (f"GET /sensors/checkpoint_volume?path={run.folder}&token={TOKEN} HTTP/1.1\r\n"
                   f"Host: x\r\n\r\n").encode()
        answers = []
        for _ in range(3):  # three requests, one connection
            sock.sendall(request)
            answers.append(_read_response(sock))
    assert [status for status, _ in answers] == [200, 200, 200]
    assert all(validate(body) == [] for _, body in answers)
    huge = requests.get(run.sensor_url(token=TOKEN), headers={"X-Pad": "a" * 20_000}, timeout=10)
    assert huge.status_code == 431
    body = requests.get(run.sensor_url(token=TOKEN), data=b"x" * 4096, timeout=10)
    assert body.status_code == 413


def _read_response(sock: socket.socket) -> tuple[int, str]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split()[1]), rest[:length].decode()


def test_200_concurrent_clients_all_get_valid_json(agent):
    run = agent(threads=8)
    url = run.sensor_url(token=TOKEN)
    start = threading.Barrier(200, timeout=30)
    results: list = [None] * 200

    def client(i: int) -> None:
        start.wait()
        t0 = time.perf_counter()
        try:
            answer = requests.get(url, timeout=30)
            results[i] = (answer.status_code, validate(answer.text), "error" in answer.json()["prtg"],
                          time.perf_counter() - t0)
        except Exception as exc:  # recorded, asserted below
            results[i] = (repr(exc), None, None, None)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(200)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    wall = time.perf_counter() - t0
    assert [r[0] for r in results] == [200] * 200, [r for r in results if r[0] != 200][:3]
    assert all(r[1] == [] and r[2] is False for r in results)
    latencies = sorted(r[3] for r in results)
    print(f"\n200 concurrent clients: wall {wall:.2f}s, p50 {latencies[100] * 1000:.0f} ms, "
          f"max {latencies[-1] * 1000:.0f} ms, sensor runs {run.app.cache.computed}")
    # One shared run per TTL window, not 200 sweeps.
    assert run.app.cache.computed <= 1 + int(wall / run.app.cache.ttl) + 1
    assert run.app.cache.shared + run.app.cache.computed >= 150


def test_500_stalled_connections_do_not_block_a_poll(agent):
    # The event loop itself: the per-client cap and request deadline (tests/security) are lifted here.
    run = agent(channel_timeout=60, per_client_limit=1000, header_timeout=120)
    stalled = []
    try:
        for _ in range(500):
            sock = socket.create_connection(("127.0.0.1", run.server.port), timeout=10)
            sock.sendall(b"GET /sensors/checkpoint_volume?path=/x HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            stalled.append(sock)
        deadline = time.monotonic() + 10
        while len(run.server.channels) < 500 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(run.server.channels) >= 500, "the server did not accept the stalled clients"
        latencies = []
        for _ in range(5):
            t0 = time.perf_counter()
            answer = requests.get(run.sensor_url(token=TOKEN), timeout=10)
            latencies.append(time.perf_counter() - t0)
            assert answer.status_code == 200 and "error" not in prtg_doc(answer)["prtg"]
        print(f"\npoll latency with 500 stalled connections: max {max(latencies) * 1000:.0f} ms")
        assert max(latencies) < 2.0
        open_ = sum(1 for s in stalled if _still_open(s))
        assert open_ == 500  # they were really there, holding sockets, during the polls
    finally:
        for sock in stalled:
            sock.close()


def _still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def test_stalled_connections_are_closed_after_channel_timeout(agent):
    run = agent(channel_timeout=1, cleanup_interval=1)
    socks = [socket.create_connection(("127.0.0.1", run.server.port), timeout=10) for _ in range(3)]
    try:
        for sock in socks:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost")
        t0 = time.monotonic()
        for sock in socks:
            sock.settimeout(8)
            assert sock.recv(1024) == b""  # closed by the server, not by our timeout
        assert time.monotonic() - t0 < 6.0
    finally:
        for sock in socks:
            sock.close()


def _start_serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, int]:
    env = cli_env(tmp_path / "state", {"PRTG_AI_LOG_LEVEL": "INFO"})
    proc = subprocess.Popen([sys.executable, "-m", "prtg_ai.cli", "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()  # blocks until the agent announces itself (or exits)
    match = re.search(r"listening on http://127\.0\.0\.1:(\d+)/", line)
    if match is None:
        proc.kill()
        raise AssertionError(f"no listening line: {line!r} {proc.stderr.read()}")
    return proc, int(match.group(1))


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_serve_subprocess_exits_gracefully_on_sigterm(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    proc, port = _start_serve(tmp_path, "--listen", "127.0.0.1:0", "--token", TOKEN)
    try:
        answer = requests.get(f"http://127.0.0.1:{port}/sensors/checkpoint_volume?path={folder}&token={TOKEN}",
                              timeout=10)
        assert answer.status_code == 200 and validate(answer.text) == []
        denied = requests.get(f"http://127.0.0.1:{port}/sensors/checkpoint_volume?token=bad-{TOKEN}", timeout=10)
        assert denied.status_code == 401
        idle = socket.create_connection(("127.0.0.1", port), timeout=10)  # an idle keep-alive client
        out, err, took = stop_with_sigterm(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert took < 8.0
    assert "prtg-ai agent stopped" in out
    assert "Traceback" not in err
    assert TOKEN not in out + err  # the token was in query strings; it is never logged
    assert "GET /sensors/checkpoint_volume -> 200" in err  # the access log names the path only
    idle.settimeout(5)
    assert idle.recv(1) == b""
    idle.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_serve_refuses_all_interfaces_without_auth(tmp_path):
    env = cli_env(tmp_path / "state")
    for listen in ("0.0.0.0:0", ":0", "[::]:0"):
        proc = subprocess.run([sys.executable, "-m", "prtg_ai.cli", "serve", "--listen", listen],
                              capture_output=True, text=True, env=env, timeout=30)
        assert proc.returncode == 1, listen
        assert "Refusing to listen" in proc.stderr
    short = subprocess.run([sys.executable, "-m", "prtg_ai.cli", "serve", "--listen", "127.0.0.1:0",
                            "--token", "abc"], capture_output=True, text=True, env=env, timeout=30)
    assert short.returncode == 1 and "at least 8 characters" in short.stderr


def test_tls_serving(agent, certificate):
    cert, key = certificate
    run = agent(ssl_context=tls_context(str(cert), str(key)))
    with requests.Session() as session:  # keep-alive over TLS
        answers = [session.get(run.sensor_url(token=TOKEN), verify=str(cert), timeout=10) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all("error" not in prtg_doc(a)["prtg"] for a in answers)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(run.sensor_url(token=TOKEN), timeout=10)  # default trust store: self-signed refused
    # Plain HTTP on the TLS port is dropped, and clients stalled before or inside the handshake
    # do not block a poll.
    plain = socket.create_connection(("127.0.0.1", run.server.port), timeout=10)
    plain.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert plain.recv(1024) == b""
    except ConnectionResetError:
        pass  # closed with unread bytes pending: the kernel answers with a reset; also a drop
    plain.close()
    stalled = [socket.create_connection(("127.0.0.1", run.server.port), timeout=10) for _ in range(50)]
    for sock in stalled[:25]:
        sock.sendall(b"\x16\x03\x01\x00\xff")  # the start of a ClientHello, never finished
    try:
        t0 = time.perf_counter()
        answer = requests.get(run.sensor_url(token=TOKEN), verify=str(cert), timeout=10)
        assert answer.status_code == 200 and validate(answer.text) == []
        assert time.perf_counter() - t0 < 2.0
    finally:
        for sock in stalled:
            sock.close()
    # 50 concurrent TLS clients all get valid JSON.
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        requests.get(run.sensor_url(token=TOKEN), verify=str(cert), timeout=30))) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 50 and all(r.status_code == 200 and validate(r.text) == [] for r in results)
