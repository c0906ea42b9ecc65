"""What the AI stack's services answer without credentials, and how to tell them apart (pure).

Each ``Service`` names one read-only request and the shape of the answer only that
service gives when nobody logged in. A service is identified by that shape, never by
its port: ports and process names only decide the order of the probes. The shapes
come from each project's documentation and source (see
``tests/testcases/node_security/services/SOURCE.md``).

An HTTP 401 or 403 (or Redis ``-NOAUTH``) means "asks for credentials": protected,
whatever the service is.
"""

from __future__ import annotations

import json

from prtg_ai.maths.records import record

MAX_JSON_BYTES = 64 * 1024


@record(frozen=True)
class Service:
    key: str
    name: str
    path: str              # the one GET (empty for Redis: PING)
    ports: tuple[int, ...]
    hints: tuple[str, ...]  # lower-case fragments of process names / command lines
    why: str


def _json(body: bytes):
    if not body or len(body) > MAX_JSON_BYTES:
        return None
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def _is_dict_with(doc, *keys) -> bool:
    return isinstance(doc, dict) and all(k in doc for k in keys)


def _jupyter(doc) -> bool:
    # jupyter_server APIStatusHandler (@web.authenticated): started, last_activity, kernels, connections
    return _is_dict_with(doc, "started", "last_activity", "kernels", "connections") and \
        isinstance(doc["kernels"], int) and isinstance(doc["connections"], int)


def _ray(doc) -> bool:
    # dashboard/modules/job/common.py VersionResponse: version, ray_version, ray_commit(, session_name)
    return _is_dict_with(doc, "ray_version", "ray_commit") and isinstance(doc["ray_version"], str)


def _mlflow(doc) -> bool:
    if not _is_dict_with(doc, "experiments") or not isinstance(doc["experiments"], list):
        return False
    return all(isinstance(e, dict) and "experiment_id" in e for e in doc["experiments"]) and \
        any(isinstance(e, dict) and "lifecycle_stage" in e for e in doc["experiments"])


def _tensorboard(doc) -> bool:
    # tensorboard/backend/application.py / core_plugin: /data/environment
    return _is_dict_with(doc, "data_location", "window_title")


def _gradio(doc) -> bool:
    return _is_dict_with(doc, "mode", "components") and isinstance(doc["components"], list) and \
        ("version" in doc or "dependencies" in doc)


def _ollama(doc) -> bool:
    if not _is_dict_with(doc, "models") or not isinstance(doc["models"], list):
        return False
    if not doc["models"]:
        return set(doc) == {"models"}
    return all(isinstance(m, dict) and "name" in m and "digest" in m for m in doc["models"])


def _openai(doc) -> bool:
    if not _is_dict_with(doc, "object", "data") or doc["object"] != "list" or not isinstance(doc["data"], list):
        return False
    return all(isinstance(m, dict) and "id" in m and m.get("object") == "model" for m in doc["data"])


def _triton(doc) -> bool:
    # KServe v2 server metadata: name, version, extensions
    return _is_dict_with(doc, "name", "version", "extensions") and isinstance(doc["extensions"], (list, dict))


def _docker(doc) -> bool:
    return _is_dict_with(doc, "ApiVersion", "Version") and isinstance(doc["ApiVersion"], str)


def _kubelet(doc) -> bool:
    return _is_dict_with(doc, "kind", "items") and doc["kind"] == "PodList"


SERVICES: tuple[Service, ...] = (
    Service("jupyter", "Jupyter", "/api/status", (8888, 8889, 8890), ("jupyter",),
            "anyone who reaches it can run code as the server's user through a notebook kernel"),
    Service("ray", "Ray dashboard / jobs API", "/api/version", (8265,), ("ray/dashboard", "dashboard.py", "ray::"),
            "its jobs API runs any command on the cluster: the ShadowRay campaign (CVE-2023-48022) "
            "compromised exactly such clusters"),
    Service("mlflow", "MLflow tracking server", "/api/2.0/mlflow/experiments/search?max_results=1", (5000,),
            ("mlflow",), "experiments, models and artefacts can be read and overwritten; MLflow has had "
            "file-read flaws (CVE-2023-1177)"),
    Service("tensorboard", "TensorBoard", "/data/environment", (6006,), ("tensorboard",),
            "training logs, hyper-parameters and logged data samples are readable by anyone"),
    Service("gradio", "Gradio app", "/config", (7860, 7861), ("gradio",),
            "the app's functions (a model, often with file or tool access) are callable by anyone"),
    Service("ollama", "Ollama", "/api/tags", (11434,), ("ollama",),
            "anyone can run, pull and delete models on this GPU (Ollama has no authentication)"),
    Service("openai", "OpenAI-compatible model server", "/v1/models", (8000, 8080, 30000, 5001),
            ("vllm", "text-generation", "llama-server", "llama.cpp", "sglang", "openai", "lmdeploy"),
            "anyone can run inference on these GPUs without an API key"),
    Service("triton", "Triton / KServe v2 inference server", "/v2", (8000,), ("tritonserver", "triton"),
            "anyone can run inference, and with model control enabled load models (code) onto the node"),
    Service("docker", "Docker API on TCP", "/version", (2375,), ("dockerd", "docker"),
            "the Docker API without TLS is root on the node (start a privileged container)"),
    Service("kubelet", "kubelet read-only port", "/pods", (10255,), ("kubelet",),
            "it lists every pod on the node with its spec and environment (secrets in env vars leak)"),
    Service("redis", "Redis without a password", "", (6379, 6380), ("redis-server", "valkey-server", "keydb"),
            "anyone can read and write its data; an open Redis is a classic foothold (CONFIG SET, MODULE LOAD)"),
)
BY_KEY = {s.key: s for s in SERVICES}
_MATCHERS = {"jupyter": _jupyter, "ray": _ray, "mlflow": _mlflow, "tensorboard": _tensorboard,
             "gradio": _gradio, "ollama": _ollama, "openai": _openai, "triton": _triton,
             "docker": _docker, "kubelet": _kubelet}

OPEN, PROTECTED, OTHER_HTTP, NOT_HTTP = "open", "protected", "other-http", "not-http"


def judge_http(service: Service, kind: str, status: int | None, body: bytes) -> str:
    """OPEN (the service, unauthenticated), PROTECTED (asks for credentials), OTHER_HTTP, NOT_HTTP."""
    if kind != "http":
        return NOT_HTTP
    if status in (401, 403, 407):
        return PROTECTED
    if status == 200 and _MATCHERS[service.key](_json(body)):
        return OPEN
    return OTHER_HTTP


def judge_redis(kind: str, first_line: bytes) -> str:
    if kind != "resp":
        return OTHER_HTTP if kind == "http" else NOT_HTTP
    if first_line.startswith(b"+PONG"):
        return OPEN
    if first_line[:8].upper() in (b"-NOAUTH ", b"-WRONGPA", b"-DENIED ", b"-NOPERM "):
        return PROTECTED
    return NOT_HTTP


def probe_order(port: int, hints_text: str) -> list[Service]:
    """Services to try on a listener: those its port or process suggest first, then the rest.

    Redis is tried only when suggested (or when an HTTP probe got a Redis-protocol reply):
    Redis logs every HTTP request it receives as an attack.
    """
    suggested, rest = [], []
    for s in SERVICES:
        hinted = port in s.ports or any(h in hints_text for h in s.hints)
        if hinted:
            suggested.append(s)
        elif s.key != "redis":
            rest.append(s)
    return suggested + rest
