"""``inference`` on /metrics pages captured from real model servers (served on 127.0.0.1).

Pages and the hand-worked expected values: ``tests/testcases/inference/real/SOURCE.md``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes.inference_server import FakeModelServer, closed_port_url
from prtg_ai.inference import metrics as im
from support import channels

REAL = Path(__file__).resolve().parents[1] / "testcases" / "inference" / "real"


def page(case: str, name: str = "metrics.prom") -> str:
    return (REAL / case / name).read_text(encoding="utf-8")


def one_scan(case, sensor_run, *args):
    with FakeModelServer(page=page(case)) as srv:
        return sensor_run("inference", ["--url", srv.url, *args])


def test_vllm_v1_data_parallel_averages_percentages_and_sums_counts(sensor_run, make_ctx, clock):
    ctx = make_ctx()
    with FakeModelServer(page=page("vllm_v1_dp", "metrics.1.prom")) as srv:
        first = sensor_run("inference", ["--url", srv.url], ctx)
        clock.advance(60)
        srv.page = page("vllm_v1_dp", "metrics.2.prom")
        second = sensor_run("inference", ["--url", srv.url], ctx)
    assert channels(first)["KV Cache Usage"] == 60.0  # mean(60, 60), not 120 capped to 100
    ch = channels(second)
    assert ch["Requests Running"] == 10 and ch["Requests Waiting"] == 3
    assert ch["KV Cache Usage"] == 60.0  # mean(70, 50)
    assert ch["Generated Tokens/s"] == 90.0 and ch["Prompt Tokens/s"] == 30.0
    assert ch["Requests/s"] == 0.5 and ch["Preemptions"] == 3.0
    assert ch["Time To First Token p50"] == 187.5 and ch["Time To First Token p95"] == 500.0


def test_triton_trtllm_backend_queue_and_kv_fraction_are_the_truth(sensor_run):
    result = one_scan("triton_trtllm", sensor_run)
    ch = channels(result)
    assert result.text.startswith("Triton at ")
    assert ch["Requests Waiting"] == 1  # nv_trt_llm waiting, while Triton's pending count says 0
    assert ch["KV Cache Usage"] == 48.75  # kv_cache_block_type="fraction" 0.4875
    assert ch["Requests Running"] == 0


def test_triton_without_trtllm_uses_the_pending_count(sensor_run):
    result = one_scan("triton_datadog", sensor_run)
    ch = channels(result)
    assert ch["Requests Waiting"] == 0 and "KV Cache Usage" not in ch and "Requests Running" not in ch


@pytest.mark.parametrize("kind", ["auto", "vllm"])
def test_ray_serve_vllm_pages_are_vllm(sensor_run, kind):
    result = one_scan("ray_serve_vllm", sensor_run, "--kind", kind)
    assert not result.error, result.message()
    ch = channels(result)
    assert result.text.startswith("vLLM at ")
    assert ch["Requests Running"] == 0 and ch["Requests Waiting"] == 0
    assert ch["KV Cache Usage"] == 0.01  # 5.88e-05 x 100 = 0.0059 %
    samples = im.parse(page("ray_serve_vllm"))
    assert im.detect_kind(samples) == "vllm"
    assert im.models(samples, "vllm") == ["neuralmagic/Meta-Llama-3.1-70B-Instruct-FP8"]
    assert im.snapshot(samples, "vllm")["counters"] == {"generated_tokens": 300.0, "prompt_tokens": 58.0}


def test_vllm_datadog_page(sensor_run):
    result = one_scan("vllm_datadog", sensor_run)
    ch = channels(result)
    assert result.text.startswith("vLLM at ")
    assert ch["Requests Running"] == 0 and ch["Requests Waiting"] == 0 and ch["KV Cache Usage"] == 0.0
    snap = im.snapshot(im.parse(page("vllm_datadog")), "vllm")
    assert snap["counters"] == {"generated_tokens": 7.0, "prompt_tokens": 5.0, "requests": 1.0, "preemptions": 0.0}
    assert snap["hists"]["itl"]["buckets"][-1] == ["+Inf", 6.0]  # time_per_output_token (V0 name)


def test_tgi_datadog_page(sensor_run):
    result = one_scan("tgi_datadog", sensor_run)
    ch = channels(result)
    assert result.text.startswith("TGI at ")
    assert ch["Requests Running"] == 0 and ch["Requests Waiting"] == 0 and "KV Cache Usage" not in ch
    snap = im.snapshot(im.parse(page("tgi_datadog")), "tgi")
    assert snap["counters"] == {"prompt_tokens": 662.0, "requests": 111.0, "failures": 2.0}


def test_a_model_that_matches_nothing_warns_and_names_the_models_present(sensor_run):
    result = one_scan("triton_datadog", sensor_run, "--model", "llama3")
    assert result.warning
    assert ("--model llama3 matches no model on the metrics page (models present: densenet_onnx, "
            "inception_graphdef, simple, simple_dyna_sequence, simple_identity and 3 more)") in result.message()
    assert "model not found" in result.text


def test_model_names_from_a_page_are_sanitised_and_capped():
    hostile = 'x"><script>' + "a" * 200
    assert im.safe_name(hostile) == 'x??' + "?script?" + "a" * 53 + "..."
    assert len(im.safe_name(hostile)) == im.MAX_MODEL_NAME + 3


def test_probe_without_model_reports_refused_when_nothing_listens(sensor_run):
    url = closed_port_url()
    result = sensor_run("inference", ["--url", url, "--probe-prompt", "hi"])
    assert not result.error, result.message()
    ch = channels(result)
    assert ch["Probe Outcome"] == 3 and ch["Probe Availability"] == 0  # refused
    assert "probe refused" in result.text
    openai = sensor_run("inference", ["--url", url, "--kind", "openai"])
    assert channels(openai)["Probe Outcome"] == 3


def test_a_404_names_the_real_parameter(sensor_run):
    with FakeModelServer(page=None) as srv:
        result = sensor_run("inference", ["--url", srv.url])
    assert result.error
    assert "--metrics-url" in result.message() and "--metrics-path" not in result.message()
