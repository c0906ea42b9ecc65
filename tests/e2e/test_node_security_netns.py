"""node_security end to end in a network namespace: listeners on a veth address, on the
wildcard and on loopback, on the services' famous ports, with decoys.

The test makes two namespaces joined by a veth pair (names carry "i15", always
deleted); in the first it starts real servers speaking the AI services' answers
(``tests/fakes/ai_services.py``) bound to the veth address, to 0.0.0.0, to :: and to
127.0.0.1, and runs ``prtg-ai run node_security`` in that namespace as PRTG would: it
reads that namespace's real /proc/net/tcp*, names the owning process (root), and
probes each non-loopback listener at its own address.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from prtg_ai.prtg.validate import validate
from support import check_channels, cli_env, require_netns

pytestmark = pytest.mark.root
FAKES = Path(__file__).resolve().parents[1] / "fakes" / "ai_services.py"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)


@pytest.fixture
def namespace():
    require_netns()
    tok = secrets.token_hex(3)
    net = 1 + secrets.randbelow(250)
    a, b = f"i15-{tok}-a", f"i15-{tok}-b"
    made = []
    try:
        for ns in (a, b):
            try:
                _ip("netns", "add", ns)
            except subprocess.CalledProcessError as exc:
                pytest.skip(f"cannot create network namespaces here ({exc.stderr.strip()})")
            made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", f"i15{tok}a", "netns", a, "type", "veth", "peer", "name", f"i15{tok}b", "netns", b)
        for ns, dev, host in ((a, f"i15{tok}a", 1), (b, f"i15{tok}b", 2)):
            _ip("-n", ns, "addr", "add", f"10.215.{net}.{host}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        yield a, f"10.215.{net}.1"
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=20)


def _ipv6_in(ns: str) -> bool:
    probe = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                            "import socket; s = socket.socket(socket.AF_INET6); s.bind(('::1', 0))"],
                           capture_output=True, timeout=20)
    return probe.returncode == 0


def test_exposed_services_on_a_veth_address_are_identified_by_protocol(namespace, tmp_path):
    ns, addr = namespace
    specs = [("jupyter", "open", addr, 8888), ("ray", "open", addr, 8265), ("ollama", "auth", addr, 11434),
             ("redis", "open", addr, 8000),      # Redis protocol on the OpenAI/Triton port
             ("decoy", "json", addr, 6379),      # a JSON API on Redis' port
             ("decoy", "ssh", addr, 8080),       # an SSH banner on an HTTP port
             ("mlflow", "open", "0.0.0.0", 5000), ("openai", "auth", addr, 9000),
             ("tensorboard", "open", "127.0.0.1", 6006)]  # loopback only: not exposed
    v6 = _ipv6_in(ns)
    if v6:
        specs.append(("kubelet", "open", "::", 10255))
    server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(FAKES), json.dumps(specs)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        bound = json.loads(server.stdout.readline())
        assert len(bound) == len(specs)
        proc = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "prtg_ai.cli", "run", "node_security",
                               "--auth-source", "off", "--gpu-processes", "off"],
                              capture_output=True, text=True, env=cli_env(tmp_path / "state"), timeout=60)
    finally:
        server.stdin.close()
        server.wait(timeout=20)
    assert proc.returncode == 0 and "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert validate(proc.stdout) == [], proc.stdout
    doc = json.loads(proc.stdout)["prtg"]
    values = {c["channel"]: c["value"] for c in doc["result"]}
    check_channels("node_security", {"prtg": doc})
    text = doc["text"]
    # By hand: open Jupyter, Ray, Redis (on 8000) and MLflow (+ kubelet on ::) answer without credentials;
    # Ollama and the OpenAI server ask for them; the decoys and the loopback TensorBoard are not flagged.
    assert values["Unauthenticated AI Services"] == (5 if v6 else 4), text
    assert values["Listeners Requiring Auth"] == 2, text
    assert values["Exposed Listening Ports"] == (9 if v6 else 8), text
    assert f"Jupyter on {addr}:8888 (python" in text
    assert f"Ray dashboard / jobs API on {addr}:8265" in text and "CVE-2023-48022" in text
    assert f"Redis without a password on {addr}:8000" in text
    assert "MLflow tracking server on 0.0.0.0:5000" in text
    assert "OpenAI-compatible" not in text and "6379" not in text and "8080" not in text
    assert "TensorBoard" not in text and "6006" not in text
    if v6:
        assert "kubelet read-only port on [::]:10255" in text
