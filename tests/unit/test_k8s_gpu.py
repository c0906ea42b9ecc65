"""``k8s_gpu`` against a real HTTP(S) server speaking the Kubernetes API's node and pod shapes.

The cluster (tests/testcases/k8s_gpu/cluster.json, see SOURCE.md there) was written with
these expectations computed by hand:

* GPUs Allocatable 7 (capacity 8: one GPU unhealthy); MIG devices allocatable 4 + 1 = 5;
* GPUs Requested 6: train-a 2 (limit only), train-b max(init 3, 1 + 1) = 3, notebook 1;
  the Succeeded pod's 4 and the bound-but-Pending pod's 1 do not count;
* MIG Devices Requested 3: mig-a 1, mig-b 1 + 1;
* Allocated % = (6 + 3) / (7 + 5) = 75.0; GPUs Unallocated 7 - 6 = 1; GPU Pods 5;
* Pending GPU Pods 2 (queued-1 wants 4 GPUs, queued-2 a 3g.40gb; cpu-pending wants none;
  starting-c4d is bound to a node), the oldest created 3600 s before the scan.
"""

from __future__ import annotations

import json

import pytest

from fakes.gpu_cases import TESTCASES
from fakes.inference_server import FakeModelServer
from fakes.kube_api import FakeKubeApi
from prtg_ai.gpu import k8s_model as km
from support import channels, cli_env, run_cli

CLUSTER = json.loads((TESTCASES / "k8s_gpu" / "cluster.json").read_text(encoding="utf-8"))
NOW = 1_790_000_000.0  # 2026-09-21T14:13:20Z, the FakeClock's start
TOKEN = "test-token-0123456789"


def message(result) -> str:
    return " ".join([result.text, *result.notes])


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    return path


@pytest.fixture
def api():
    with FakeKubeApi(CLUSTER["nodes"], CLUSTER["pods"], token=TOKEN) as srv:
        yield srv


@pytest.fixture
def k8s_run(sensor_run, make_ctx, tmp_path, token_file):
    def _run(srv, *args, ctx=None, env=None):
        argv = ["--node", "gpu-node-1", "--api-url", srv.url, "--token-file", token_file, *args]
        return sensor_run("k8s_gpu", argv, ctx or make_ctx(env=env or {}))
    return _run


def test_allocation_and_queue_by_hand(api, k8s_run):
    res = k8s_run(api)
    ch = channels(res)
    assert ch["GPUs Allocatable"] == 7 and ch["GPUs Requested"] == 6 and ch["GPUs Unallocated"] == 1
    assert ch["MIG Devices Allocatable"] == 5 and ch["MIG Devices Requested"] == 3
    assert ch["Allocated %"] == 75.0
    assert ch["GPU Pods"] == 5
    assert ch["Pending GPU Pods"] == 2 and ch["Oldest Pending GPU Pod"] == 3600
    assert res.warning and "1 GPU device(s) in the node's capacity are not allocatable" in message(res)
    assert "ml/queued-1 for 1h: 0/2 nodes are available: 1 Insufficient nvidia.com/gpu" in message(res)
    assert "1g.10gb x4" in message(res) and "3g.40gb x1" in message(res)
    assert "Allocated but Idle GPUs" not in ch and "--source dcgm" in message(res)
    # what was asked: the node, its Running pods, the unbound Pending pods; always with the token
    asked = [(path, q.get("fieldSelector", [""])[0]) for path, q, _ in api.requests]
    assert asked == [("/api/v1/nodes/gpu-node-1", ""),
                     ("/api/v1/pods", "spec.nodeName=gpu-node-1,status.phase=Running"),
                     ("/api/v1/pods", "status.phase=Pending,spec.nodeName=")]
    assert all(h.get("authorization") == f"Bearer {TOKEN}" for _, _, h in api.requests)
    assert TOKEN not in message(res)


def test_namespace_scope_for_the_queue(api, k8s_run):
    ch = channels(k8s_run(api, "--namespace", "research"))
    assert ch["Pending GPU Pods"] == 1 and ch["Oldest Pending GPU Pod"] == 600
    assert ch["GPUs Requested"] == 6  # the node's numbers do not depend on the scope
    assert api.requests[-1][0] == "/api/v1/namespaces/research/pods"


def test_paging_with_limit_and_continue(k8s_run):
    with FakeKubeApi(CLUSTER["nodes"], CLUSTER["pods"], token=TOKEN, page_size=2) as srv:
        ch = channels(k8s_run(srv))
        continues = [q["continue"][0] for _, q, _ in srv.requests if "continue" in q]
    assert (ch["GPUs Requested"], ch["MIG Devices Requested"], ch["Pending GPU Pods"]) == (6, 3, 2)
    assert len(continues) >= 3 and all(q["limit"] == ["500"] for p, q, _ in srv.requests if p.endswith("/pods"))


def test_401_names_the_token(api, sensor_run, tmp_path):
    bad = tmp_path / "bad-token"
    bad.write_text("not-the-token")
    res = sensor_run("k8s_gpu", ["--node", "gpu-node-1", "--api-url", api.url, "--token-file", bad])
    assert res.error and "HTTP 401" in res.text and "--token-file" in res.text
    assert "not-the-token" not in res.text


@pytest.mark.parametrize("resource,rule", [
    ("nodes", 'resources ["nodes"], verbs ["get"]'),
    ("pods", 'resources ["pods"], verbs ["list"]'),
])
def test_403_names_the_missing_rbac_rule(api, k8s_run, resource, rule):
    api.forbid = {resource}
    res = k8s_run(api)
    assert res.error and "HTTP 403 Forbidden" in res.text and rule in res.text
    assert "prtg-ai-rbac.yaml" in res.text


def test_unknown_node_names_the_parameter(api, sensor_run, make_ctx, token_file):
    res = sensor_run("k8s_gpu", ["--node", "gpu-node-9", "--api-url", api.url, "--token-file", token_file])
    assert res.error and res.text.startswith("Parameter --node: the cluster has no node named 'gpu-node-9'")


def test_node_without_gpus_is_an_actionable_error(api, sensor_run, token_file):
    res = sensor_run("k8s_gpu", ["--node", "cpu-node-1", "--api-url", api.url, "--token-file", token_file])
    assert res.error and "offers no nvidia.com/gpu" in res.text and "device plugin" in res.text


def test_unreachable_api_server(sensor_run, token_file):
    with FakeKubeApi({}, [], token=TOKEN) as srv:
        url = srv.url
    res = sensor_run("k8s_gpu", ["--node", "gpu-node-1", "--api-url", url, "--token-file", token_file])
    assert res.error and "Cannot connect to the API server" in res.text


def test_node_name_from_the_downward_api(api, sensor_run, make_ctx, token_file):
    res = sensor_run("k8s_gpu", ["--api-url", api.url, "--token-file", token_file],
                     make_ctx(env={"NODE_NAME": "gpu-node-1"}))
    assert channels(res)["GPUs Allocatable"] == 7


def test_the_pod_token_goes_only_to_the_pods_own_api_server(api, sensor_run, make_ctx, tmp_path):
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text(TOKEN)
    env = {"PRTG_AI_K8S_SA_DIR": str(sa), "NODE_NAME": "gpu-node-1"}
    res = sensor_run("k8s_gpu", ["--api-url", api.url], make_ctx(env=env))
    assert res.error and "Parameter --token-file" in res.text
    assert api.requests == []  # nothing was sent anywhere


def test_in_cluster_defaults_over_tls(certificate, sensor_run, make_ctx, tmp_path):
    """KUBERNETES_SERVICE_HOST/PORT, the service-account token and ca.crt: no parameter at all."""
    cert, key = certificate
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text(TOKEN)
    with FakeKubeApi(CLUSTER["nodes"], CLUSTER["pods"], token=TOKEN, tls=(str(cert), str(key))) as srv:
        port = srv.url.rsplit(":", 1)[1]
        env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port, "NODE_NAME": "gpu-node-1",
               "PRTG_AI_K8S_SA_DIR": str(sa)}
        untrusted = sensor_run("k8s_gpu", [], make_ctx(env=env))
        (sa / "ca.crt").write_bytes(cert.read_bytes())
        trusted = sensor_run("k8s_gpu", [], make_ctx(env=env))
    assert untrusted.error and "TLS verification" in untrusted.text
    assert channels(trusted)["Allocated %"] == 75.0


# -- allocated but idle ------------------------------------------------------------------
def dcgm_node_page() -> str:
    """Three GPUs built from the real L4 capture's rows: GPU 0 and 1 held by ml/train-a and idle,
    GPU 2 held by ml/notebook-7f9c at 85 %."""
    rows = [r for r in (TESTCASES / "dcgm" / "l4_kops" / "metrics.txt").read_text().splitlines()
            if r.startswith("DCGM_FI_DEV_GPU_UTIL{")]
    base = rows[0]
    out = ["# TYPE DCGM_FI_DEV_GPU_UTIL gauge"]
    for gpu, pod, util in ((0, "train-a", 0), (1, "train-a", 1), (2, "notebook-7f9c", 85)):
        row = base.replace('gpu="0"', f'gpu="{gpu}"').replace("1343419b1a1c", f"1343419b1a1{gpu}")
        row = row.replace('DCGM_FI_DRIVER_VERSION="580.105.08"}',
                          f'DCGM_FI_DRIVER_VERSION="580.105.08",container="main",namespace="ml",pod="{pod}"}}')
        out.append(row.rsplit(" ", 1)[0] + f" {util}")
    return "\n".join(out) + "\n"


def test_allocated_but_idle_from_dcgm_pod_labels(api, k8s_run, make_ctx, clock):
    ctx = make_ctx()
    with FakeModelServer(page=dcgm_node_page()) as exporter:
        args = ["--dcgm-url", exporter.url + "/metrics", "--idle-window", "10m"]
        first = k8s_run(api, *args, ctx=ctx)
        for _ in range(2):
            clock.advance(300)
            last = k8s_run(api, *args, ctx=ctx)
    assert channels(first)["Allocated but Idle GPUs"] == 0  # idle, but not for 10 minutes yet
    assert channels(last)["Allocated but Idle GPUs"] == 2
    text = message(last)
    assert "GPU 0 (ml/train-a) for 10m" in text and "GPU 1 (ml/train-a)" in text and "GPU 2" not in text


def test_allocated_but_idle_mig_instances(api, k8s_run, make_ctx, clock):
    """The A100 MIG capture (GR engine 2.94 %, 3.39 %, 0 % on GI 8, 9, 10), pods on GI 8 and 10."""
    page = (TESTCASES / "dcgm" / "a100_mig_dra" / "metrics.txt").read_text()
    page = page.replace('GPU_I_ID="8",Hostname="k8s-dra-driver-cluster-worker",DCGM_FI_DRIVER_VERSION="560.35.03"',
                        'GPU_I_ID="8",Hostname="k8s-dra-driver-cluster-worker",DCGM_FI_DRIVER_VERSION="560.35.03",'
                        'namespace="inference",pod="mig-a"')
    page = page.replace('GPU_I_ID="10",Hostname="k8s-dra-driver-cluster-worker",DCGM_FI_DRIVER_VERSION="560.35.03"',
                        'GPU_I_ID="10",Hostname="k8s-dra-driver-cluster-worker",DCGM_FI_DRIVER_VERSION="560.35.03",'
                        'namespace="inference",pod="mig-b"')
    ctx = make_ctx()
    with FakeModelServer(page=page) as exporter:
        args = ["--source", "dcgm", "--dcgm-url", exporter.url + "/metrics", "--idle-window", "60s"]
        k8s_run(api, *args, ctx=ctx)
        clock.advance(60)
        res = k8s_run(api, *args, ctx=ctx)
        tighter = k8s_run(api, *args, "--idle-util", "1", ctx=ctx)
    assert channels(res)["Allocated but Idle GPUs"] == 2  # GI 9 has no pod: free, not "allocated but idle"
    assert "GPU 0 GI8 (inference/mig-a)" in message(res) and "GPU 0 GI10 (inference/mig-b)" in message(res)
    assert channels(tighter)["Allocated but Idle GPUs"] == 1  # 2.94 % is busy above 1 %


def test_allocated_but_idle_from_nvml_processes_and_cgroups(api, k8s_run, make_ctx, clock, monkeypatch, tmp_path):
    """NVML on the node: GPU processes tied to pods by /proc/<pid>/cgroup (systemd and cgroupfs layouts)."""
    from fakes import nvml_fake

    scen = nvml_fake.load_scenario(TESTCASES / "gpu_host" / "h100x8_load" / "nvml.json")
    pids = [d["nvmlDeviceGetComputeRunningProcesses"][0]["pid"] for d in scen["devices"]]
    for dev in scen["devices"][:3]:
        dev["nvmlDeviceGetUtilizationRates"] = {"gpu": 0, "memory": 0}
    uid_a = "0f4b6c1e-3a2d-4e5f-8a9b-1c2d3e4f5a6b"    # ml/train-a
    uid_nb = "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d"   # ml/notebook-7f9c
    proc = tmp_path / "proc"
    layouts = {
        pids[0]: f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_a.replace('-', '_')}.slice/"
                 "cri-containerd-4f1e.scope\n",
        pids[1]: f"12:memory:/kubepods/burstable/pod{uid_a}/4f1e9a\n11:cpu:/kubepods/burstable/pod{uid_a}/4f1e9a\n",
        pids[2]: f"0::/kubepods/pod{uid_nb}/77aa\n",
        pids[3]: "0::/system.slice/jupyter.service\n",
    }
    for pid, text in layouts.items():
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cgroup").write_text(text)
    nvml_fake.install(monkeypatch, scen)
    ctx = make_ctx(proc_root=proc)
    args = ["--source", "nvml", "--idle-window", "60s"]
    k8s_run(api, *args, ctx=ctx)
    clock.advance(60)
    res = k8s_run(api, *args, ctx=ctx)
    assert channels(res)["Allocated but Idle GPUs"] == 3
    text = message(res)
    assert "GPU 0 (ml/train-a)" in text and "GPU 1 (ml/train-a)" in text and "GPU 2 (ml/notebook-7f9c)" in text


# -- the scheduler's arithmetic ---------------------------------------------------------------
@pytest.mark.parametrize("text,value", [("2", 2), ("500m", 0.5), ("1k", 1000), ("1Ki", 1024), ("1e3", 1000),
                                        ("nonsense", 0)])
def test_quantities(text, value):
    assert km.quantity(text) == value


def test_sidecars_add_up_and_init_containers_do_not():
    gpu = lambda n: {"resources": {"limits": {"nvidia.com/gpu": str(n)}}}  # noqa: E731
    pod = {"spec": {"initContainers": [dict(gpu(1), restartPolicy="Always"), gpu(2), gpu(1)],
                    "containers": [gpu(1)]}}
    # sidecar 1 runs beside the second init container (1 + 2 = 3) and the app (1 + 1 = 2): 3
    assert km.pod_gpu_requests(pod) == {"nvidia.com/gpu": 3}
    pod["spec"]["containers"] = [gpu(2), gpu(2)]
    assert km.pod_gpu_requests(pod) == {"nvidia.com/gpu": 5}  # 4 + sidecar 1 beats 3
    pod["spec"]["overhead"] = {"cpu": "250m"}
    assert km.pod_gpu_requests(pod) == {"nvidia.com/gpu": 5}


def test_cli_exits_0_with_valid_prtg_json(api, token_file, tmp_path):
    doc, _ = run_cli(["run", "k8s_gpu", "--node", "gpu-node-1", "--api-url", api.url, "--token-file", token_file],
                     cli_env(tmp_path / "state"))
    got = {c["channel"]: c["value"] for c in doc["prtg"]["result"]}
    assert got["GPUs Requested"] == 6 and got["Pending GPU Pods"] == 2
    assert TOKEN not in json.dumps(doc)


def test_an_http_client_cannot_choose_the_token_file():
    """Through the agent, --api-url plus --token-file would send any readable one-line file to the client's server."""
    from prtg_ai.agent.app import BadRequest, query_to_argv
    from prtg_ai.gpu.k8s_gpu import K8sGpuSensor

    with pytest.raises(BadRequest, match="token_file cannot be set by an HTTP client"):
        query_to_argv(K8sGpuSensor, [("api_url", "https://evil.example"), ("token_file", "/run/secrets/prtg-ai/token")])
    assert query_to_argv(K8sGpuSensor, [("node", "gpu-node-1"), ("source", "dcgm")]) == ["--node=gpu-node-1",
                                                                                       "--source=dcgm"]


def test_an_unreachable_exporter_leaves_the_allocation_standing(api, k8s_run):
    with FakeModelServer(page="") as gone:
        url = gone.url
    res = k8s_run(api, "--source", "dcgm", "--dcgm-url", url + "/metrics")
    ch = channels(res)
    assert not res.error and res.warning and ch["GPUs Requested"] == 6 and "Allocated but Idle GPUs" not in ch
    assert "Allocated but Idle GPUs unavailable: Connection to" in message(res)


def test_another_nodes_exporter_is_flagged(api, k8s_run):
    page = dcgm_node_page().replace('pod="notebook-7f9c"', 'pod="someone-else"')
    with FakeModelServer(page=page) as exporter:
        res = k8s_run(api, "--dcgm-url", exporter.url + "/metrics")
    assert res.warning and "not running on this node with GPUs (ml/someone-else)" in message(res)
