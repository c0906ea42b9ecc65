"""Attack 16: DNS rebinding of k8s_gpu's --api-url to steal the node's service-account token.

The node configures ``--token-file`` for ``k8s_gpu`` (``serve --sensor-defaults``); a
token holder chooses ``api_url``. A name that resolves into ``--allow-url`` when it is
checked and elsewhere when the request connects would carry the bearer token to the
attacker's server. The sensor resolves once and connects to the checked address, so
the second answer is refused and the attacker's server sees nothing.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fakes.gpu_cases import TESTCASES
from fakes.kube_api import FakeKubeApi
from prtg_ai.core.context import Context
from prtg_ai.core.policy import ClientPolicy
from prtg_ai.core.runtime import run_sensor
from security.sec_support import attack, leak_check
from support import check_result

NAME = "api.rebind.test"
CLUSTER = json.loads((TESTCASES / "k8s_gpu" / "cluster.json").read_text(encoding="utf-8"))
TOKEN = "sa-token-rebinding-4711"


class EvilServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address):
        self.seen: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.seen.append(dict(self.headers))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        super().__init__(address, Handler)


@pytest.fixture
def rebinding(monkeypatch):
    """getaddrinfo for NAME answers the allowed address first, then the attacker's, then alternates."""
    answers = []
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host != NAME:
            return real(host, port, *args, **kwargs)
        addr = "127.0.0.1" if len(answers) % 2 == 0 else "127.0.0.2"
        answers.append(addr)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (addr, port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return answers


def run_through_agent_policy(tmp_path, api_port: int, token_file):
    ctx = Context(state_dir=tmp_path / "state", env={},
                  policy=ClientPolicy(paths=None, allow_urls=["127.0.0.1/32"]))
    argv = ["--node", "gpu-node-1", "--api-url", f"http://{NAME}:{api_port}", "--token-file", str(token_file),
            "--source", "none"]
    result = run_sensor("k8s_gpu", argv, ctx)
    check_result("k8s_gpu", result)
    return result


def test_a_rebinding_name_never_gets_the_token(tmp_path, rebinding):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with FakeKubeApi(CLUSTER["nodes"], CLUSTER["pods"], token=TOKEN) as kube:
        port = int(kube.url.rsplit(":", 1)[1])
        evil = EvilServer(("127.0.0.2", port))
        threading.Thread(target=evil.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        try:
            result = run_through_agent_policy(tmp_path, port, token_file)
        finally:
            evil.shutdown()
            evil.server_close()
    attack()
    assert len(rebinding) >= 2, "the attack needs a second lookup to answer differently"
    leak_check(evil.seen == [], "the token went to the rebound address")
    assert result.error and "--allow-url" in result.text and TOKEN not in result.text


def test_a_stable_name_inside_allow_url_still_works(tmp_path, monkeypatch):
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: (
        [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))] if host == NAME
        else real(host, port, *a, **k)))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with FakeKubeApi(CLUSTER["nodes"], CLUSTER["pods"], token=TOKEN) as kube:
        result = run_through_agent_policy(tmp_path, int(kube.url.rsplit(":", 1)[1]), token_file)
        seen = list(kube.requests)
    assert not result.error, result.text
    assert seen and all({k.lower(): v for k, v in headers.items()}.get("authorization") == f"Bearer {TOKEN}" for _, _, headers in seen)
