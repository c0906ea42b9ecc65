"""A small Kubernetes API server on 127.0.0.1 for the ``k8s_gpu`` tests: real HTTP (or HTTPS).

Serves the two shapes the sensor reads, as the API reference defines them:
``GET /api/v1/nodes/{name}`` (a ``Node``, or a 404 ``Status``) and
``GET /api/v1/pods`` / ``GET /api/v1/namespaces/{ns}/pods`` (a ``PodList``) with
``fieldSelector`` (``=``, ``==`` and ``!=`` on ``spec.nodeName``, ``status.phase``,
``metadata.namespace``, ``metadata.name``) and ``limit``/``continue`` paging. A request
without ``Authorization: Bearer <token>`` gets a 401 ``Status``; ``forbid`` makes
chosen resources answer 403 with the RBAC authorizer's message. Every request's path,
query and headers are recorded, so tests check where the token went.
"""

from __future__ import annotations

import json
import ssl
from urllib.parse import parse_qs, unquote, urlsplit

from fakes.loopback import LoopbackServer, QuietHandler

SA_USER = "system:serviceaccount:prtg-ai:prtg-ai-agent"


def status(code: int, reason: str, message: str, kind: str | None = None) -> dict:
    doc = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
           "reason": reason, "code": code}
    if kind:
        doc["details"] = {"kind": kind}
    return doc


def _field(obj: dict, path: str):
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj or ""


def matches(obj: dict, selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if _field(obj, key) == value:
                return False
        else:
            key, value = term.replace("==", "=").split("=", 1)
            if _field(obj, key) != value:
                return False
    return True


class FakeKubeApi:
    """``with FakeKubeApi(nodes, pods, token="t") as api: api.url``.

    Attributes a test may change: ``nodes`` (name -> Node), ``pods`` (list of Pod),
    ``token`` (None: no authentication), ``forbid`` (resources answering 403),
    ``page_size`` (most items per page whatever ``limit`` asks).
    """

    def __init__(self, nodes: dict, pods: list, token: str | None = "test-token", tls: tuple | None = None,
                 page_size: int | None = None):
        self.nodes, self.pods, self.token = nodes, pods, token
        self.forbid: set[str] = set()
        self.page_size = page_size
        self.requests: list[tuple[str, dict, dict]] = []
        self._loop = LoopbackServer(self._handler(), poll_interval=0.05)
        self.scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self._loop.server.socket = ctx.wrap_socket(self._loop.server.socket, server_side=True)
            self.scheme = "https"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._loop.port}"

    def __enter__(self) -> "FakeKubeApi":
        self._loop.start()
        return self

    def __exit__(self, *exc) -> None:
        self._loop.stop()

    def answer(self, path: str, query: dict, headers: dict) -> tuple[int, dict]:
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            return 401, status(401, "Unauthorized", "Unauthorized")
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[:3] == ["api", "v1", "nodes"] and len(parts) == 4:
            if "nodes" in self.forbid:
                return 403, status(403, "Forbidden", f'nodes "{parts[3]}" is forbidden: User "{SA_USER}" cannot get '
                                   'resource "nodes" in API group "" at the cluster scope', "nodes")
            node = self.nodes.get(parts[3])
            if node is None:
                return 404, status(404, "NotFound", f'nodes "{parts[3]}" not found', "nodes")
            return 200, node
        namespace = None
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 5 and parts[4] == "pods":
            namespace = parts[3]
        elif parts != ["api", "v1", "pods"]:
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        if "pods" in self.forbid:
            scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
            return 403, status(403, "Forbidden", f'pods is forbidden: User "{SA_USER}" cannot list resource "pods" '
                               f'in API group "" {scope}', "pods")
        selector = query.get("fieldSelector", [""])[0]
        items = [p for p in self.pods if matches(p, selector)
                 and (namespace is None or p["metadata"].get("namespace") == namespace)]
        start = int(query.get("continue", ["0"])[0] or 0)
        limit = int(query.get("limit", ["0"])[0] or 0) or len(items) or 1
        if self.page_size:
            limit = min(limit, self.page_size)
        page = items[start:start + limit]
        meta = {"resourceVersion": "4242"}
        if start + limit < len(items):
            meta["continue"] = str(start + limit)
        return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": page}

    def _handler(self):
        fake = self

        class Handler(QuietHandler):
            def do_GET(self):
                split = urlsplit(self.path)
                query = parse_qs(split.query)
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake.requests.append((split.path, query, headers))
                code, doc = fake.answer(split.path, query, headers)
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
