"""Write the recorded metrics pages of each kind: two scans, 60 s apart.

``python tests/testcases/inference/make_fixtures.py`` rewrites ``<kind>/metrics.1.prom``
and ``<kind>/metrics.2.prom``. The second scan is the first plus the deltas below,
so the tests' expected percentiles and rates can be worked out by hand (they are,
in the tests). Metric names, types, labels and HELP texts follow each project's
published format; see SOURCE.md.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def hist(name: str, help_: str, labels: str, bounds: list, base: list, delta: list,
         sums: tuple, scan: int) -> str:
    """A cumulative histogram; ``base``/``delta`` are cumulative counts per bound (+Inf last)."""
    counts = [b + (d if scan == 2 else 0) for b, d in zip(base, delta)]
    total_sum = sums[0] + (sums[1] if scan == 2 else 0)
    # TGI's exporter (metrics-exporter-prometheus) writes no HELP and no empty braces.
    lines = ([f"# HELP {name} {help_}"] if help_ else []) + [f"# TYPE {name} histogram"]
    sep = "," if labels else ""
    braces = f"{{{labels}}}" if labels else ""
    for le, c in zip([*bounds, "+Inf"], counts):
        lines.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {float(c)}')
    lines.append(f"{name}_sum{braces} {total_sum}")
    lines.append(f"{name}_count{braces} {float(counts[-1])}")
    return "\n".join(lines)


def vllm(scan: int) -> str:
    m = 'model_name="meta-llama/Llama-3.1-8B-Instruct"'
    two = scan == 2
    parts = [
        "# HELP vllm:num_requests_running Number of requests currently running on GPU.",
        "# TYPE vllm:num_requests_running gauge",
        f"vllm:num_requests_running{{{m}}} {12.0 if two else 9.0}",
        "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
        "# TYPE vllm:num_requests_waiting gauge",
        f"vllm:num_requests_waiting{{{m}}} {3.0 if two else 0.0}",
        "# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.",
        "# TYPE vllm:gpu_cache_usage_perc gauge",
        f"vllm:gpu_cache_usage_perc{{{m}}} {0.4275 if two else 0.31}",
        "# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.",
        "# TYPE vllm:num_preemptions_total counter",
        f"vllm:num_preemptions_total{{{m}}} {7.0 + (3 if two else 0)}",
        "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
        "# TYPE vllm:prompt_tokens_total counter",
        f"vllm:prompt_tokens_total{{{m}}} {1234000.0 + (30000 if two else 0)}",
        "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
        "# TYPE vllm:generation_tokens_total counter",
        f"vllm:generation_tokens_total{{{m}}} {987650.0 + (7350 if two else 0)}",
        "# HELP vllm:request_success_total Count of successfully processed requests.",
        "# TYPE vllm:request_success_total counter",
        f'vllm:request_success_total{{finished_reason="stop",{m}}} {4100.0 + (90 if two else 0)}',
        f'vllm:request_success_total{{finished_reason="length",{m}}} {310.0 + (10 if two else 0)}',
        f'vllm:request_success_total{{finished_reason="abort",{m}}} 2.0',
        hist("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", m,
             [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0],
             [0, 0, 3, 40, 300, 1100, 2200, 3300, 4200, 4380, 4405, 4410, 4412, 4412, 4412, 4412, 4412],
             [0, 0, 0, 0, 0, 10, 30, 60, 90, 98, 100, 100, 100, 100, 100, 100, 100], (612.5, 14.25), scan),
        hist("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", m,
             [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5],
             [0, 90000, 700000, 900000, 960000, 980000, 985000, 985500, 985600, 985640, 985645, 985648,
              985648, 985648],
             [0, 200, 700, 900, 960, 990, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000], (45120.0, 47.9), scan),
        hist("vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.", m,
             [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0],
             [0, 2, 30, 100, 400, 1500, 2600, 4000, 4380, 4410, 4412, 4412, 4412, 4412, 4412, 4412],
             [0, 0, 0, 0, 5, 20, 50, 90, 100, 100, 100, 100, 100, 100, 100, 100], (11200.0, 330.0), scan),
        "# HELP http_requests_total Total number of requests by method, status and handler.",
        "# TYPE http_requests_total counter",
        f'http_requests_total{{handler="/v1/chat/completions",method="POST",status="2xx"}} {4400.0 + (98 if two else 0)}',
        f'http_requests_total{{handler="/v1/chat/completions",method="POST",status="5xx"}} {12.0 + (2 if two else 0)}',
        f'http_requests_total{{handler="/v1/chat/completions",method="POST",status="4xx"}} 40.0',
        f'http_requests_total{{handler="/metrics",method="GET",status="2xx"}} {880.0 + (1 if two else 0)}',
        f'http_requests_total{{handler="/health",method="GET",status="5xx"}} {3.0 + (5 if two else 0)}',
    ]
    return "\n".join(parts) + "\n"


def tgi(scan: int) -> str:
    two = scan == 2
    parts = [
        "# TYPE tgi_batch_current_size gauge",
        f"tgi_batch_current_size {6 if two else 4}",
        "# TYPE tgi_queue_size gauge",
        f"tgi_queue_size {9 if two else 1}",
        "# TYPE tgi_batch_current_max_tokens gauge",
        "tgi_batch_current_max_tokens 16000",
        "# TYPE tgi_request_count counter",
        f"tgi_request_count {2000 + (50 if two else 0)}",
        "# TYPE tgi_request_success counter",
        f"tgi_request_success {1990 + (49 if two else 0)}",
        "# TYPE tgi_request_failure counter",
        f'tgi_request_failure{{err="validation"}} {10 + (1 if two else 0)}',
        hist("tgi_request_generated_tokens", "", "", [1, 10, 100, 1000],
             [0, 100, 1500, 1990, 1990], [0, 0, 20, 49, 49], (240000, 6000), scan),
        hist("tgi_request_input_length", "", "", [1, 10, 100, 1000],
             [0, 50, 900, 1990, 1990], [0, 0, 10, 49, 49], (480000, 12000), scan),
        hist("tgi_request_mean_time_per_token_duration", "", "",
             [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512],
             [0, 0, 0, 0, 5, 400, 1700, 1980, 1990, 1990, 1990], [0, 0, 0, 0, 0, 10, 40, 48, 49, 49, 49],
             (101.5, 2.6), scan),
        hist("tgi_request_duration", "", "", [0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384],
             [0, 0, 0, 100, 1200, 1900, 1985, 1990, 1990], [0, 0, 0, 5, 30, 45, 49, 49, 49], (5100.0, 140.0), scan),
    ]
    return "\n".join(parts) + "\n"


def triton(scan: int) -> str:
    two = scan == 2
    llama, emb = 'model="llama3",version="1"', 'model="embedder",version="1"'
    parts = [
        "# HELP nv_inference_request_success Number of successful inference requests, all batch sizes",
        "# TYPE nv_inference_request_success counter",
        f"nv_inference_request_success{{{llama}}} {5000 + (98 if two else 0)}",
        f"nv_inference_request_success{{{emb}}} {90000 + (500 if two else 0)}",
        "# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes",
        "# TYPE nv_inference_request_failure counter",
        f'nv_inference_request_failure{{{llama},reason="BACKEND"}} {7 + (2 if two else 0)}',
        f'nv_inference_request_failure{{{emb},reason="BACKEND"}} 0',
        "# HELP nv_inference_count Number of inferences performed (does not include cached requests)",
        "# TYPE nv_inference_count counter",
        f"nv_inference_count{{{llama}}} {5000 + (98 if two else 0)}",
        "# HELP nv_inference_pending_request_count Instantaneous number of pending requests awaiting execution per-model.",
        "# TYPE nv_inference_pending_request_count gauge",
        f"nv_inference_pending_request_count{{{llama}}} {4 if two else 2}",
        f"nv_inference_pending_request_count{{{emb}}} 1",
        "# HELP nv_inference_request_duration_us Cumulative inference request duration in microseconds (includes cached requests)",
        "# TYPE nv_inference_request_duration_us counter",
        f"nv_inference_request_duration_us{{{llama}}} {9.1e9 + (1.7e8 if two else 0)}",
        hist("nv_inference_first_response_histogram_ms",
             "Duration from request to first response in milliseconds", llama, [100, 500, 2000, 5000],
             [900, 4100, 4950, 5000, 5007], [20, 80, 98, 100, 100], (1.2e6, 45000.0), scan),
        "# HELP nv_trt_llm_request_metrics TRT LLM request metrics",
        "# TYPE nv_trt_llm_request_metrics gauge",
        f'nv_trt_llm_request_metrics{{{llama},request_type="active"}} {8 if two else 5}',
        f'nv_trt_llm_request_metrics{{{llama},request_type="max"}} 64',
        f'nv_trt_llm_request_metrics{{{llama},request_type="scheduled"}} {8 if two else 5}',
        "# HELP nv_trt_llm_kv_cache_block_metrics TRT LLM KV cache block metrics",
        "# TYPE nv_trt_llm_kv_cache_block_metrics gauge",
        f'nv_trt_llm_kv_cache_block_metrics{{{llama},kv_cache_block_type="used"}} {3000 if two else 1000}',
        f'nv_trt_llm_kv_cache_block_metrics{{{llama},kv_cache_block_type="free"}} {1000 if two else 3000}',
        f'nv_trt_llm_kv_cache_block_metrics{{{llama},kv_cache_block_type="max"}} 4000',
        f'nv_trt_llm_kv_cache_block_metrics{{{llama},kv_cache_block_type="tokens_per"}} 64',
        "# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)",
        "# TYPE nv_gpu_utilization gauge",
        'nv_gpu_utilization{gpu_uuid="GPU-4a9c1c1e-7d8e-2b41-0f3a-5c0d3c1b9e77"} 0.93',
    ]
    return "\n".join(parts) + "\n"


def main() -> None:
    for kind, make in (("vllm", vllm), ("tgi", tgi), ("triton", triton)):
        folder = HERE / kind
        folder.mkdir(exist_ok=True)
        for scan in (1, 2):
            (folder / f"metrics.{scan}.prom").write_text(make(scan), encoding="utf-8")


if __name__ == "__main__":
    main()
