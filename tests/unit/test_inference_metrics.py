"""The pure metrics mapping of ``inference``: parsing, the per-kind table, histogram deltas."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from prtg_ai.inference import metrics as im

CASES = Path(__file__).resolve().parents[1] / "testcases" / "inference"
INF = math.inf


def load(kind: str, scan: int) -> dict:
    return im.parse((CASES / kind / f"metrics.{scan}.prom").read_text())


@pytest.mark.parametrize("q, expected", [(0.25, 0.25), (0.5, 0.5), (0.95, 0.95), (0.0, 0.0), (1.0, 1.0)])
def test_quantile_interpolates_like_prometheus(q, expected):
    # 10 observations <= 0.5, 10 more <= 1.0
    assert im.quantile(q, [(0.5, 10), (1.0, 20), (INF, 20)]) == pytest.approx(expected)


def test_quantile_edge_cases():
    assert im.quantile(0.5, [(1.0, 0), (INF, 0)]) is None  # no requests in the interval
    assert im.quantile(0.5, [(1.0, 5)]) is None  # no +Inf bucket: not a histogram
    assert im.quantile(0.99, [(1.0, 5), (2.0, 5), (INF, 10)]) == 2.0  # +Inf: the highest finite bound
    assert im.quantile(0.5, [(INF, 4), (2.0, 4)]) == pytest.approx(1.0)  # order of buckets does not matter


def test_every_kind_is_detected_from_its_page():
    assert [im.detect_kind(load(k, 1)) for k in ("vllm", "tgi", "triton")] == ["vllm", "tgi", "triton"]
    assert im.detect_kind(im.parse("# TYPE up gauge\nup 1\n")) is None


def test_counters_without_total_suffix_are_found():
    # prometheus_client renames counter samples to *_total; TGI and Triton write them without
    samples = im.parse("# TYPE tgi_request_count counter\ntgi_request_count 5\n")
    assert im.snapshot(samples, "tgi")["counters"]["requests"] == 5.0


def test_renamed_vllm_metrics_use_the_newer_name_first():
    text = ("# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{model_name=\"m\"} 0.5\n"
            "# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc{model_name=\"m\"} 0.9\n")
    assert im.snapshot(im.parse(text), "vllm")["gauges"]["kv_cache"] == 50.0


def test_interval_rates_and_percentiles_per_kind():
    iv = im.interval(im.snapshot(load("vllm", 1), "vllm"), im.snapshot(load("vllm", 2), "vllm"), 60.0)
    assert iv.rates["generated_tokens"] == 122.5 and iv.deltas["preemptions"] == 3
    assert iv.percentiles["ttft_p95"] == pytest.approx(406.25)
    assert iv.observations["ttft"] == 100
    assert im.error_rate("vllm", iv) == 2.0
    iv = im.interval(im.snapshot(load("tgi", 1), "tgi"), im.snapshot(load("tgi", 2), "tgi"), 30.0)
    assert iv.rates["generated_tokens"] == 200.0  # the same 6000 tokens over 30 s


def test_no_interval_without_a_comparable_previous_scan():
    cur = im.snapshot(load("vllm", 2), "vllm")
    assert im.interval(None, cur, 60) is None
    assert im.interval(im.snapshot(load("tgi", 1), "tgi"), cur, 60) is None  # another kind
    assert im.interval(im.snapshot(load("vllm", 1), "vllm"), cur, 0) is None  # clock step


def test_a_changed_bucket_layout_gives_no_percentile_rather_than_a_wrong_one():
    prev = im.snapshot(load("vllm", 1), "vllm")
    prev["hists"]["ttft"]["buckets"] = [b for b in prev["hists"]["ttft"]["buckets"] if b[0] != "0.1"]
    iv = im.interval(prev, im.snapshot(load("vllm", 2), "vllm"), 60)
    assert "ttft_p95" not in iv.percentiles and "itl_p95" in iv.percentiles


def test_snapshots_survive_json():
    import json

    snap = im.snapshot(load("triton", 2), "triton", "llama3")
    assert json.loads(json.dumps(snap, allow_nan=False)) == snap
    assert snap["hists"]["ttft"]["buckets"][-1] == ["+Inf", 5107.0]


def test_model_filter_keeps_unlabelled_series():
    samples = load("triton", 2)
    assert im.models(samples, "triton") == ["embedder", "llama3"]
    snap = im.snapshot(samples, "triton", "embedder")
    assert snap["gauges"]["waiting"] == 1 and "running" not in snap["gauges"]
