"""The agent's systemd unit and Kubernetes DaemonSet: hardened, consistent with the CLI."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections import defaultdict

import pytest

from prtg_ai.commands import cli
from support import REPO

UNIT = REPO / "installer" / "assets" / "systemd" / "prtg-ai-agent.service"
MANIFEST = REPO / "installer" / "assets" / "kubernetes" / "prtg-ai-agent-daemonset.yaml"
RBAC = REPO / "installer" / "assets" / "kubernetes" / "prtg-ai-rbac.yaml"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """INI-style parse that keeps repeated keys (systemd allows DeviceAllow= many times)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], defaultdict(list))
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"not a key=value line: {raw!r}"
        current[key.strip()].append(value.strip())
    return sections


def accepts(args: list[str]) -> dict:
    """Parse ``args`` with the real ``serve`` command's options (raises on an unknown option)."""
    command = cli.commands[args[0]]
    with command.make_context(args[0], list(args[1:])) as ctx:
        return dict(ctx.params)


def test_systemd_unit_is_hardened_and_runs_serve():
    unit = parse_unit(UNIT.read_text(encoding="utf-8"))
    service = unit["Service"]
    one = {k: v[-1] for k, v in service.items()}
    assert one["DynamicUser"] == "yes" or one.get("User") not in (None, "root")
    assert one["NoNewPrivileges"] == "yes"
    assert one["ProtectSystem"] == "strict"
    assert one["StateDirectory"] == "prtg-ai-agent"
    assert "/" in service["ReadOnlyPaths"]
    # The one capability: CAP_SYSLOG, to read XIDs from /dev/kmsg (kernel.dmesg_restrict=1).
    assert one["CapabilityBoundingSet"] == "CAP_SYSLOG" == one["AmbientCapabilities"]
    assert one["ProtectKernelLogs"] == "no" and "/dev/kmsg r" in service["DeviceAllow"]
    assert one["KillSignal"] == "SIGTERM"
    assert one["EnvironmentFile"].startswith("-/etc/default/")  # node settings (PRTG_AI_SENSOR_DEFAULTS)
    assert one["DevicePolicy"] == "closed"
    assert any(v.startswith("char-nvidia-frontend") for v in service["DeviceAllow"])
    assert one.get("PrivateDevices", "no") == "no"  # it would hide /dev/nvidia*
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    argv = shlex.split(one["ExecStart"])
    assert argv[0].endswith("prtg-ai") and argv[1] == "serve"
    params = accepts([a.replace("${CREDENTIALS_DIRECTORY}", "/run/c").replace("${STATE_DIRECTORY}", "/var/lib/x")
                      for a in argv[1:]])
    assert params["listen"] == "0.0.0.0:9705" and params["token_file"] == "/run/c/token"
    assert one["LoadCredential"].startswith("token:")  # the file behind --token-file


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_verifies_and_scores(tmp_path):
    copy = tmp_path / "prtg-ai-agent.service"
    copy.write_text(UNIT.read_text(encoding="utf-8").replace("/opt/prtg-ai/bin/prtg-ai", "/bin/true"))
    verify = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(copy)],
                              capture_output=True, text=True, timeout=60)
    if security.returncode != 0 and "offline" in security.stderr:
        pytest.skip("this systemd-analyze has no --offline")
    exposure = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout).group(1))
    assert exposure <= 2.5, security.stdout[-2000:]


def test_daemonset_manifest():
    yaml = pytest.importorskip("yaml")
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert set(by_kind) == {"Secret", "DaemonSet", "Service", "ConfigMap"}
    assert len({d["metadata"]["namespace"] for d in docs}) == 1
    ds = by_kind["DaemonSet"]
    pod = ds["spec"]["template"]["spec"]
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod.get("hostNetwork", False) is False
    # The pod's token exists for k8s_gpu only, bound to a read-only role (get nodes, list pods).
    rbac = {d["kind"]: d for d in yaml.safe_load_all(RBAC.read_text(encoding="utf-8")) if d}
    assert set(rbac) == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    assert pod["serviceAccountName"] == rbac["ServiceAccount"]["metadata"]["name"]
    assert rbac["ServiceAccount"]["metadata"]["namespace"] == ds["metadata"]["namespace"]
    rules = sorted((tuple(r["apiGroups"]), tuple(r["resources"]), tuple(r["verbs"])) for r in rbac["ClusterRole"]["rules"])
    assert rules == [(("",), ("nodes",), ("get",)), (("",), ("pods",), ("list",))]
    binding = rbac["ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == rbac["ClusterRole"]["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": pod["serviceAccountName"],
                                    "namespace": ds["metadata"]["namespace"]}]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    [container] = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc.get("privileged", False) is False
    limits = container["resources"]["limits"]
    assert set(limits) >= {"cpu", "memory"} and "nvidia.com/gpu" not in limits
    port = container["ports"][0]
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/health" and get["port"] in (port["name"], port["containerPort"])
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    params = accepts(container["args"])
    assert params["listen"] == f"0.0.0.0:{port['containerPort']}"
    # The token file comes from the Secret, mounted read-only.
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) <= set(volumes)
    token_mount = next(m for m in mounts.values() if params["token_file"].startswith(m["mountPath"] + "/"))
    assert token_mount["readOnly"] is True
    secret_volume = volumes[token_mount["name"]]["secret"]
    assert secret_volume["secretName"] == by_kind["Secret"]["metadata"]["name"]
    assert "token" in by_kind["Secret"]["stringData"]
    assert secret_volume["defaultMode"] & 0o007 == 0  # not world-readable
    # The state folder is writable although the root filesystem is not.
    state_mount = next(m for m in mounts.values() if m["mountPath"] == params["state_dir"])
    assert "emptyDir" in volumes[state_mount["name"]] and not state_mount.get("readOnly", False)
    # XIDs: the host's kern.log read-only, the pod in its group; no capability, not privileged.
    kernel = next(m for m in mounts.values() if m["name"] == "kernel-log")
    assert kernel["readOnly"] is True and volumes["kernel-log"]["hostPath"]["path"] == "/var/log/kern.log"
    assert 4 in pod["securityContext"]["supplementalGroups"]
    # Node settings from the ConfigMap, in the shape serve --sensor-defaults checks at start.
    env = {e["name"]: e for e in container["env"]}
    ref = env["PRTG_AI_SENSOR_DEFAULTS"]["valueFrom"]["configMapKeyRef"]
    assert ref["name"] == by_kind["ConfigMap"]["metadata"]["name"]
    from prtg_ai.agent import defaults

    parsed = defaults.parse(defaults.env_entries(by_kind["ConfigMap"]["data"][ref["key"]]))
    assert parsed["gpu"] == ["--xid-log", kernel["mountPath"]] == parsed["gpu_host"]
    svc = by_kind["Service"]["spec"]
    assert svc["selector"].items() <= labels.items()
    assert svc["ports"][0]["targetPort"] in (port["name"], port["containerPort"])


DOCKERFILE = REPO / "installer" / "assets" / "container" / "Dockerfile"


def test_image_name_manifest_and_build_file_agree():
    """The DaemonSet's image is what `make image` builds from the Dockerfile, for this version, as its user."""
    yaml = pytest.importorskip("yaml")
    from prtg_ai import __version__

    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if d]
    pod = next(d for d in docs if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == f"prtg-ai-agent:{__version__}"
    docker = DOCKERFILE.read_text(encoding="utf-8")
    assert 'org.opencontainers.image.title="prtg-ai-agent"' in docker
    make = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "-f installer/assets/container/Dockerfile -t prtg-ai-agent:$(IMAGE_VERSION) dist/" in make
    assert "build --wheel --outdir dist" in make  # built from the wheel
    assert re.search(r"^COPY prtg_ai-\*\.whl ", docker, re.M)
    # Non-root, the same user the pod runs as; the entry point is the CLI, the pod's args a command of it.
    user = re.search(r"^USER (\d+):(\d+)$", docker, re.M)
    assert user and int(user.group(1)) == pod["securityContext"]["runAsUser"] != 0
    assert int(user.group(2)) == pod["securityContext"]["runAsGroup"]
    assert re.search(r'^ENTRYPOINT \["/opt/prtg-ai/bin/prtg-ai"\]$', docker, re.M)
    assert container["args"][0] in cli.commands
    assert "--xid-log" not in " ".join(container["args"])  # node settings live in the ConfigMap
