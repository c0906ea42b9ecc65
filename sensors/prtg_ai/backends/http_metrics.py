"""Model-server I/O for the ``inference`` sensor: metrics page, streamed probe, process memory.

Reads, through ``backends.bounded_http`` (checked destination, no redirects, one
total deadline per scan, byte caps):

* the Prometheus ``/metrics`` page of vLLM, TGI or Triton;
* one streamed OpenAI-compatible chat completion (``POST /v1/chat/completions``
  with ``stream: true`` and a small ``max_tokens``), timing the first token;
* ``GET /v1/models`` when no model is named;

and, with ``psutil``, the resident memory of the server's processes.

Needs: network access to the server; no permission beyond reading other users'
process memory figures (``/proc/<pid>/statm`` is world-readable on Linux; on
Windows, processes of other users need an administrator account).

Proxy variables are ignored: a probe on the GPU node or in the cluster talks to
the model server directly, and an API key must not travel to a proxy. Keys go
only into the ``Authorization`` header, never into a message. Nothing the server
sends (a page, an error body, a parser complaint about it) is put into a message
either: an internal page must never be read back through PRTG.
"""

from __future__ import annotations

import json
import time

from prtg_ai.backends.bounded_http import Exchange, HttpFailure
from prtg_ai.core.deadline import doing, done
from prtg_ai.core.errors import SensorError

MAX_METRICS_BYTES = 8 * 1024 * 1024  # vLLM with many LoRA adapters: ~1 MB; 8 MB is a runaway page
MAX_PROBE_BYTES = 256 * 1024
MAX_MODELS_BYTES = 256 * 1024
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


class DestinationRefused(SensorError):
    """The URL points where this run may not connect (link-local, metadata, outside --allow-url)."""


def _headers(api_key: str | None, extra: dict | None = None) -> dict:
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", "Connection": "close"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    headers.update(extra or {})
    return headers


def _failure(url: str, exc: HttpFailure) -> SensorError:
    if exc.kind == "destination":
        return DestinationRefused(f"{url} is not a destination this sensor may connect to.",
                                  "Link-local and cloud-metadata addresses are never fetched; through the agent, "
                                  "only the destinations of its --allow-url (default: this node's loopback).")
    if exc.kind == "timeout":
        return Unreachable(f"No complete answer from {url} within the timeout.",
                           "Is the model server overloaded or the host down? Raise --timeout if it is slow.")
    if exc.kind == "refused":
        return Unreachable(f"Connection to {url} refused: nothing listens on that port.",
                           "Is the model server running, and is the port in --url right?", refused=True)
    if exc.kind == "too_large":
        return SensorError(f"{url} sent more than the sensor reads.", "Is --url the model server's metrics endpoint?")
    if exc.kind == "tls":
        return Unreachable(f"TLS with {url} failed.", "Check the server's certificate and that --url says https.")
    if exc.kind == "protocol":
        return SensorError(f"{url} did not answer as an HTTP server.", "Is --url the model server?")
    return Unreachable(f"Cannot connect to {url}.",
                       "Check the host name, the port, TLS and the firewall between the probe and the server.")


def fetch_text(url: str, deadline: float, api_key: str | None = None, monotonic=time.monotonic,
               limit: int = MAX_METRICS_BYTES, policy=None) -> str:
    """GET ``url`` and return its text; raises ``Unreachable`` or ``SensorError`` with a hint.

    Args:
        deadline: monotonic time by which the whole exchange ends (the scan's budget).
        policy: the agent client's ``ClientPolicy`` (None in script mode).
    """
    doing(f"HTTP GET of {_where(url)}")
    try:
        with Exchange(url, "GET", headers=_headers(api_key), deadline=deadline, policy=policy,
                      monotonic=monotonic) as ex:
            if ex.status in (401, 403):
                raise SensorError(f"{url} refused the request (HTTP {ex.status}).",
                                  "Give the server's API key (--api-key; for the agent, its --api-key-file).")
            if 300 <= ex.status < 400:
                raise SensorError(f"{url} answered with a redirect (HTTP {ex.status}); redirects are not followed.",
                                  "Point the URL at the final address.")
            if ex.status != 200:
                raise SensorError(f"{url} answered HTTP {ex.status}.",
                                  "Is --url the model server, and --metrics-url its metrics page?")
            body = ex.body(limit)
            done()
            return body.decode("utf-8", errors="replace")
    except HttpFailure as exc:
        raise _failure(url, exc) from None


def list_models(base_url: str, deadline: float, api_key: str | None = None, monotonic=time.monotonic,
                policy=None) -> list[str]:
    """Model ids from ``GET /v1/models`` (empty when the server does not say).

    Raises ``Unreachable`` (``refused``) when nothing listens: that is the probe's answer.
    """
    try:
        text = fetch_text(base_url + "/v1/models", deadline, api_key, monotonic, MAX_MODELS_BYTES, policy)
        data = json.loads(text).get("data", [])
        return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
    except Unreachable as exc:
        if exc.refused:
            raise
        return []
    except DestinationRefused:
        raise
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


def probe_chat(base_url: str, model: str, prompt: str, max_tokens: int, deadline: float,
               api_key: str | None = None, monotonic=time.monotonic, policy=None) -> ProbeResult:
    """Send one streamed chat completion and time it; never raises for server faults.

    An error answer is reported by its status code only: its body is the server's
    text, and it never reaches PRTG.
    """
    url = base_url + "/v1/chat/completions"
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}],
                       "max_tokens": max_tokens, "temperature": 0, "stream": True}).encode("utf-8")
    started = monotonic()
    try:
        with Exchange(url, "POST", body=body, headers=_headers(api_key, {"Content-Type": "application/json"}),
                      deadline=deadline, policy=policy, monotonic=monotonic) as ex:
            if ex.status != 200:
                return ProbeResult("error", monotonic() - started, detail=f"HTTP {ex.status}")
            return _read_stream(ex, started, monotonic)
    except HttpFailure as exc:
        err = _failure(url, exc)
        if isinstance(err, DestinationRefused):
            raise err from None
        refused = isinstance(err, Unreachable) and err.refused
        if exc.kind == "timeout":
            return ProbeResult("error", monotonic() - started, detail="the answer did not finish within the timeout")
        if exc.kind == "too_large":
            return ProbeResult("error", monotonic() - started, detail="the answer exceeded 256 KiB")
        return ProbeResult("refused" if refused else "error", None if refused else monotonic() - started,
                           detail=err.problem)


def _read_stream(ex: Exchange, started: float, monotonic) -> ProbeResult:
    """Server-sent events: ``data: {json}`` lines until ``data: [DONE]``.

    Lines are taken as they arrive (model servers stream with chunked transfer
    encoding), so the first token is timed when it lands.
    """
    ttft, chunks, done = None, 0, False
    for line in ex.lines(MAX_PROBE_BYTES):
        now = monotonic()
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


def process_memory(pattern: str | None, pid: int | None, exclude: set[int],
                   cmdline: bool = True) -> list[ProcessMemory]:
    """Processes whose name matches ``pattern`` (glob) or, with ``cmdline``, whose command line contains it.

    An agent client gets names only (``cmdline=False``): a substring test on other
    programs' command lines would let a count channel spell out their arguments
    (a ``--db-password=...``) one character at a time.
    """
    import fnmatch

    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "name", "create_time", "memory_info"] + (["cmdline"] if cmdline else [])):
        info = proc.info
        if info["pid"] in exclude or info.get("memory_info") is None:
            continue
        if pid is not None:
            hit = info["pid"] == pid
        else:
            name = info.get("name") or ""
            hit = fnmatch.fnmatch(name.lower(), pattern.lower())
            if not hit and cmdline:
                hit = pattern in " ".join(info.get("cmdline") or ())
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
