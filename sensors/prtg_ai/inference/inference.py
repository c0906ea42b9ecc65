"""``inference``: health of a model server (vLLM, TGI, Triton, any OpenAI-compatible API).

Reads (all through ``backends.http_metrics``):

* the server's Prometheus metrics page (``--metrics-url``, default ``<url>/metrics``):
  queue depth, running requests, KV-cache use, and, between two scans, latency
  percentiles from the histogram deltas, token and request rates, error rate and
  preemptions (which metric means what per kind: ``inference_metrics.METRICS``);
* optionally one synthetic streamed chat completion (``--probe-prompt``, or
  ``--kind openai``): outcome, latency and time to first token;
* optionally the resident memory of the server's processes (``--process`` or
  ``--pid``) and its least-squares slope over ``--leak-window``: a slow leak shows
  as MB/h long before the process is killed.

Needs: HTTP access to the server; an API key for protected endpoints from
``--api-key`` or the environment (``PRTG_AI_INFERENCE_API_KEY``, ``OPENAI_API_KEY``),
scrubbed from every output; a writable state folder for rates and the trend.

Through the agent (``ctx.policy`` set), the URLs must lie inside ``--allow-url``,
the key comes only from the agent's ``--api-key-file`` for that origin, every way
a fetch can fail reads the same (no port scanner), and ``--process`` matches names.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from prtg_ai.inference import metrics as im
from prtg_ai.backends import http_metrics
from prtg_ai.core.errors import ConfigError, SensorError
from prtg_ai.core.params import Param, format_duration
from prtg_ai.core.sensor import Sensor
from prtg_ai.core.state import StateStore
from prtg_ai.prtg.model import SensorResult
from prtg_ai.maths.trend import least_squares_slope

MIB = 1024 ** 2
MAX_SAMPLES = 720
MIN_TREND_SAMPLES = 3
# Rates over a gap longer than this describe yesterday, not this scan.
MAX_INTERVAL_S = 6 * 3600.0
CLOCK_STEP_TOLERANCE_S = 2.0
DEFAULT_PROBE_PROMPT = "Reply with the single word OK."
KIND_NAMES = {"vllm": "vLLM", "tgi": "TGI", "triton": "Triton", "openai": "OpenAI-compatible server",
              "auto": "Model server"}
# Probe Outcome lookup values (prtgai.inference.probe)
PROBE_OK, PROBE_SLOW, PROBE_ERROR, PROBE_REFUSED = range(4)
PROBE_CODES = {"ok": PROBE_OK, "error": PROBE_ERROR, "refused": PROBE_REFUSED}


def _checked_url(name: str, raw: str) -> str:
    """An http(s) URL with a host and no credentials (they would be logged and echoed)."""
    url = raw.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(name, "is not a valid http:// or https:// URL") from None
    if parts.username or parts.password or "@" in parts.netloc:
        raise ConfigError(name, "credentials in the URL would be logged; use --api-key instead")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(name, f"{url[:200]!r} is not an http:// or https:// URL with a host")
    return url


class InferenceSensor(Sensor):
    id = "inference"
    title = "Inference server"
    summary = ("Queue depth, KV cache, time to first token, inter-token latency, tokens/s, errors and "
               "preemptions of vLLM, TGI or Triton; a streamed probe; the server's memory-leak trend.")
    interval = 60
    params = (
        Param("url", "str", "base URL of the model server, e.g. http://gpu-node:8000", required=True,
              state_key=True, metavar="URL"),
        Param("kind", "choice", "server kind (auto detects it from the metric names)", default="auto",
              choices=("auto", "vllm", "tgi", "triton", "openai"), state_key=True, metavar="KIND"),
        Param("model", "str", "model name: filters the metrics and is the probe's model", state_key=True,
              metavar="NAME"),
        Param("metrics_url", "str", "metrics page (default: URL/metrics; Triton serves it on port 8002)",
              metavar="URL"),
        Param("probe_prompt", "str", "send this prompt as a streamed chat completion each scan", metavar="TEXT"),
        Param("probe_max_tokens", "int", "most tokens the probe asks for", default=8, minimum=1, maximum=64,
              metavar="N"),
        Param("probe_slow", "duration", "a probe slower than this is 'slow'", default=5.0, minimum=0.05,
              maximum=300.0, metavar="DURATION"),
        Param("timeout", "duration", "time allowed for the scan's requests together", default=10.0, minimum=0.5,
              maximum=50.0, metavar="DURATION"),
        Param("api_key", "str", "bearer token for the server", secret=True,
              env=("PRTG_AI_INFERENCE_API_KEY", "OPENAI_API_KEY"), metavar="KEY"),
        Param("process", "str", "server processes to watch for a memory leak (name glob or command-line text)",
              state_key=True, metavar="NAME"),
        Param("pid", "int", "server process id to watch for a memory leak", minimum=1, state_key=True,
              metavar="PID"),
        Param("leak_window", "duration", "memory trend window", default=6 * 3600.0, minimum=600.0,
              maximum=7 * 86400.0, metavar="DURATION"),
        Param("leak_warmup", "duration", "ignore memory growth this long after the server (re)starts",
              default=900.0, minimum=0.0, maximum=86400.0, metavar="DURATION"),
        Param("leak_warning", "float", "Memory Growth warning limit in MB/h", minimum=0.001, metavar="MB_PER_H"),
        Param("leak_error", "float", "Memory Growth error limit in MB/h", minimum=0.001, metavar="MB_PER_H"),
    )

    def run(self) -> SensorResult:
        url = self._base_url()
        kind = self.values["kind"]
        # One budget for every request of the scan: --timeout bounds the scan, not each request.
        deadline = self.ctx.monotonic() + self.values["timeout"]
        policy = self.ctx.policy
        probing = bool(self.values["probe_prompt"]) or kind == "openai"
        result = SensorResult()
        summary: list[str] = []

        samples, metrics_problem = None, None
        if kind != "openai":
            metrics_url = self._metrics_url(url)
            try:
                text = http_metrics.fetch_text(metrics_url, deadline, self._key(metrics_url), self.ctx.monotonic,
                                               policy=policy)
            except http_metrics.DestinationRefused as exc:
                raise ConfigError("metrics_url" if self.values["metrics_url"] else "url", exc.problem) from None
            except http_metrics.Unreachable as exc:
                if not probing:
                    raise self._opaque(metrics_url, exc) from None
                metrics_problem = self._opaque(metrics_url, exc).message()  # the probe still says the server is down
            except SensorError as exc:
                raise self._opaque(metrics_url, exc) from None
            else:
                samples = self._parse(text, metrics_url)
                kind = self._kind(samples, kind, metrics_url)
        snap = im.snapshot(samples, kind, self.values["model"]) if samples is not None else None
        absent = self._model_absent(samples, kind)

        probe = self._probe(url, samples, kind, deadline) if probing else None
        procs = self._processes()

        store = StateStore(self.ctx.state_dir)
        with store.session(self.id, self.state_identity(), max_samples=MAX_SAMPLES) as state:
            now = self.ctx.now()
            iv = self._interval(state, snap, now) if snap is not None else None
            trend = self._trend(state, procs, now) if procs is not None else None
            for note in state.notes:
                result.note(note)

        if absent is not None:
            result.warning = True
            result.note(absent)
            summary.append("model not found")
        if snap is not None:
            self._metric_channels(result, kind, snap, iv, summary)
        if metrics_problem:
            result.note(f"Metrics unavailable: {metrics_problem}")
        if probe is not None:
            self._probe_channels(result, probe, summary)
        if procs is not None:
            self._memory_channels(result, procs, trend, summary)
        result.text = f"{KIND_NAMES[kind]} at {url}" + (": " + ", ".join(summary) if summary else "")
        return result

    # -- parameters ------------------------------------------------------
    def _base_url(self) -> str:
        url = _checked_url("url", self.values["url"])
        if self.values["metrics_url"]:
            _checked_url("metrics_url", self.values["metrics_url"])
        if self.values["process"] and self.values["pid"]:
            raise ConfigError("process", "give --process or --pid, not both")
        if self.ctx.policy is not None and self.values["process"] and any(c in self.values["process"] for c in "/ ="):
            raise ConfigError("process", "through the agent, a process is matched by its name or a name glob only")
        return url

    def _metrics_url(self, url: str) -> str:
        if self.values["metrics_url"]:
            return _checked_url("metrics_url", self.values["metrics_url"])
        return url + "/metrics"

    def _key(self, url: str) -> str | None:
        """The API key for ``url``: the parameter (or, in a script, its placeholders); an agent's own key file.

        An agent client's URL never gets a key from the agent's environment (the agent
        removes those variables); only the operator's ``--api-key-file`` for that origin.
        """
        key = self.values["api_key"]
        if key or self.ctx.policy is None:
            return key
        return self.ctx.policy.key_for(url)

    def _opaque(self, where: str, exc: SensorError) -> SensorError:
        """For an agent client, one text for every way a fetch fails: no port or path scanner.

        Refused, timed out, 404 and "not a metrics page" would otherwise tell a token
        holder what listens where; ``prtg-ai run inference`` on the node says which it was.
        """
        if self.ctx.policy is None:
            return exc
        return SensorError(f"No usable metrics page at {where}.",
                           "Check the server with 'prtg-ai run inference --url ...' on the node itself.")

    def _parse(self, text: str, where: str) -> dict:
        try:
            return im.parse(text)
        except (ValueError, TypeError, IndexError):
            # The parser's message quotes the page: never echoed (it may be an internal page).
            raise self._opaque(where, SensorError(f"{where} is not a Prometheus metrics page.",
                                                  "Point --metrics-url at the server's /metrics endpoint.")) from None

    def _kind(self, samples: dict, kind: str, where: str) -> str:
        detected = im.detect_kind(samples)
        if kind == "auto":
            if detected is None:
                if self.ctx.policy is not None:
                    raise self._opaque(where, SensorError(where))
                raise SensorError(f"{where} carries no vLLM, TGI or Triton metrics.",
                                  "Set --kind, or check that --metrics-url is the model server's page.")
            return detected
        if detected is not None and detected != kind:
            raise ConfigError("kind", f"{where} looks like {KIND_NAMES[detected]}, not {KIND_NAMES[kind]}")
        return kind

    # -- metrics ---------------------------------------------------------
    def _model_absent(self, samples, kind: str) -> str | None:
        """A warning when ``--model`` names no model of the page, with the models it has."""
        model = self.values["model"]
        if not model or samples is None or kind not in im.METRICS or not im.METRICS[kind]["model_label"]:
            return None
        present = im.models(samples, kind)
        if model in present:
            return None
        have = f"models present: {im.shown_models(present)}" if present else "the page names no model"
        return f"--model {im.safe_name(model)} matches no model on the metrics page ({have})"

    def _interval(self, state, snap: dict, now: float) -> im.Interval | None:
        prev = state.data.get("metrics")
        seconds = now - prev["t"] if isinstance(prev, dict) and isinstance(prev.get("t"), (int, float)) else 0.0
        iv = im.interval(prev, snap, seconds) if 0 < seconds <= MAX_INTERVAL_S else None
        state.data["metrics"] = {**snap, "t": now}
        return iv

    def _metric_channels(self, result: SensorResult, kind: str, snap: dict, iv, summary: list[str]) -> None:
        gauges = snap["gauges"]
        if "running" in gauges:
            result.add(self.channel("requests_running", int(gauges["running"])))
        if "waiting" in gauges:
            result.add(self.channel("requests_waiting", int(gauges["waiting"])))
            summary.append(f"{int(gauges['waiting'])} waiting")
        if "kv_cache" in gauges:
            result.add(self.channel("kv_cache", round(min(100.0, max(0.0, gauges["kv_cache"])), 2)))
        if iv is None:
            result.note("Collecting a baseline: rates and latency percentiles start with the next scan")
            return
        for key in ("ttft_p50", "ttft_p95", "itl_p50", "itl_p95", "e2e_p95"):
            if key in iv.percentiles:
                result.add(self.channel(key, round(iv.percentiles[key], 3)))
        if "ttft_p95" in iv.percentiles:
            summary.append(f"TTFT p95 {iv.percentiles['ttft_p95']:.0f} ms")
        rates = iv.rates
        if "generated_tokens" in rates:
            result.add(self.channel("tokens_per_second", round(rates["generated_tokens"], 3)))
            summary.append(f"{rates['generated_tokens']:.1f} tok/s")
        if "prompt_tokens" in rates:
            result.add(self.channel("prompt_tokens_per_second", round(rates["prompt_tokens"], 3)))
        if "requests" in rates:
            result.add(self.channel("requests_per_second", round(rates["requests"], 4)))
        errors = im.error_rate(kind, iv)
        if errors is not None:
            result.add(self.channel("error_rate", round(errors, 3)))
        if "preemptions" in rates:
            result.add(self.channel("preemptions", round(rates["preemptions"] * 60.0, 3)))
        if iv.reset:
            result.note(f"Counters restarted since the last scan (server restart?): {', '.join(sorted(iv.reset))}")

    # -- probe -----------------------------------------------------------
    def _probe(self, url: str, samples, kind: str, deadline: float):
        model = self.values["model"]
        if not model and samples is not None and kind in im.METRICS:
            names = im.models(samples, kind)
            model = names[0] if len(names) == 1 else None
        if not model:
            try:
                names = http_metrics.list_models(url, deadline, self._key(url), self.ctx.monotonic,
                                                 self.ctx.policy)
            except http_metrics.DestinationRefused as exc:
                raise ConfigError("url", exc.problem) from None
            except http_metrics.Unreachable as exc:  # nothing listens: that is the answer
                return http_metrics.ProbeResult("refused", detail=exc.problem)
            model = names[0] if names else None
        if not model:
            return http_metrics.ProbeResult("error", detail="no model named (--model) and /v1/models lists none")
        prompt = self.values["probe_prompt"] or DEFAULT_PROBE_PROMPT
        try:
            probe = http_metrics.probe_chat(url, model, prompt, self.values["probe_max_tokens"], deadline,
                                            self._key(url), self.ctx.monotonic, self.ctx.policy)
        except http_metrics.DestinationRefused as exc:
            raise ConfigError("url", exc.problem) from None
        if self.ctx.policy is not None and probe.outcome != "ok":
            # Refused, timed out or an error status look alike to an agent client (no port scanner).
            probe = http_metrics.ProbeResult("error", probe.total_s if probe.outcome != "refused" else None,
                                             detail="the server gave no usable answer")
        return probe

    def _probe_channels(self, result: SensorResult, probe, summary: list[str]) -> None:
        code = PROBE_CODES[probe.outcome]
        slow = self.values["probe_slow"]
        if code == PROBE_OK and probe.total_s > slow:
            code = PROBE_SLOW
        result.add(self.channel("probe_outcome", code))
        result.add(self.channel("probe_available", 100 if code in (PROBE_OK, PROBE_SLOW) else 0))
        if probe.total_s is not None:
            result.add(self.channel("probe_latency", round(probe.total_s * 1000.0, 3)))
        if probe.ttft_s is not None:
            result.add(self.channel("probe_ttft", round(probe.ttft_s * 1000.0, 3)))
        if code == PROBE_SLOW:
            result.note(f"Probe took {probe.total_s:.2f} s, longer than --probe-slow {format_duration(slow)}")
        elif code != PROBE_OK:
            result.note(f"Probe failed: {probe.detail}")
        word = {PROBE_OK: "ok", PROBE_SLOW: "slow", PROBE_ERROR: "error", PROBE_REFUSED: "refused"}[code]
        summary.append(f"probe {word}" + (f" in {probe.total_s * 1000:.0f} ms" if code <= PROBE_SLOW else ""))

    # -- memory trend ----------------------------------------------------
    def _processes(self):
        pattern, pid = self.values["process"], self.values["pid"]
        if not pattern and not pid:
            return None
        return http_metrics.process_memory(pattern, pid, http_metrics.own_lineage(),
                                           cmdline=self.ctx.policy is None)

    def _trend(self, state, procs: list, now: float) -> dict:
        window, warmup = self.values["leak_window"], self.values["leak_warmup"]
        signature = sorted([p.pid, round(p.started, 2)] for p in procs)
        info = state.data.get("procs")
        samples = [s for s in state.samples if isinstance(s, list) and len(s) == 2]
        restarted = None
        if not isinstance(info, dict) or info.get("sig") != signature:
            restarted = "the server's processes changed" if isinstance(info, dict) else None
            info, samples = {"sig": signature, "since": now}, []
        elif samples and now < samples[-1][0] - CLOCK_STEP_TOLERANCE_S:
            samples, restarted = [s for s in samples if s[0] <= now], "the clock moved back"
        rss = sum(p.rss for p in procs)
        warming = now < info["since"] + warmup
        if procs and not warming:
            samples.append([now, rss])
        samples = [s for s in samples if s[0] >= now - window][-MAX_SAMPLES:]
        state.samples = samples
        state.data["procs"] = info
        points = [(float(t), y / MIB) for t, y in samples]
        span = points[-1][0] - points[0][0] if points else 0.0
        needed = max(0.1 * window, 600.0)
        slope = least_squares_slope(points) if len(points) >= MIN_TREND_SAMPLES and span >= needed else None
        return {"rss": rss, "slope": slope, "points": len(points), "span": span, "needed": needed,
                "warming": warming, "restarted": restarted}

    def _memory_channels(self, result: SensorResult, procs: list, trend: dict, summary: list[str]) -> None:
        result.add(self.channel("server_processes", len(procs)))
        if not procs:
            what = f"--pid {self.values['pid']}" if self.values["pid"] else f"--process {self.values['process']!r}"
            result.note(f"No process matches {what}")
            return
        result.add(self.channel("server_memory", trend["rss"]))
        if trend["restarted"]:
            result.note(f"Memory trend restarted: {trend['restarted']}")
        if trend["slope"] is None:
            why = "the server started recently (--leak-warmup)" if trend["warming"] else (
                f"{trend['points']} sample(s) over {format_duration(round(trend['span']))}, "
                f"the trend needs {MIN_TREND_SAMPLES} over {format_duration(round(trend['needed']))}")
            result.note(f"Memory trend: collecting a baseline ({why})")
            return
        overrides = {}
        if self.values["leak_warning"] is not None:
            overrides["limitmaxwarning"] = self.values["leak_warning"]
        if self.values["leak_error"] is not None:
            overrides["limitmaxerror"] = self.values["leak_error"]
        mb_per_h = trend["slope"] * 3600.0
        result.add(self.channel("memory_growth", round(mb_per_h, 3), **overrides))
        summary.append(f"memory {trend['rss'] / MIB:.0f} MB, {mb_per_h:+.1f} MB/h")
