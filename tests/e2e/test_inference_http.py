"""``inference`` against real HTTP servers on 127.0.0.1: recorded metrics pages, a streaming probe.

Each kind's two recorded pages (``tests/testcases/inference/<kind>/metrics.{1,2}.prom``)
are served in turn, 60 s apart on the fake clock; the expected numbers are worked
out by hand from the bucket deltas written in ``make_fixtures.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes.inference_server import FakeModelServer, closed_port_url
from support import channels, cli_env, run_cli

CASES = Path(__file__).resolve().parents[1] / "testcases" / "inference"


def page(kind: str, scan: int) -> str:
    return (CASES / kind / f"metrics.{scan}.prom").read_text(encoding="utf-8")


def two_scans(kind: str, sensor_run, make_ctx, clock, *args):
    ctx = make_ctx()
    with FakeModelServer(page=page(kind, 1)) as srv:
        first = sensor_run("inference", ["--url", srv.url, *args], ctx)
        clock.advance(60)
        srv.page = page(kind, 2)
        second = sensor_run("inference", ["--url", srv.url, *args], ctx)
    return first, second


def test_vllm_two_scans(sensor_run, make_ctx, clock):
    first, second = two_scans("vllm", sensor_run, make_ctx, clock)
    assert not first.error and not second.error, second.message()
    assert channels(first) == {"Requests Running": 9, "Requests Waiting": 0, "KV Cache Usage": 31.0,
                               "Execution Time": channels(first)["Execution Time"]}
    assert "Collecting a baseline" in first.message()
    ch = channels(second)
    assert ch["Requests Running"] == 12 and ch["Requests Waiting"] == 3 and ch["KV Cache Usage"] == 42.75
    # TTFT deltas: 10 <= 60 ms, 30 <= 80, 60 <= 100, 90 <= 250, 98 <= 500, 100 <= 750 (of 100)
    assert ch["Time To First Token p50"] == 93.333  # 80 + 20 x (50 - 30) / (60 - 30)
    assert ch["Time To First Token p95"] == 406.25  # 250 + 250 x (95 - 90) / (98 - 90)
    # time_per_output_token (vLLM's older name): 200 <= 25 ms, 700 <= 50, 900 <= 75, 960 <= 100
    assert ch["Inter-Token Latency p50"] == 40.0
    assert ch["Inter-Token Latency p95"] == 95.833
    assert ch["Request Latency p95"] == 7500.0  # 5 s + 5 s x (95 - 90) / (100 - 90)
    assert ch["Generated Tokens/s"] == 122.5  # 7350 tokens / 60 s
    assert ch["Prompt Tokens/s"] == 500.0
    assert ch["Requests/s"] == 1.6667  # 90 stop + 10 length
    assert ch["Error Rate"] == 2.0  # 2 HTTP 5xx of 100 /v1 requests; /health's 5xx do not count
    assert ch["Preemptions"] == 3.0  # per minute
    assert "Probe Outcome" not in ch and "Server Memory" not in ch
    assert second.text.startswith("vLLM at http://127.0.0.1:")
    assert "3 waiting" in second.text and "122.5 tok/s" in second.text


def test_tgi_two_scans(sensor_run, make_ctx, clock):
    _, second = two_scans("tgi", sensor_run, make_ctx, clock)
    ch = channels(second)
    assert ch["Requests Running"] == 6 and ch["Requests Waiting"] == 9
    assert ch["Inter-Token Latency p50"] == 47.467  # 32 + 32 x 14.5 / 30 ms
    assert ch["Inter-Token Latency p95"] == 116.4  # 64 + 64 x 6.55 / 8 ms
    assert ch["Request Latency p95"] == 5683.2
    assert ch["Generated Tokens/s"] == 100.0  # generated_tokens_sum +6000 in 60 s
    assert ch["Prompt Tokens/s"] == 200.0
    assert ch["Requests/s"] == 0.8333
    assert ch["Error Rate"] == 2.0  # 1 failure of 50
    # TGI exports neither KV-cache use, nor TTFT, nor preemptions: omitted, not zero
    assert not {"KV Cache Usage", "Time To First Token p95", "Preemptions"} & set(ch)


def test_triton_two_scans_filtered_by_model(sensor_run, make_ctx, clock):
    _, second = two_scans("triton", sensor_run, make_ctx, clock, "--model", "llama3")
    ch = channels(second)
    assert ch["Requests Running"] == 8 and ch["Requests Waiting"] == 4  # the embedder's 1 is not llama3's
    assert ch["KV Cache Usage"] == 75.0  # 3000 of 4000 blocks
    assert ch["Time To First Token p50"] == 300.0  # 100 + 400 x (50 - 20) / (80 - 20) ms
    assert ch["Time To First Token p95"] == 1750.0  # 500 + 1500 x (95 - 80) / (98 - 80) ms
    assert ch["Requests/s"] == 1.6667 and ch["Error Rate"] == 2.0
    assert "Generated Tokens/s" not in ch


def test_triton_without_model_sums_every_model(sensor_run, make_ctx, clock):
    _, second = two_scans("triton", sensor_run, make_ctx, clock)
    ch = channels(second)
    assert ch["Requests Waiting"] == 5 and ch["Requests/s"] == 10.0
    assert ch["Error Rate"] == pytest.approx(0.333)


def test_a_server_restart_resets_counters_without_negative_rates(sensor_run, make_ctx, clock):
    ctx = make_ctx()
    with FakeModelServer(page=page("vllm", 2)) as srv:
        sensor_run("inference", ["--url", srv.url], ctx)
        clock.advance(60)
        srv.page = page("vllm", 1)  # every counter went down: the server restarted
        result = sensor_run("inference", ["--url", srv.url], ctx)
    ch = channels(result)
    assert "Generated Tokens/s" not in ch and "Time To First Token p95" not in ch
    assert "Counters restarted" in result.message()
    assert all(v >= 0 for v in ch.values())


def test_wrong_kind_and_foreign_pages_are_clean_errors(sensor_run, make_ctx):
    with FakeModelServer(page=page("tgi", 1)) as srv:
        wrong = sensor_run("inference", ["--url", srv.url, "--kind", "vllm"], make_ctx())
        srv.page = "# TYPE node_load1 gauge\nnode_load1 0.5\n"
        foreign = sensor_run("inference", ["--url", srv.url], make_ctx())
        srv.page = "<html>login</html>"
        garbage = sensor_run("inference", ["--url", srv.url], make_ctx())
        srv.page = None
        missing = sensor_run("inference", ["--url", srv.url], make_ctx())
    assert wrong.error and "looks like TGI, not vLLM" in wrong.message()
    assert foreign.error and "no vLLM, TGI or Triton metrics" in foreign.message()
    assert garbage.error and "not a Prometheus metrics page" in garbage.message()
    assert missing.error and "HTTP 404" in missing.message()


def test_nothing_listening_is_an_actionable_error(sensor_run, make_ctx):
    result = sensor_run("inference", ["--url", closed_port_url()], make_ctx())
    assert result.error and "refused" in result.message() and "Is the model server running" in result.message()


@pytest.mark.parametrize("url", ["ftp://x", "gpu-node:8000", "http://user:pw@host:8000"])
def test_bad_urls_name_the_parameter(sensor_run, make_ctx, url):
    result = sensor_run("inference", ["--url", url], make_ctx())
    assert result.error and result.message().startswith("Parameter --url:")
    assert "pw@" not in result.message()


# -- the streamed probe --------------------------------------------------------------------
def probe(sensor_run, make_ctx, srv_or_url, *args):
    url = srv_or_url if isinstance(srv_or_url, str) else srv_or_url.url
    return sensor_run("inference", ["--url", url, "--kind", "openai", *args], make_ctx())


def test_probe_ok_times_first_token_and_total(sensor_run, make_ctx):
    with FakeModelServer(tokens=["O", "K", "."], first_delay=0.2, token_delay=0.1) as srv:
        result = probe(sensor_run, make_ctx, srv, "--probe-prompt", "Say OK", "--probe-max-tokens", "3")
        body = srv.bodies[-1]
    ch = channels(result)
    assert ch["Probe Outcome"] == 0 and ch["Probe Availability"] == 100
    assert 200 <= ch["Probe Time To First Token"] < 1000
    assert ch["Probe Latency"] >= ch["Probe Time To First Token"] + 200  # two more tokens 100 ms apart
    assert ch["Probe Latency"] < 2000
    # one bounded request: the model from /v1/models, small max_tokens, streamed
    assert body == {"model": "test-model", "messages": [{"role": "user", "content": "Say OK"}],
                    "max_tokens": 3, "temperature": 0, "stream": True}
    assert "probe ok in" in result.text


def test_probe_slow(sensor_run, make_ctx):
    with FakeModelServer(first_delay=0.4) as srv:
        result = probe(sensor_run, make_ctx, srv, "--probe-slow", "0.2s", "--model", "m1")
        assert srv.bodies[-1]["model"] == "m1"
    ch = channels(result)
    assert ch["Probe Outcome"] == 1 and ch["Probe Availability"] == 100
    assert ch["Probe Latency"] >= 400
    assert "longer than --probe-slow" in result.message()


@pytest.mark.parametrize("fault, detail", [
    ("http500", "HTTP 500"),  # the status only: a remote error body is never echoed
    ("no_done", "without [DONE]"),
    ("malformed", "malformed JSON"),
    ("no_tokens", "held no token"),
])
def test_probe_errors(sensor_run, make_ctx, fault, detail):
    with FakeModelServer(fault=fault) as srv:
        result = probe(sensor_run, make_ctx, srv)
    ch = channels(result)
    assert not result.error
    assert ch["Probe Outcome"] == 2 and ch["Probe Availability"] == 0
    assert detail in result.message()
    assert "CUDA out of memory" not in result.message()


def test_probe_timeout_is_an_error_not_a_hang(sensor_run, make_ctx):
    with FakeModelServer(first_delay=3.0) as srv:
        result = probe(sensor_run, make_ctx, srv, "--timeout", "1s", "--model", "m")
    ch = channels(result)
    assert ch["Probe Outcome"] == 2 and ch["Probe Availability"] == 0
    assert 900 <= ch["Probe Latency"] < 2900


def test_probe_refused(sensor_run, make_ctx):
    result = probe(sensor_run, make_ctx, closed_port_url(), "--model", "m")
    ch = channels(result)
    assert ch["Probe Outcome"] == 3 and ch["Probe Availability"] == 0
    assert "Probe Latency" not in ch
    assert "probe refused" in result.text


def test_metrics_down_with_a_probe_still_reports_the_probe(sensor_run, make_ctx):
    result = sensor_run("inference", ["--url", closed_port_url(), "--probe-prompt", "hi", "--model", "m"],
                        make_ctx())
    assert not result.error
    assert channels(result)["Probe Outcome"] == 3
    assert "Metrics unavailable" in result.message()


def test_metrics_and_probe_together(sensor_run, make_ctx, clock):
    ctx = make_ctx()
    with FakeModelServer(page=page("vllm", 1)) as srv:
        sensor_run("inference", ["--url", srv.url, "--probe-prompt", "hi"], ctx)
        clock.advance(60)
        srv.page = page("vllm", 2)
        result = sensor_run("inference", ["--url", srv.url, "--probe-prompt", "hi"], ctx)
        # the model came from the metrics' model_name label, not from /v1/models
        assert srv.bodies[-1]["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    ch = channels(result)
    assert ch["Probe Outcome"] == 0 and ch["Generated Tokens/s"] == 122.5


# -- secrets ---------------------------------------------------------------------------
SECRET = "sk-test-4f7c2b9e1d0a"


def test_api_key_from_the_environment_is_sent_and_never_shown(tmp_path):
    with FakeModelServer(page=page("vllm", 1), require_key=SECRET) as srv:
        env = cli_env(tmp_path / "state", {"OPENAI_API_KEY": SECRET, "PRTG_AI_LOG_LEVEL": "debug"})
        doc, proc = run_cli(["run", "inference", "--url", srv.url, "--probe-prompt", "hi"], env)
        assert doc["prtg"]["result"][0]["channel"] == "Requests Running"
        assert {c["channel"]: c["value"] for c in doc["prtg"]["result"]}["Probe Outcome"] == 0
        # the key went to the server in the Authorization header
        assert srv.requests[-1][2]["Authorization"] == f"Bearer {SECRET}"
    assert SECRET not in proc.stdout and SECRET not in proc.stderr
    for f in (tmp_path / "state").rglob("*"):
        if f.is_file():
            assert SECRET not in f.read_text(errors="replace"), f


def test_a_rejected_key_is_reported_without_the_key(tmp_path):
    with FakeModelServer(page=page("vllm", 1), require_key="the-right-key") as srv:
        env = cli_env(tmp_path / "state", {"PRTG_AI_INFERENCE_API_KEY": SECRET})
        doc, proc = run_cli(["run", "inference", "--url", srv.url, "--kind", "openai",
                             "--api-key", SECRET, "--model", "m"], env)
    text = proc.stdout
    assert SECRET not in text and SECRET not in proc.stderr
    chans = {c["channel"]: c["value"] for c in doc["prtg"]["result"]}
    assert chans["Probe Outcome"] == 2 and "HTTP 401" in doc["prtg"]["text"]


def test_cli_v2_and_baseline_on_an_inference_channel(tmp_path):
    env = cli_env(tmp_path / "state")
    with FakeModelServer(page=page("vllm", 1)) as srv:
        doc, _ = run_cli(["run", "inference", "--url", srv.url, "--baseline", "Requests Waiting"], env)
        chans = {c["channel"]: c for c in doc["prtg"]["result"]}
        assert chans["Requests Waiting Baseline State"]["value"] == 0  # learning
        assert chans["Requests Waiting Deviation"]["value"] == 0
        v2, _ = run_cli(["run", "inference", "--url", srv.url, "--format", "v2"], env)
    ids = {c["name"]: c["id"] for c in v2["channels"]}
    assert ids["Requests Running"] == 11 and ids["KV Cache Usage"] == 13
