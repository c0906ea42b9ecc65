"""Kubernetes API server access for ``k8s_gpu`` and the pod names in GPU messages.

Reads, with ``bounded_http`` over the API server's REST interface (no client
library: two GET shapes are all the pack needs):

* ``GET /api/v1/nodes/{name}`` (RBAC: ``get`` on ``nodes``);
* ``GET /api/v1/pods`` or ``/api/v1/namespaces/{ns}/pods`` with ``fieldSelector`` and
  ``limit``/``continue`` paging (RBAC: ``list`` on ``pods``).

Needs: the API server's URL, a bearer token and the CA that signed the server's
certificate. In a pod these are the defaults: ``https://$KUBERNETES_SERVICE_HOST:
$KUBERNETES_SERVICE_PORT``, and the service-account token and ``ca.crt`` under
``/var/run/secrets/kubernetes.io/serviceaccount/`` (the paths are parameters, so
tests and out-of-cluster probes point elsewhere).

Bounded and careful with the token: every response body has a byte cap and the whole
call a time limit; the name is resolved once and the connection made to a checked
address; redirects are never followed and no proxy is used, so the token only ever
goes to the configured API server; the token is never put into a message.
"""

from __future__ import annotations

import json
import time

from prtg_ai.core.errors import ConfigError, SensorError

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SA_DIR_ENV = "PRTG_AI_K8S_SA_DIR"  # where the service-account token and ca.crt are (tests, unusual mounts)
MAX_TOKEN_BYTES = 64 * 1024
MAX_BODY_BYTES = 32 * 1024 * 1024  # one page of 500 pods with managedFields is a few MB
PAGE_LIMIT = 500
MAX_PAGES = 40  # 20,000 pods: beyond that a per-namespace scope is the right tool
USER_AGENT = "prtg-ai k8s_gpu"
# The RBAC rule each request needs, named in a 403 message.
RULES = {
    "nodes": 'apiGroups [""], resources ["nodes"], verbs ["get"]',
    "pods": 'apiGroups [""], resources ["pods"], verbs ["list"]',
}
KNOWN_REASONS = ("Unauthorized", "Forbidden", "NotFound", "TooManyRequests", "InternalError", "ServiceUnavailable",
                 "Timeout", "BadRequest", "MethodNotAllowed", "NotAcceptable", "Expired")
DESTINATION_REFUSED = ("this agent does not connect there: through the agent, the API server must lie inside "
                       "its --allow-url (link-local addresses never)")
RBAC_HINT = ("Apply installer/assets/kubernetes/prtg-ai-rbac.yaml (ClusterRole prtg-ai-k8s-gpu bound to the "
             "agent's ServiceAccount).")


class ApiError(SensorError):
    """The API server answered with an error; ``status`` is its HTTP status (0: no answer)."""

    def __init__(self, problem: str, hint: str = "", status: int = 0):
        super().__init__(problem, hint)
        self.status = status


class ApiConfig:
    """Where the API server is and how to authenticate (the token is kept out of ``repr``)."""

    __slots__ = ("url", "token", "ca_file", "timeout")

    def __init__(self, url: str, token: str | None, ca_file: str | None, timeout: float = 10.0):
        self.url, self.token, self.ca_file, self.timeout = url.rstrip("/"), token, ca_file, timeout

    def __repr__(self) -> str:
        return f"ApiConfig({self.url!r}, token={'set' if self.token else 'none'}, ca_file={self.ca_file!r})"


def local_node_name() -> str:
    """This host's short name: the node name a standalone install reports under."""
    import socket

    return socket.gethostname().split(".")[0]


def in_cluster_url(env) -> str | None:
    """``https://HOST:PORT`` from the service environment a pod gets, or None outside a cluster."""
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT") or "443"
    if not host:
        return None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 service address
    return f"https://{host}:{port}"


def read_token(path: str, param: str = "token_file") -> str:
    """The bearer token in ``path`` (whitespace stripped); ConfigError naming the parameter."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_TOKEN_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(param, f"{path} does not exist: outside a pod, give --token-file (a service-account "
                                 "token with the prtg-ai-k8s-gpu ClusterRole)") from None
    except OSError as exc:
        raise ConfigError(param, f"{path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(raw) > MAX_TOKEN_BYTES:
        raise ConfigError(param, f"{path} is larger than {MAX_TOKEN_BYTES // 1024} KiB: not a token")
    token = raw.decode("utf-8", "replace").strip()
    if not token or any(c in token for c in "\r\n\0 "):
        raise ConfigError(param, f"{path} holds no single-line bearer token")
    return token


def check_destination(api_url: str, policy, timeout: float) -> None:
    """Refuse an agent client's ``--api-url`` outside the agent's ``--allow-url`` (or link-local).

    A node may configure ``--token-file`` through ``serve --sensor-defaults``; a client
    that could then choose ``api_url`` freely would make the agent send that token to
    a server of the client's choosing.
    """
    from prtg_ai.backends.bounded_http import HttpFailure, checked_addresses

    try:
        checked_addresses(api_url, policy, timeout)
    except HttpFailure as exc:
        if exc.kind == "destination":
            raise ConfigError("api_url", DESTINATION_REFUSED) from None
        # Unresolvable: the request itself reports it as unreachable.


def config(api_url: str | None, token_file: str | None, ca_file: str | None, env, timeout: float = 10.0) -> ApiConfig:
    """The API server settings from parameters, falling back to the in-cluster defaults."""
    import os
    from urllib.parse import urlsplit

    sa_dir = env.get(SA_DIR_ENV) or SA_DIR
    token_default, ca_default = os.path.join(sa_dir, "token"), os.path.join(sa_dir, "ca.crt")
    url = api_url or in_cluster_url(env)
    if not url:
        raise ConfigError("api_url", "no API server: outside a pod (KUBERNETES_SERVICE_HOST is not set) give "
                                     "--api-url https://HOST:6443 with --token-file and --ca-file")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("api_url", f"{url[:120]!r} is not an http:// or https:// URL with a host")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError("api_url", "give the API server's base URL only (no credentials, query or fragment)")
    token = read_token(token_file or token_default)
    ca = ca_file or (ca_default if os.path.isfile(ca_default) else None)
    if ca is not None and not os.path.isfile(ca):
        raise ConfigError("ca_file", f"{ca} does not exist (the CA bundle that signed the API server's certificate)")
    return ApiConfig(url, token, ca, timeout)


class Api:
    """GETs against one API server, each bounded in bytes and time (``bounded_http``).

    The token goes only to an address that was checked against the agent client's
    policy when the connection is made (one DNS lookup, no redirect followed), so a
    name that resolves differently the second time cannot take it elsewhere.
    """

    def __init__(self, cfg: ApiConfig, monotonic=time.monotonic, policy=None):
        self.cfg = cfg
        self.monotonic = monotonic
        self.policy = policy
        self.deadline = monotonic() + cfg.timeout

    def close(self) -> None:
        pass  # one connection per request: nothing stays open between them

    def __enter__(self) -> "Api":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get(self, path: str, params: dict | None = None, resource: str = "pods") -> dict:
        """GET ``path`` (relative to the API server) and return the decoded JSON object."""
        from urllib.parse import urlencode

        from prtg_ai.backends.bounded_http import Exchange, HttpFailure

        if self.deadline - self.monotonic() <= 0:
            raise ApiError(f"The API server at {self.cfg.url} did not answer within {self.cfg.timeout:g} s.",
                           "Is it overloaded? Raise --timeout.")
        url = self.cfg.url + path + (f"?{urlencode(params)}" if params else "")
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.cfg.token:
            headers["Authorization"] = f"Bearer {self.cfg.token}"
        try:
            with Exchange(url, headers=headers, deadline=self.deadline, policy=self.policy,
                          monotonic=self.monotonic, ca_file=self.cfg.ca_file) as exchange:
                status, body = exchange.status, exchange.body(MAX_BODY_BYTES)
        except HttpFailure as exc:
            raise _failure(self.cfg, exc.kind) from None
        if status == 200:
            try:
                doc = json.loads(body)
            except ValueError:
                raise ApiError(f"The API server at {self.cfg.url} answered with no JSON.",
                               "Is --api-url the Kubernetes API server?") from None
            if not isinstance(doc, dict):
                raise ApiError(f"The API server at {self.cfg.url} answered with an unexpected document.",
                               "Is --api-url the Kubernetes API server?")
            return doc
        raise _status_error(self.cfg.url, status, body, resource)

    def node(self, name: str) -> dict:
        from urllib.parse import quote

        try:
            return self.get(f"/api/v1/nodes/{quote(name, safe='')}", resource="nodes")
        except ApiError as exc:
            if exc.status == 404:
                raise ConfigError("node", f"the cluster has no node named {name!r} (kubectl get nodes lists them)"
                                  ) from None
            raise

    def pods(self, field_selector: str, namespace: str | None = None) -> list[dict]:
        """Every pod matching ``field_selector``, page by page (``limit``/``continue``)."""
        from urllib.parse import quote

        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods" if namespace else "/api/v1/pods"
        items: list[dict] = []
        token = None
        for _ in range(MAX_PAGES):
            params = {"fieldSelector": field_selector, "limit": str(PAGE_LIMIT)}
            if token:
                params["continue"] = token
            doc = self.get(path, params, resource="pods")
            page = doc.get("items")
            if not isinstance(page, list):
                raise ApiError(f"The API server at {self.cfg.url} answered a pod list without items.",
                               "Is --api-url the Kubernetes API server?")
            items.extend(p for p in page if isinstance(p, dict))
            token = (doc.get("metadata") or {}).get("continue")
            if not token:
                return items
        raise ApiError(f"More than {MAX_PAGES * PAGE_LIMIT} pods match; the list was cut short.",
                       "Narrow the scope with --namespace.")


def _failure(cfg: ApiConfig, kind: str) -> SensorError:
    """The error for an exchange that failed (``bounded_http`` kinds); nothing the server sent is echoed."""
    url = cfg.url
    if kind == "destination":
        return ConfigError("api_url", DESTINATION_REFUSED)
    if kind == "tls":
        return ApiError(f"TLS verification of the API server at {url} failed.",
                        "Give --ca-file with the cluster's CA (the service account's ca.crt).")
    if kind == "timeout":
        return ApiError(f"No complete answer from the API server at {url} within {cfg.timeout:g} s.",
                        "Is the API server reachable from here (network policy, firewall)? Raise --timeout if slow, "
                        "or narrow the scope with --namespace.")
    if kind == "too_large":
        return ApiError(f"The API server at {url} sent more than {MAX_BODY_BYTES // 2**20} MiB in one answer.",
                        "Narrow the scope with --namespace.")
    return ApiError(f"Cannot connect to the API server at {url} ({kind}).",
                    "Check --api-url (in a pod: KUBERNETES_SERVICE_HOST/PORT), DNS, and network policies "
                    "between this pod and the API server.")


def _status_error(url: str, status: int, body: bytes, resource: str) -> ApiError:
    reason = ""
    try:
        doc = json.loads(body[:65536])
        if isinstance(doc, dict) and doc.get("kind") == "Status" and doc.get("reason") in KNOWN_REASONS:
            reason = doc["reason"]  # only the API's own vocabulary: fetched text is never echoed
    except ValueError:
        pass
    if status == 401:
        return ApiError(f"The API server at {url} rejected the token (HTTP 401 Unauthorized).",
                        "The service-account token is missing, expired or from another cluster: check --token-file "
                        "(in a pod: automountServiceAccountToken must be true).", status)
    if status == 403:
        return ApiError(f"The API server at {url} forbids this ({'HTTP 403 ' + reason if reason else 'HTTP 403'}): "
                        f"the ServiceAccount lacks the RBAC rule {RULES.get(resource, resource)}.", RBAC_HINT, status)
    if status in (301, 302, 303, 307, 308):
        return ApiError(f"The API server at {url} answered with a redirect (HTTP {status}), which is not followed.",
                        "Give the API server's own URL in --api-url.", status)
    return ApiError(f"The API server at {url} answered HTTP {status}{' ' + reason if reason else ''}.",
                    "Check the API server's health (kubectl get --raw /readyz).", status)
