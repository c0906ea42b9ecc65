"""GPU processes named by their pod: ``/proc/<pid>/cgroup`` -> pod UID -> namespace/pod through the API.

The proc tree is written by the test in the cgroup layouts the kubelet produces (systemd
driver on cgroup v2, cgroupfs on v1, Guaranteed pods directly under ``kubepods``); the API
is the fake Kubernetes server over HTTPS, reached with the in-cluster defaults.
"""

from __future__ import annotations

import json

import pytest

from fakes import nvml_fake
from fakes.gpu_cases import TESTCASES
from fakes.kube_api import FakeKubeApi
from prtg_ai.backends import k8s_pods

CLUSTER = json.loads((TESTCASES / "k8s_gpu" / "cluster.json").read_text(encoding="utf-8"))
NOTEBOOK_UID = "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d"  # ml/notebook-7f9c on gpu-node-1
TOKEN = "pod-names-token-0123"


@pytest.mark.parametrize("text,uid", [
    (f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{NOTEBOOK_UID.replace('-', '_')}.slice/"
     "cri-containerd-0123abcd.scope\n", NOTEBOOK_UID),
    (f"12:memory:/kubepods/besteffort/pod{NOTEBOOK_UID}/0123abcd\n4:cpu,cpuacct:/kubepods/besteffort/pod{NOTEBOOK_UID}/0123abcd\n",
     NOTEBOOK_UID),
    (f"0::/kubepods/pod{NOTEBOOK_UID}/0123abcd\n", NOTEBOOK_UID),
    (f"0::/kubepods.slice/kubepods-pod{NOTEBOOK_UID.replace('-', '_')}.slice:cri-containerd:0123abcd\n", NOTEBOOK_UID),
    ("0::/system.slice/jupyter.service\n", None),
    ("0::/user.slice/user-1000.slice/session-3.scope\n", None),
])
def test_pod_uid_from_cgroup_layouts(tmp_path, text, uid):
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "cgroup").write_text(text)
    assert k8s_pods.pod_uid(tmp_path, 4242) == uid
    assert k8s_pods.pod_uid(tmp_path, 999) is None  # gone


def _proc(tmp_path, pid: int):
    proc = tmp_path / "proc"
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "cgroup").write_text(
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{NOTEBOOK_UID.replace('-', '_')}.slice/"
        "cri-containerd-77aa.scope\n")
    return proc


def test_idle_but_held_names_the_pod(certificate, tmp_path, monkeypatch, sensor_run, make_ctx, clock):
    cert, key = certificate
    scen = nvml_fake.load_scenario(TESTCASES / "gpu" / "idle_held" / "nvml.json")
    pid = scen["devices"][0]["nvmlDeviceGetComputeRunningProcesses"][0]["pid"]
    proc = _proc(tmp_path, pid)
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text(TOKEN)
    (sa / "ca.crt").write_bytes(cert.read_bytes())
    log = tmp_path / "kmsg"
    log.write_text("")
    nvml_fake.install(monkeypatch, scen)
    with FakeKubeApi(CLUSTER["nodes"], CLUSTER["pods"], token=TOKEN, tls=(str(cert), str(key))) as api:
        env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": api.url.rsplit(":", 1)[1],
               "NODE_NAME": "gpu-node-1", "PRTG_AI_K8S_SA_DIR": str(sa)}
        ctx = make_ctx(proc_root=proc, env=env)
        args = ["--gpu", "0", "--idle-window", "60s", "--xid-log", log]
        messages = []
        for _ in range(3):
            messages.append(sensor_run("gpu", args, ctx).message())
            clock.advance(30)
        asked = [(path, q.get("fieldSelector", [""])[0]) for path, q, _ in api.requests]
    assert f"VRAM is held by PID {pid} (ml/notebook-7f9c)" in messages[-1]
    # one API call (the node's pods), then the name comes from the state folder's cache
    assert asked == [("/api/v1/pods", "spec.nodeName=gpu-node-1")]


def test_without_an_api_the_pod_uid_is_named(tmp_path, monkeypatch, sensor_run, make_ctx, clock):
    scen = nvml_fake.load_scenario(TESTCASES / "gpu" / "idle_held" / "nvml.json")
    pid = scen["devices"][0]["nvmlDeviceGetComputeRunningProcesses"][0]["pid"]
    log = tmp_path / "kmsg"
    log.write_text("")
    nvml_fake.install(monkeypatch, scen)
    ctx = make_ctx(proc_root=_proc(tmp_path, pid), env={})
    for _ in range(3):
        result = sensor_run("gpu", ["--idle-window", "60s", "--xid-log", log], ctx)
        clock.advance(30)
    assert f"VRAM is held by PID {pid} (pod {NOTEBOOK_UID})" in result.message()


def test_an_unreachable_api_does_not_fail_the_scan(tmp_path, monkeypatch, sensor_run, make_ctx, clock):
    scen = nvml_fake.load_scenario(TESTCASES / "gpu" / "idle_held" / "nvml.json")
    pid = scen["devices"][0]["nvmlDeviceGetComputeRunningProcesses"][0]["pid"]
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text(TOKEN)
    log = tmp_path / "kmsg"
    log.write_text("")
    with FakeKubeApi({}, [], token=TOKEN) as gone:
        port = gone.url.rsplit(":", 1)[1]
    nvml_fake.install(monkeypatch, scen)
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port, "PRTG_AI_K8S_SA_DIR": str(sa)}
    ctx = make_ctx(proc_root=_proc(tmp_path, pid), env=env)
    for _ in range(3):
        result = sensor_run("gpu", ["--idle-window", "60s", "--xid-log", log], ctx)
        clock.advance(30)
    assert not result.error and f"(pod {NOTEBOOK_UID})" in result.message()
