"""The agent's WSGI application: ``/sensors/<sensor>``, ``/health`` and an index page.

Routes:

* ``GET /sensors/<sensor>?<param>=<value>&...``: the sensor's legacy PRTG JSON
  (``format=v2`` gives Script v2 JSON). Status 200 also for a sensor error or a bad
  parameter, because PRTG's HTTP Data Advanced shows the text of a 200 body while
  for other statuses it shows only the HTTP code. An unknown sensor is a 404, a
  failed authentication a 401 and a refused address a 403, each with a PRTG error
  body, so even those read sensibly in PRTG.
* ``GET /health``: ``{"status": "ok"}``, or ``"degraded"`` while a scan is stuck past
  its deadline, without a token (Kubernetes probes and systemd watchdogs carry none)
  but only for ``--allow``ed clients; an authenticated client also gets the version,
  uptime, deadline and which scans are stuck.
* ``GET /``: HTML listing each sensor, its parameters and the URL to paste into PRTG.

Parameters are mapped to the sensor's declared ``Param``s only: ``path=/x`` becomes
the argv ``--path=/x`` (``--name=value`` so a value starting with ``--`` cannot be
read as an option), anything undeclared is refused with the list of declared
names, and the sensor id must match a served id exactly: there is no file
path in a route, so no traversal. Query strings are never logged (they may hold
the token), and the logged path has its control characters escaped (no forged
log lines).

What a client's parameters may reach is limited by the ``ClientPolicy`` each run
carries (``core.policy``): which sensors are served (``--sensors``), where path
parameters may point (``--allow-path``; resolved here, and the resolved path is
what the sensor opens and re-checks), where URLs may point (``--allow-url``).
The agent's own API-key variables are removed from the environment its sensors
see: a key never travels to a destination a client chose.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from urllib.parse import parse_qsl, quote

from prtg_ai import __version__
from prtg_ai.agent.auth import TOKEN_PARAM, Authenticator
from prtg_ai.agent.cache import TTLCache
from prtg_ai.agent.defaults import configured_paths, merge, missing_text
from prtg_ai.agent.dispatch import ScanRunner
from prtg_ai.backends.confined import under
from prtg_ai.core import registry
from prtg_ai.core.context import Context
from prtg_ai.core.errors import ConfigError
from prtg_ai.core.policy import ClientPolicy
from prtg_ai.core.runtime import BASELINE, finish, run_sensor
from prtg_ai.core.secrets import Scrubber
from prtg_ai.prtg.model import SensorResult

log = logging.getLogger("prtg_ai.agent")
FORMAT_PARAM = "format"
MAX_QUERY_FIELDS = 64
RUNTIME_PARAMS = (BASELINE,)
_SENSOR_PATH = re.compile(r"/sensors/([a-z][a-z0-9_]{0,63})/?")  # fullmatch: "$" would accept a trailing newline
JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"
# What a node agent serves unless --sensors says otherwise: the sensors that read this node
# only (k8s_gpu: this node as its API server sees it). inference (client-chosen URLs) and gpu_spend
# (AWS requests that cost money) are opt-in.
DEFAULT_SENSORS = ("gpu", "gpu_host", "east_west", "checkpoint_volume", "node_security", "k8s_gpu")
# Environment variables holding keys for servers a parameter names: never given to a run
# whose parameters came from a client (keys come from --api-key-file for named origins).
CLIENT_DESTINATION_SECRETS = ("PRTG_AI_INFERENCE_API_KEY", "OPENAI_API_KEY")
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_STATUS_TEXT = {200: "200 OK", 401: "401 Unauthorized", 403: "403 Forbidden", 404: "404 Not Found",
                405: "405 Method Not Allowed"}

StartResponse = Callable[[str, list[tuple[str, str]]], object]


class BadRequest(Exception):
    """A request that cannot run the sensor; the message is the PRTG error text."""


def error_body(text: str) -> bytes:
    """A PRTG legacy error document (always valid: rendered by the runtime's renderer)."""
    return finish(SensorResult.failure(text), "prtg").text.encode("utf-8")


def printable(text: str, limit: int = 200) -> str:
    """``text`` for a log line: control characters (CR, LF, ...) escaped, length capped."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", text[:limit])


# Files holding credentials are the node administrator's choice (command line, wrapper), never
# an HTTP client's: a client could otherwise make the agent read a secret the agent can read
# (its own token file, a service-account token) and send it to a server the client names.
CLIENT_REFUSED = frozenset({"token_file"})


def confine_path(value: str, roots: tuple[str, ...]) -> str | None:
    """The resolved form of ``value`` when it lies under ``roots``, else None (NUL and bad paths too)."""
    if not value.strip() or "\x00" in value:
        return None
    try:
        real = os.path.realpath(value)
    except (OSError, ValueError):
        return None
    return real if under(real, roots) else None


def query_to_argv(sensor_cls, pairs: Iterable[tuple[str, str]],
                  allowed_paths: tuple[str, ...] | None = None) -> list[str]:
    """Map query pairs to ``--option=value`` argv for ``sensor_cls``; raise BadRequest on unknown names.

    Args:
        sensor_cls: a registered sensor class (its ``params`` are the allowed names).
        pairs: decoded ``(name, value)`` pairs, reserved names already removed.
        allowed_paths: the (resolved) folders a path parameter may point into
            (``serve --allow-path``); None means any path, an empty tuple none.

    Returns:
        The argv the runtime parses and validates (types, ranges, repeats).
    """
    # The sensor's own parameters, plus the runtime options every sensor takes (--baseline).
    by_name = {p.name: p for p in (*RUNTIME_PARAMS, *sensor_cls.params)}
    argv: list[str] = []
    for name, value in pairs:
        param = by_name.get(name.strip().lower().replace("-", "_"))
        if param is None:
            shown = name if len(name) <= 40 else name[:37] + "..."
            declared = ", ".join(p.name for p in (*sensor_cls.params, *RUNTIME_PARAMS))
            raise BadRequest(f"Unknown parameter {shown!r} for sensor {sensor_cls.id}. "
                             f"Its parameters are: {declared}.")
        if param.name in CLIENT_REFUSED:
            raise BadRequest(f"Parameter {param.name} cannot be set by an HTTP client: credential files are "
                             "chosen by the node's administrator (in a pod, the defaults need none).")
        if param.kind == "flag" and value == "":
            value = "yes"  # ?flag alone means "on", as --flag does on the command line
        if param.kind == "path" and allowed_paths is not None:
            real = confine_path(value, allowed_paths)
            if real is None:
                # One text whether or not the path exists: a client learns nothing about this host.
                raise BadRequest(f"Parameter {param.name}: this agent only serves paths under its --allow-path "
                                 f"list ({len(allowed_paths)} folder(s)); ask the node's administrator.")
            value = real  # the sensor opens what was checked (and re-checks what it opened)
        argv.append(f"{param.option}={value}")
    return argv


class AgentApp:
    """The WSGI callable serving every registered sensor.

    Args:
        auth: the request authenticator (also owns the Scrubber of agent secrets).
        state_dir: where sensors keep rate/trend samples for the agent.
        env: environment the sensors see (PRTG placeholders, AWS settings).
        cache_ttl: seconds a sensor result is shared by identical requests.
        allowed_paths: folders path parameters may point into (``--allow-path``), to which
            the paths the node configured in ``sensor_defaults`` are added (the node's own
            choice, never a client's); None: any path (a loopback listener without --allow-path).
        sensors: the sensor ids served (``--sensors``; default ``DEFAULT_SENSORS``).
        allow_urls: ``--allow-url`` values (CIDRs, origins); default loopback only.
        api_keys: origin -> key from ``--api-key-file``.
        deadline_s: per-scan deadline (``--deadline``); a scan past it answers a PRTG error
            naming what it waits on, and the request never waits longer.
        sensor_defaults: per-sensor node settings (``--sensor-defaults``), see ``defaults.py``.
    """

    def __init__(self, auth: Authenticator, state_dir: Path, env: Mapping[str, str] | None = None,
                 cache_ttl: float = 5.0, cache_entries: int = 256,
                 allowed_paths: Iterable[str] | None = None, sensors: Iterable[str] | None = None,
                 allow_urls: Iterable[str] = (), api_keys: Mapping[str, str] | None = None,
                 deadline_s: float | None = None, sensor_defaults: Mapping[str, list[str]] | None = None):
        from prtg_ai.core.deadline import DEFAULT_S

        self.auth = auth
        self.runner = ScanRunner(DEFAULT_S if deadline_s is None else deadline_s, error_body)
        self.sensor_defaults = dict(sensor_defaults or {})
        self.allowed_paths = None if allowed_paths is None else tuple(
            os.path.realpath(p) for p in (*allowed_paths, *configured_paths(self.sensor_defaults)))
        self.policy = ClientPolicy(self.allowed_paths, allow_urls, api_keys)
        for key in self.policy.keys.values():
            self.auth.scrubber.register(key)
        self.served = served_sensors(DEFAULT_SENSORS if sensors is None else sensors)
        self.state_dir = Path(state_dir)
        self.env = client_env(os.environ if env is None else env)
        self.cache: TTLCache[tuple[str, bool]] = TTLCache(cache_ttl, max_entries=cache_entries)
        self.started = time.monotonic()

    # -- WSGI entry ------------------------------------------------------
    def __call__(self, environ: dict, start_response: StartResponse) -> list[bytes]:
        started = time.perf_counter()
        try:
            status, headers, body = self.dispatch(environ)
        except Exception:  # a bug here must still answer PRTG in its format
            log.exception("Unexpected error while answering a request")
            status, headers, body = 200, [], error_body(
                "Internal error in the prtg-ai agent. Details are in the agent's log.")
        if not any(h[0] == "Content-Type" for h in headers):
            headers.append(("Content-Type", JSON_TYPE))
        headers += [("Content-Length", str(len(body))), ("Cache-Control", "no-store"),
                    ("X-Content-Type-Options", "nosniff")]
        start_response(_STATUS_TEXT.get(status, f"{status} Error"), headers)
        # The path only (the query string may carry the token), control characters escaped.
        log.info("%s %s -> %d in %.1f ms", printable(str(environ.get("REQUEST_METHOD")), 10),
                 printable(environ.get("PATH_INFO", "")), status, (time.perf_counter() - started) * 1000.0)
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else body]

    def dispatch(self, environ: Mapping[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        """Route one request; return status, extra headers and body."""
        path = environ.get("PATH_INFO", "") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return 405, [("Allow", "GET, HEAD")], error_body(f"Method {method[:10]} is not allowed: PRTG polls with GET.")
        if path == "/health":
            return self._health(environ)
        try:
            pairs = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True,
                              max_num_fields=MAX_QUERY_FIELDS)
        except ValueError:
            return 200, [], error_body(f"Too many query parameters (at most {MAX_QUERY_FIELDS}).")
        tokens = [v for k, v in pairs if k == TOKEN_PARAM]
        decision = self.auth.check(environ, tokens[-1] if tokens else None)
        if not decision.allowed:
            headers = [("WWW-Authenticate", self.auth.challenge())] if decision.status == 401 else []
            return decision.status, headers, error_body(decision.reason)
        pairs = [(k, v) for k, v in pairs if k != TOKEN_PARAM]
        if path in ("/", "/index.html"):
            return 200, [("Content-Type", "text/html; charset=utf-8")], self._index(environ)
        match = _SENSOR_PATH.fullmatch(path)
        if match is None or match.group(1) not in self.served:
            shown = path if len(path) <= 80 else path[:77] + "..."
            return 404, [], error_body(
                f"No such sensor or page: {printable(shown)!r}. Sensors are served at /sensors/<id>; this agent "
                f"serves: {', '.join(self.served) or 'none'} (serve --sensors).")
        fmt = self._format(pairs)
        return 200, [("Content-Type", TEXT_TYPE)] if fmt == "table" else [], self.sensor_body(match.group(1), pairs)

    @staticmethod
    def _format(pairs: list[tuple[str, str]]) -> str:
        formats = [v for k, v in pairs if k == FORMAT_PARAM]
        return formats[-1].strip().lower() if formats else "prtg"

    # -- sensors ---------------------------------------------------------
    def sensor_body(self, sensor_id: str, pairs: list[tuple[str, str]]) -> bytes:
        """Run (or share) one sensor result for these query pairs; always a valid PRTG body."""
        fmt = "prtg"
        formats = [v for k, v in pairs if k == FORMAT_PARAM]
        pairs = [(k, v) for k, v in pairs if k != FORMAT_PARAM]
        try:
            if formats:
                fmt = formats[-1].strip().lower()
                if fmt not in ("prtg", "v2", "table"):
                    fmt = "prtg"
                    raise BadRequest(f"format={printable(formats[-1], 20)!r} is not one of prtg, v2, table.")
            cls = registry.get(sensor_id)
            argv = query_to_argv(cls, pairs, self.allowed_paths)
            argv = merge(cls, self.sensor_defaults.get(sensor_id, []), argv)
            missing = missing_text(cls, argv)
            if missing:
                raise BadRequest(missing)
        except (BadRequest, ConfigError) as exc:
            text = str(exc) if isinstance(exc, BadRequest) else exc.message()
            return finish(SensorResult.failure(self.auth.scrubber.scrub(text)), fmt).text.encode("utf-8")
        # Order-insensitive key: ?a=1&b=2 and ?b=2&a=1 share one run.
        key = (sensor_id, fmt, tuple(sorted(argv)))
        return self.cache.get_or_compute(
            key, lambda: self.runner.run(key, sensor_id, lambda: self._run(sensor_id, argv, fmt)))

    def _run(self, sensor_id: str, argv: list[str], fmt: str) -> bytes:
        # A fresh Scrubber per run: secrets from one request's parameters must not
        # accumulate for the life of the agent; the agent's own secrets are added.
        scrubber = Scrubber()
        for secret in self.auth.secret_values:
            scrubber.register(secret)
        ctx = Context(env=self.env, state_dir=self.state_dir, secrets=scrubber, policy=self.policy)
        result = run_sensor(sensor_id, argv, ctx)
        return finish(result, fmt).text.encode("utf-8")

    # -- pages -----------------------------------------------------------
    def _health(self, environ: Mapping[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        """Liveness and stuck scans for allowed clients; version, uptime and which scans are stuck only
        for authenticated ones. Answered outside the worker pool (see ``dispatch``)."""
        where = self.auth.check_address(environ.get("REMOTE_ADDR", ""))
        if not where.allowed:
            return where.status, [], error_body(where.reason)
        stuck = self.runner.stuck()
        doc: dict = {"status": "degraded" if stuck else "ok"}
        try:
            tokens = [v for k, v in parse_qsl(environ.get("QUERY_STRING", ""), max_num_fields=MAX_QUERY_FIELDS)
                      if k == TOKEN_PARAM]
        except ValueError:
            tokens = []
        if self.auth.required and self.auth.check(environ, tokens[-1] if tokens else None).allowed:
            doc.update(version=__version__, uptime_s=round(time.monotonic() - self.started, 1),
                       stuck_scans=len(stuck), stuck=stuck[:16], deadline_s=self.runner.seconds)
        return 200, [], json.dumps(doc).encode("utf-8")

    def _index(self, environ: Mapping[str, str]) -> bytes:
        scheme = environ.get("wsgi.url_scheme", "http")
        host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '')}"
        base = f"{scheme}://{host}"
        rows = []
        for sid in self.served:
            try:
                cls = registry.get(sid)
            except Exception as exc:  # one broken sensor module must not hide the others
                rows.append(f"<h2>{html.escape(sid)}</h2><p>Cannot be loaded: {html.escape(type(exc).__name__)}</p>")
                continue
            rows.append(self._sensor_section(base, sid, cls))
        auth_note = ("Add <code>token=&lt;agent token&gt;</code> as shown, or enter the agent's basic-auth "
                     "credentials in the sensor's settings." if self.auth.required else
                     "This agent requires no authentication.")
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>prtg-ai agent</title></head><body>"
            f"<h1>prtg-ai agent {html.escape(__version__)}</h1>"
            "<p>Add an <b>HTTP Data Advanced</b> sensor to the device and paste the URL of the sensor you "
            "want; replace the upper-case placeholders with your values. " + auth_note + "</p>"
            + "".join(rows) + "</body></html>")
        return page.encode("utf-8")

    def _sensor_section(self, base: str, sid: str, cls) -> str:
        query = [f"{p.name}={quote(p.metavar or 'VALUE')}" for p in cls.params if p.required]
        if self.auth.required and "token" in self.auth.methods:
            query.append("token=TOKEN")
        url = f"{base}/sensors/{sid}" + ("?" + "&".join(query) if query else "")
        params = "".join(
            f"<li><code>{html.escape(p.name)}</code> ({html.escape(p.kind)}"
            f"{', required' if p.required else ''}{', repeatable' if p.multiple else ''}): "
            f"{html.escape(p.help)}</li>" for p in cls.params)
        return (f"<h2>{html.escape(getattr(cls, 'title', sid) or sid)} <small>({html.escape(sid)})</small></h2>"
                f"<p>{html.escape(getattr(cls, 'summary', ''))}</p>"
                f"<p>URL: <code>{html.escape(url)}</code></p><ul>{params}</ul>")


def served_sensors(ids: Iterable[str]) -> tuple[str, ...]:
    """Validate ``--sensors`` ids against the registry; raise ValueError naming an unknown one."""
    known = set(registry.sensor_ids())
    chosen: list[str] = []
    for raw in ids:
        for sid in (x.strip() for x in raw.split(",")):
            if not sid:
                continue
            if sid not in known:
                raise ValueError(f"--sensors: {sid[:40]!r} is not a sensor; sensors: {', '.join(sorted(known))}")
            if sid not in chosen:
                chosen.append(sid)
    return tuple(chosen)


def client_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment the agent's sensors see: its own, minus keys for client-chosen destinations."""
    return {k: v for k, v in env.items() if k not in CLIENT_DESTINATION_SECRETS}
