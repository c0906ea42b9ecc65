"""HTTPS plumbing shared by the Azure and Google Cloud backends of ``gpu_spend``.

Both clouds are called through their REST APIs with ``requests`` and a bearer token
from the cloud's own credential library (``azure-identity``, ``google-auth``): the
management SDKs would add tens of packages and seconds of import time for a handful
of GET/POST calls. Everything here is bounded: connect/read timeouts, a byte cap per
answer, at most ``MAX_PAGES`` pages per listing.

Every request is counted per service (``SENT``, what a cost API bills or throttles)
and every (service, operation) recorded in ``CALLED`` (tests check it against the
shipped least-privilege roles). The bearer token goes only into the ``Authorization``
header of requests to the endpoints the backend itself chose (defaults or the
operator's environment overrides), never into a message or log.
"""

from __future__ import annotations

import json
from collections import Counter

from prtg_ai.core.errors import SensorError
from prtg_ai.core.log import get_logger

log = get_logger("prtg_ai.cloud")

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 20.0
MAX_BODY_BYTES = 16 * 1024 * 1024   # a Catalog API page of 5,000 SKUs is a few MB
MAX_PAGES = 50
USER_AGENT = "prtg-ai-gpu-spend"
MAX_RETRY_AFTER_S = 24 * 3600.0     # a header asking for longer is capped: the cache's back-off takes over

CALLED: set[tuple[str, str]] = set()
SENT: Counter = Counter()


class CloudError(SensorError):
    """A cloud API call failed; ``kind`` says how the sensor treats it (as ``AwsError`` does).

    Kinds: ``credentials`` and ``denied`` are configuration problems (error result);
    ``throttled``, ``unreachable`` and ``failed`` are transient (serve the cache).
    ``retry_after`` is the wait in seconds the service asked for, when it said.
    """

    def __init__(self, kind: str, problem: str, hint: str = "", action: str | None = None,
                 retry_after: float | None = None, code: str | None = None):
        super().__init__(problem, hint)
        self.kind = kind
        self.transient = kind in ("throttled", "unreachable", "failed")
        self.action = action
        self.retry_after = retry_after
        self.code = code


def retry_after_s(headers) -> float | None:
    """The longest wait any retry header asks for, in seconds (``Retry-After`` or ``x-ms-ratelimit-*-retry-after``)."""
    waits = []
    for name, value in (headers or {}).items():
        lowered = name.lower()
        if lowered == "retry-after" or (lowered.startswith("x-ms-ratelimit-") and lowered.endswith("retry-after")):
            try:
                waits.append(float(str(value).strip()))
            except ValueError:
                continue  # an HTTP date: rare for these APIs; the back-off covers it
    waits = [w for w in waits if w >= 0]
    return min(MAX_RETRY_AFTER_S, max(waits)) if waits else None


def error_text(doc) -> tuple[str, str]:
    """(code, message) of an Azure ``{"error": {"code", "message"}}`` or Google ``{"error": {"status", "message"}}`` body."""
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict):
        code = str(err.get("code") or err.get("status") or "")
        if err.get("status") and err.get("code"):
            code = str(err["status"])
        return code[:60], " ".join(str(err.get("message") or "").split())[:200]
    return "", ""


class Http:
    """One ``requests`` session with the pack's limits; ``describe(service, op)`` names the call in messages."""

    def __init__(self, cloud: str, actions: dict, role_file: str, names: dict[str, str]):
        import requests  # lazily: a scan answered from the cache never loads it

        self.requests = requests
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.cloud, self.actions, self.role_file, self.names = cloud, actions, role_file, names
        self._start = Counter(SENT)

    def sent(self, service: str) -> int:
        return SENT[service] - self._start[service]

    def what(self, service: str, op: str) -> str:
        return f"{self.names.get(service, service)} {op}"

    def call(self, service: str, op: str, method: str, url: str, *, token: str | None = None,
             params=None, body=None, headers=None) -> tuple[dict, dict]:
        """Send one request; return (parsed JSON body, response headers) or raise ``CloudError``."""
        if (service, op) not in self.actions:
            # A call the shipped role does not grant would be denied for every user who set it up.
            raise LookupError(f"{self.cloud} {service} {op} is not in the backend's table of role permissions")
        CALLED.add((service, op))
        SENT[service] += 1
        sent_headers = dict(headers or {})
        if token:
            sent_headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            sent_headers["Content-Type"] = "application/json"
        what = self.what(service, op)
        try:
            response = self.session.request(method, url, params=params, headers=sent_headers,
                                            data=None if body is None else json.dumps(body),
                                            timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S), stream=True,
                                            allow_redirects=False)
            data = bytearray()
            for chunk in response.iter_content(64 * 1024):
                data += chunk
                if len(data) > MAX_BODY_BYTES:
                    response.close()
                    raise CloudError("failed", f"{what} sent more than {MAX_BODY_BYTES // 1048576} MiB.",
                                     "Transient: the sensor retries later.")
        except self.requests.exceptions.Timeout:
            raise CloudError("unreachable", f"{self.cloud} endpoint for {what} timed out.",
                             "Check the probe's network path / proxy.") from None
        except self.requests.exceptions.RequestException as exc:
            raise CloudError("unreachable", f"{self.cloud} endpoint for {what} could not be reached "
                             f"({type(exc).__name__}).", "Check the probe's network path / proxy.") from None
        try:
            doc = json.loads(bytes(data).decode("utf-8")) if data else {}
        except (UnicodeDecodeError, ValueError):
            doc = None
        status = response.status_code
        if 200 <= status < 300:
            if not isinstance(doc, dict):
                # Cut off or not JSON: never echo it, never cache it as "no cost".
                raise CloudError("failed", f"{self.cloud} answered {what} with an unreadable response.",
                                 "Transient: the sensor retries later and serves cached data meanwhile.")
            return doc, dict(response.headers)
        raise self.translate(service, op, status, doc, response.headers)

    def translate(self, service: str, op: str, status: int, doc, headers) -> CloudError:
        code, message = error_text(doc)
        what = self.what(service, op)
        log.info("%s failed: HTTP %s %s %s", what, status, code, message)
        action = self.actions.get((service, op))
        if status == 401:
            return CloudError("credentials", f"{self.cloud} rejected the credentials for {what} ({code or status}).",
                              "Check the identity the probe runs as (see prtg-ai doctor).", code=code)
        if status == 403:
            needed = action or op
            return CloudError("denied", f"{self.cloud} denied {what}: the identity lacks permission {needed} "
                              f"({code or status}).",
                              f"Grant it (the pack ships the least-privilege role {self.role_file}).",
                              action=needed, code=code)
        if status == 429 or code in ("429", "RESOURCE_EXHAUSTED", "rateLimitExceeded"):
            wait = retry_after_s(headers)
            after = f"; retry after {wait:.0f} s" if wait is not None else ""
            return CloudError("throttled", f"{self.cloud} throttled {what} ({code or status}{after}).",
                              "The sensor backs off and serves cached data; fewer sensors per scope help.",
                              retry_after=wait, code=code)
        if status == 404:
            return CloudError("denied", f"{self.cloud} {what}: not found ({code or status}: {message}).",
                              "Check the subscription / scope / project / table parameter.", code=code)
        if status == 400:
            return CloudError("failed", f"{self.cloud} {what} was refused as a bad request ({code}: {message}).",
                              "Check the parameters; if they are right this is a bug in prtg-ai.", code=code)
        return CloudError("failed", f"{self.cloud} {what} failed (HTTP {status} {code}).".replace(" )", ")"),
                          "Transient: the sensor retries later.", retry_after=retry_after_s(headers), code=code)


class CloudClient:
    """Base of a cloud's API client: requests counted per service (``self.http``), one token per client."""

    http: Http
    _token: str | None = None

    def sent(self, service: str) -> int:
        return self.http.sent(service)

    def token(self) -> str:
        """The bearer token: fetched by the cloud's ``_fetch_token`` on first use, then kept."""
        if self._token is None:
            self._token = self._fetch_token()
        return self._token
