"""One central agent covers a cluster's GPU nodes: the real agent on 127.0.0.1 serving ``gpu_host``
and ``gpu`` from two nodes' dcgm-exporter pages (real captures, each on its own loopback
server) and ``k8s_gpu`` from the fake API server, to real HTTP clients, as PRTG's HTTP Data
Advanced sensors would poll it with the "Kubernetes GPU node" template's URLs.
"""

from __future__ import annotations

import json
import threading
from urllib.parse import quote

import pytest
import requests

from fakes.gpu_cases import TESTCASES
from fakes.inference_server import FakeModelServer
from fakes.kube_api import FakeKubeApi
from prtg_ai.agent.app import AgentApp
from prtg_ai.agent.auth import Authenticator
from prtg_ai.agent.server import AgentServer
from prtg_ai.prtg.validate import validate

TOKEN = "cluster-agent-token-0123"


@pytest.fixture
def central_agent(tmp_path):
    def _start(env):
        app = AgentApp(Authenticator(tokens=[TOKEN]), tmp_path / "state", env=env, cache_ttl=0)
        server = AgentServer(app, "127.0.0.1", 0)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        started.append((server, thread))
        return f"http://127.0.0.1:{server.port}"
    started = []
    yield _start
    for server, thread in started:
        server.stop()
        thread.join(10)


def poll(base: str, path: str) -> dict:
    response = requests.get(base + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert response.status_code == 200 and validate(response.text) == [], response.text
    return json.loads(response.text)["prtg"]


def test_one_agent_serves_every_node_from_its_exporter(central_agent, tmp_path):
    l4 = (TESTCASES / "dcgm" / "l4_kops" / "metrics.txt").read_text()
    a30 = (TESTCASES / "dcgm" / "a30_mig" / "metrics.txt").read_text()
    cluster = json.loads((TESTCASES / "k8s_gpu" / "cluster.json").read_text())
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("sa-token-4567890")
    with FakeModelServer(page=l4) as node_a, FakeModelServer(page=a30) as node_b, \
            FakeKubeApi(cluster["nodes"], cluster["pods"], token="sa-token-4567890") as kube:
        base = central_agent({"PRTG_AI_K8S_SA_DIR": str(sa)})
        host_a = poll(base, f"/sensors/gpu_host?source=dcgm&dcgm_url={quote(node_a.url)}/metrics")
        host_b = poll(base, f"/sensors/gpu_host?source=dcgm&dcgm_url={node_b.url}/metrics")
        gpu_b = poll(base, f"/sensors/gpu?gpu=1&source=dcgm&dcgm_url={node_b.url}/metrics")
        k8s = poll(base, f"/sensors/k8s_gpu?node=gpu-node-1&api_url={kube.url}&source=none")
        refused = requests.get(base + f"/sensors/k8s_gpu?api_url={kube.url}&token_file={sa}/token",
                               headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    ch = lambda doc: {c["channel"]: c["value"] for c in doc["result"]}  # noqa: E731
    assert ch(host_a)["GPUs"] == 1 and ch(host_a)["Total Power"] == 16.365 and "NVIDIA L4" in host_a["text"]
    assert ch(host_b)["GPUs"] == 2 and "NVIDIA A30" in host_b["text"]
    assert ch(gpu_b)["MIG GI3 CI0 VRAM Used"] == 0.05
    # The pod's own token goes to the pod's own API server only: another api_url needs a token file,
    # and a token file cannot come from an HTTP client.
    assert k8s.get("error") == 1 and "Parameter --token-file" in k8s["text"]
    assert kube.requests == []
    assert "token_file cannot be set by an HTTP client" in refused.text and validate(refused.text) == []
