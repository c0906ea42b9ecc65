"""Right on first contact, as a new PRTG administrator: empty PRTG tree -> ``install --role core
--agent-token-file`` -> the agent started as docs/agent.md says (node settings with
``--sensor-defaults``) -> every URL of every installed HTTP template, ``%host`` replaced,
answers a valid, non-error PRTG result. No hand edits.

The node: NVML through the scenario fake (8 H100s), the east-west fixture tree of an
8-port NDR node as its sysfs, a real checkpoint folder and a model server on 127.0.0.1;
for the Kubernetes template, an API server over TLS as a pod sees it (service-account
token and CA) and a dcgm-exporter page (a real L4 capture) on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from fakes.gpu_cases import TESTCASES
from fakes.inference_server import FakeModelServer
from fakes.kube_api import FakeKubeApi
from prtg_ai.prtg.validate import validate
from prtg_ai.build.templates import AGENT_PORT
from reliability.rel_support import clean_env, free_port, http_get, prtg_ai_script
from support import check_channels, legacy_worst

REPO = Path(__file__).resolve().parents[2]
SHIM = REPO / "tests" / "fakes" / "shim"
TOKEN = "first-contact-7Hq2m9Xc4LwP0sVb"


def wait_health(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else "agent exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("agent did not start")


def test_new_admin_gets_green_http_sensors_with_no_hand_edits(tmp_path, certificate):
    # 1. An empty PRTG core tree and the agents' token file.
    prtg = tmp_path / "PRTG Network Monitor"
    prtg.mkdir()
    token_file = tmp_path / "agent.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    env = clean_env(tmp_path / "state")
    install = subprocess.run([prtg_ai_script(), "install", "--prtg-dir", str(prtg), "--role", "core",
                              "--agent-token-file", str(token_file)], capture_output=True, text=True,
                             env=env, timeout=120)
    assert install.returncode == 0, install.stderr
    assert TOKEN not in install.stdout + install.stderr  # never in a log or on screen
    assert "401" not in install.stderr  # the no-token warning is not shown when a token file is given
    assert TOKEN not in (prtg / "prtg-ai-manifest.json").read_text()
    http = sorted(p for p in (prtg / "devicetemplates").glob("*.odt") if b"<httpurl>" in p.read_bytes())
    assert {p.name for p in http} >= {"prtgai_gpu_node_http_8gpu.odt", "prtgai_inference_server.odt"}
    for path in http:
        if os.name == "posix":
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    for path in (REPO / "device_templates").glob("*.odt"):
        assert TOKEN not in path.read_text()  # the repository's templates carry no token

    # 2. The node: a checkpoint folder, a model server, the agent as docs/agent.md starts it.
    ckpt = tmp_path / "data" / "checkpoints"
    (ckpt / "checkpoint-100").mkdir(parents=True)
    (ckpt / "checkpoint-100" / "model.safetensors").write_bytes(b"x" * 65536)
    fabric = TESTCASES / "east_west" / "ndr_8port"
    proc = tmp_path / "proc"  # the fixture's procfs plus socket tables (a node listening on nothing)
    shutil.copytree(fabric / "proc", proc)
    for table in ("tcp", "tcp6"):
        (proc / "net" / table).write_text("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when "
                                          "retrnsmt   uid  timeout inode\n")
    page = (TESTCASES / "inference" / "vllm" / "metrics.1.prom").read_text()
    dcgm_page = (TESTCASES / "dcgm" / "l4_kops" / "metrics.txt").read_text()
    cluster = json.loads((TESTCASES / "k8s_gpu" / "cluster.json").read_text())
    cert, key = certificate
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("sa-token-first-contact")
    (sa / "ca.crt").write_bytes(cert.read_bytes())
    port = free_port()
    with FakeModelServer(page=page) as model, FakeModelServer(page=dcgm_page) as dcgm, \
            FakeKubeApi(cluster["nodes"], cluster["pods"], token="sa-token-first-contact",
                        tls=(str(cert), str(key))) as kube:
        node_env = clean_env(tmp_path / "agent-home", {
            "PYTHONPATH": str(SHIM), "PRTG_AI_FAKE_NVML": str(TESTCASES / "gpu_host" / "h100x8_load" / "nvml.json"),
            "PRTG_AI_SYS_ROOT": str(fabric / "sys"), "PRTG_AI_PROC_ROOT": str(proc),
            "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": kube.url.rsplit(":", 1)[1],
            "NODE_NAME": "gpu-node-1", "PRTG_AI_K8S_SA_DIR": str(sa)})
        dcgm_at = dcgm.url.split("://", 1)[1]
        args = [prtg_ai_script(), "serve", "--listen", f"127.0.0.1:{port}", "--token-file", str(token_file),
                "--sensor-defaults", f"checkpoint_volume=--path {ckpt}",
                "--sensor-defaults", f"inference=--url {model.url}",
                "--sensors", "gpu,gpu_host,east_west,checkpoint_volume,node_security,k8s_gpu,inference",
                "--state-dir", str(tmp_path / "agent-state")]
        agent = subprocess.Popen(args, env=node_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_health(port, agent)
            checked = 0
            # 3. Every URL of every installed HTTP template, %host replaced, as PRTG polls it.
            for path in http:
                for element in ET.parse(path).getroot().iter("httpurl"):
                    url = urlsplit(element.text.replace("%host", "127.0.0.1"))
                    assert url.port == AGENT_PORT  # the template's port; this test's agent sits on a free one
                    # Likewise dcgm-exporter's port 9400 in the Kubernetes template: this test's page sits elsewhere.
                    target = f"{url.path}?{url.query}".replace("127.0.0.1:9400", dcgm_at)
                    status, _, body = http_get(port, target, timeout=60)
                    text = body.decode()
                    assert status == 200, (path.name, url.path, text)
                    assert validate(text) == [], (path.name, url.path, text)
                    doc = json.loads(text)
                    assert "error" not in doc["prtg"], (path.name, url.path, doc)
                    assert legacy_worst(doc) != "error", (path.name, url.path, doc["prtg"].get("text"))
                    # Each channel as the catalogue defines it; a node template's expected_gpus=N is
                    # gpu_host's lower error limit on GPUs.
                    expected = parse_qs(url.query).get("expected_gpus")
                    check_channels(url.path.rsplit("/", 1)[-1], doc,
                                   {"gpus": {"limitminerror": int(expected[0])}} if expected else None)
                    assert TOKEN not in text
                    checked += 1
            # host + GPUs + fabric + checkpoint + node security per node template; inference; k8s_gpu + gpu_host
            assert checked == sum(1 + n + 3 for n in (1, 2, 4, 8)) + 1 + 2
        finally:
            agent.terminate()
            out, _ = agent.communicate(timeout=20)
    assert TOKEN not in out


def test_install_without_a_token_file_says_plainly_that_http_templates_answer_401(tmp_path):
    prtg = tmp_path / "PRTG Network Monitor"
    prtg.mkdir()
    proc = subprocess.run([prtg_ai_script(), "install", "--prtg-dir", str(prtg), "--role", "core"],
                          capture_output=True, text=True, env=clean_env(tmp_path / "state"), timeout=120)
    assert proc.returncode == 0
    assert "401" in proc.stderr and "--agent-token-file" in proc.stderr


def test_a_template_sensor_without_its_node_setting_names_the_line_to_add(tmp_path):
    token_file = tmp_path / "agent.token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    agent = subprocess.Popen([prtg_ai_script(), "serve", "--listen", f"127.0.0.1:{port}", "--token-file",
                              str(token_file), "--state-dir", str(tmp_path / "agent-state")],
                             env=clean_env(tmp_path / "state"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_health(port, agent)
        _, _, body = http_get(port, f"/sensors/checkpoint_volume?token={TOKEN}")
        text = json.loads(body)["prtg"]["text"]
        assert 'Add --sensor-defaults checkpoint_volume="--path DIR"' in text
        assert "PRTG_AI_SENSOR_DEFAULTS" in text
        # A request's own parameter wins over the (absent) node setting.
        _, _, body = http_get(port, f"/sensors/checkpoint_volume?path={tmp_path}&token={TOKEN}")
        assert "error" not in json.loads(body)["prtg"]
    finally:
        agent.terminate()
        agent.communicate(timeout=20)

