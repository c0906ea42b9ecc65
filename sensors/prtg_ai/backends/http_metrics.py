"""Model-server I/O for the ``inference`` sensor: metrics page, streamed probe, process memory.

Reads, with ``requests`` (bounded size, timeouts, a total deadline):

* the Prometheus ``/metrics`` page of vLLM, TGI or Triton;
* one streamed OpenAI-compatible chat completion (``POST /v1/chat/completions``
  with ``stream: true`` and a small ``max_tokens``), timing the first token;
* ``GET /v1/models`` when no model is named;

and, with ``psutil``, the resident memory of the server's processes.

Needs: network access to the server; no permission beyond reading other users'
process memory figures (``/proc/<pid>/statm`` is world-readable on Linux; on
Windows, processes of other users need an administrator account).

Proxy variables are ignored (``trust_env`` off): a probe on the GPU node or in the
cluster talks to the model server directly, and an API key must not travel to a
proxy. Keys go only into the ``Authorization`` header, never into a message.
"""

from __future__ import annotations

import json
import time

import requests

from prtg_ai.core.deadline import doing, done
from prtg_ai.core.errors import SensorError

MAX_METRICS_BYTES = 8 * 1024 * 1024  # vLLM with many LoRA adapters: ~1 MB; 8 MB is a runaway page
MAX_PROBE_BYTES = 256 * 1024
MAX_MODELS_BYTES = 256 * 1024
CHUNK = 64 * 1024
USER_AGENT = "prtg-ai inference sensor"


class Unreachable(SensorError):
    """The server did not answer at all; ``refused`` when nothing listens on the port."""

    def __init__(self, problem: str, hint: str = "", refused: bool = False):
        super().__init__(problem, hint)
        self.refused = refused


def _where(url: str) -> str:
    """Scheme, host and port of ``url`` only: what a deadline message may name (no path, query or credentials)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}"
    except ValueError:
        return "the model server"


def _session(api_key: str | None) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.headers["User-Agent"] = USER_AGENT
    if api_key:
        session.headers["Authorization"] = f"Bearer {api_key}"
    return session


def _read_bounded(response, limit: int, deadline: float, monotonic) -> bytes:
    data = bytearray()
    for chunk in response.iter_content(CHUNK):
        data += chunk
        if len(data) > limit:
            raise SensorError(f"{response.url} sent more than {limit // 1024} KiB",
                              "Is --url the model server's metrics endpoint?")
        if monotonic() > deadline:
            raise SensorError(f"{response.url} did not finish sending within the timeout", "Raise --timeout.")
    return bytes(data)


def _unreachable(url: str, exc: Exception) -> Unreachable:
    if isinstance(exc, requests.Timeout):
        return Unreachable(f"No answer from {url} within the timeout.",
                           "Is the model server overloaded or the host down? Raise --timeout if it is slow.")
    refused = "refused" in str(exc).lower() or isinstance(getattr(exc, "__context__", None), ConnectionRefusedError)
    if refused:
        return Unreachable(f"Connection to {url} refused: nothing listens on that port.",
                           "Is the model server running, and is the port in --url right?", refused=True)
    return Unreachable(f"Cannot connect to {url} ({type(exc).__name__}).",
                       "Check the host name, the port, TLS and the firewall between the probe and the server.")


def fetch_text(url: str, timeout: float, api_key: str | None = None, monotonic=time.monotonic,
               limit: int = MAX_METRICS_BYTES) -> str:
    """GET ``url`` and return its text; raises ``Unreachable`` or ``SensorError`` with a hint."""
    deadline = monotonic() + timeout
    doing(f"HTTP GET of {_where(url)}")
    try:
        with _session(api_key) as session, session.get(url, timeout=(min(3.0, timeout), timeout),
                                                        stream=True) as response:
            if response.status_code in (401, 403):
                raise SensorError(f"{url} refused the request (HTTP {response.status_code}).",
                                  "Set the API key (--api-key, PRTG_AI_INFERENCE_API_KEY or OPENAI_API_KEY).")
            if response.status_code != 200:
                raise SensorError(f"{url} answered HTTP {response.status_code}.",
                                  "Is --url the model server, and --metrics-path its metrics page?")
            body = _read_bounded(response, limit, deadline, monotonic)
            done()
            return body.decode(response.encoding or "utf-8", errors="replace")
    except requests.RequestException as exc:
        raise _unreachable(url, exc) from None


def list_models(base_url: str, timeout: float, api_key: str | None = None, monotonic=time.monotonic) -> list[str]:
    """Model ids from ``GET /v1/models`` (empty when the server does not say)."""
    try:
        text = fetch_text(base_url + "/v1/models", timeout, api_key, monotonic, MAX_MODELS_BYTES)
        data = json.loads(text).get("data", [])
        return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
    except (SensorError, ValueError, AttributeError):
        return []


class ProbeResult:
    """One synthetic request: ``outcome`` is ok, error or refused (the sensor decides 'slow')."""

    __slots__ = ("outcome", "total_s", "ttft_s", "chunks", "detail")

    def __init__(self, outcome: str, total_s: float | None = None, ttft_s: float | None = None,
                 chunks: int = 0, detail: str = ""):
        self.outcome, self.total_s, self.ttft_s, self.chunks, self.detail = outcome, total_s, ttft_s, chunks, detail

    def __repr__(self) -> str:
        return f"ProbeResult({self.outcome}, total={self.total_s}, ttft={self.ttft_s}, chunks={self.chunks})"


def probe_chat(base_url: str, model: str, prompt: str, max_tokens: int, timeout: float,
               api_key: str | None = None, monotonic=time.monotonic) -> ProbeResult:
    """Send one streamed chat completion and time it; never raises for server faults."""
    url = base_url + "/v1/chat/completions"
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True}
    started = monotonic()
    deadline = started + timeout
    try:
        with _session(api_key) as session, session.post(url, json=body, stream=True,
                                                         timeout=(min(3.0, timeout), timeout)) as response:
            if response.status_code != 200:
                return ProbeResult("error", monotonic() - started,
                                   detail=f"HTTP {response.status_code}{_error_text(response)}")
            return _read_stream(response, started, deadline, monotonic)
    except requests.RequestException as exc:
        err = _unreachable(url, exc)
        outcome = "refused" if err.refused else "error"
        return ProbeResult(outcome, None if err.refused else monotonic() - started, detail=err.problem)


def _error_text(response) -> str:
    try:
        raw = response.raw.read(2048, decode_content=True).decode("utf-8", "replace")
        message = json.loads(raw).get("error", {})
        message = message.get("message") if isinstance(message, dict) else message
        return f": {str(message)[:200]}" if message else ""
    except Exception:  # an error page that is no JSON says nothing more useful
        return ""


def _read_stream(response, started: float, deadline: float, monotonic) -> ProbeResult:
    """Server-sent events: ``data: {json}`` lines until ``data: [DONE]``.

    ``chunk_size=None`` hands over each chunk as it arrives (model servers stream
    with chunked transfer encoding); a fixed size would wait for that many bytes
    and time the first token late.
    """
    ttft, chunks, received, done = None, 0, 0, False
    for line in response.iter_lines(chunk_size=None):
        received += len(line) + 1
        now = monotonic()
        if received > MAX_PROBE_BYTES:
            return ProbeResult("error", now - started, ttft, chunks, "the answer exceeded 256 KiB")
        if now > deadline:
            return ProbeResult("error", now - started, ttft, chunks, "the answer did not finish within the timeout")
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            done = True
            break
        try:
            event = json.loads(payload)
        except ValueError:
            return ProbeResult("error", now - started, ttft, chunks, "the stream carried malformed JSON")
        if isinstance(event, dict) and event.get("error"):
            return ProbeResult("error", now - started, ttft, chunks, "the server reported an error mid-stream")
        if _has_text(event):
            chunks += 1
            if ttft is None:
                ttft = now - started
    total = monotonic() - started
    if not done:
        return ProbeResult("error", total, ttft, chunks, "the stream ended without [DONE]")
    if ttft is None:
        return ProbeResult("error", total, None, 0, "the answer held no token")
    return ProbeResult("ok", total, ttft, chunks)


def _has_text(event) -> bool:
    try:
        choice = event["choices"][0]
    except (KeyError, IndexError, TypeError):
        return False
    delta = choice.get("delta") or {}
    return bool(delta.get("content") or delta.get("reasoning_content") or choice.get("text"))


class ProcessMemory:
    __slots__ = ("pid", "started", "rss", "name")

    def __init__(self, pid: int, started: float, rss: int, name: str):
        self.pid, self.started, self.rss, self.name = pid, started, rss, name


def process_memory(pattern: str | None, pid: int | None, exclude: set[int]) -> list[ProcessMemory]:
    """Processes whose name matches ``pattern`` (glob) or whose command line contains it, or ``pid``."""
    import fnmatch

    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline", "create_time", "memory_info"]):
        info = proc.info
        if info["pid"] in exclude or info.get("memory_info") is None:
            continue
        if pid is not None:
            hit = info["pid"] == pid
        else:
            name = info.get("name") or ""
            cmdline = " ".join(info.get("cmdline") or ())
            hit = fnmatch.fnmatch(name.lower(), pattern.lower()) or pattern in cmdline
        if hit:
            found.append(ProcessMemory(info["pid"], float(info.get("create_time") or 0.0),
                                       int(info["memory_info"].rss), info.get("name") or ""))
    return found


def own_lineage() -> set[int]:
    """This process and its ancestors: their command lines carry ``--process NAME`` too."""
    import psutil

    pids = set()
    try:
        proc = psutil.Process()
        pids.add(proc.pid)
        for parent in proc.parents():
            pids.add(parent.pid)
    except psutil.Error:
        pass
    return pids
