"""The agent's WSGI application: ``/sensors/<sensor>``, ``/health`` and an index page.

Routes:

* ``GET /sensors/<sensor>?<param>=<value>&...``: the sensor's legacy PRTG JSON
  (``format=v2`` gives Script v2 JSON). Status 200 also for a sensor error or a bad
  parameter, because PRTG's HTTP Data Advanced shows the text of a 200 body while
  for other statuses it shows only the HTTP code. An unknown sensor is a 404, a
  failed authentication a 401 and a refused address a 403, each with a PRTG error
  body, so even those read sensibly in PRTG.
* ``GET /health``: ``{"status": "ok"}``, unauthenticated (Kubernetes probes and
  systemd watchdogs carry no token), revealing nothing but liveness.
* ``GET /``: HTML listing each sensor, its parameters and the URL to paste into PRTG.

Parameters are mapped to the sensor's declared ``Param``s only: ``path=/x`` becomes
the argv ``--path=/x`` (``--name=value`` so a value starting with ``--`` cannot be
read as an option), anything undeclared is refused with the list of declared
names, and the sensor id must match a registered id exactly: there is no file
path in a route, so no traversal. Query strings are never logged (they may hold
the token).
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
from prtg_ai.agent.cache import SharedResources, TTLCache
from prtg_ai.agent.defaults import merge, missing_text
from prtg_ai.agent.dispatch import ScanRunner
from prtg_ai.core import registry
from prtg_ai.core.context import Context
from prtg_ai.core.errors import ConfigError
from prtg_ai.core.runtime import BASELINE, finish, run_sensor
from prtg_ai.core.secrets import Scrubber
from prtg_ai.prtg.model import SensorResult

log = logging.getLogger("prtg_ai.agent")
FORMAT_PARAM = "format"
RESERVED = (TOKEN_PARAM, FORMAT_PARAM)
MAX_QUERY_FIELDS = 64
RUNTIME_PARAMS = (BASELINE,)
_SENSOR_PATH = re.compile(r"^/sensors/([a-z][a-z0-9_]{0,63})/?$")
JSON_TYPE = "application/json"
_STATUS_TEXT = {200: "200 OK", 401: "401 Unauthorized", 403: "403 Forbidden", 404: "404 Not Found",
                405: "405 Method Not Allowed"}

StartResponse = Callable[[str, list[tuple[str, str]]], object]


class BadRequest(Exception):
    """A request that cannot run the sensor; the message is the PRTG error text."""


def error_body(text: str) -> bytes:
    """A PRTG legacy error document (always valid: rendered by the runtime's renderer)."""
    return finish(SensorResult.failure(text), "prtg").text.encode("utf-8")


def path_allowed(value: str, roots: tuple[str, ...]) -> bool:
    """Whether ``value`` resolves (symlinks and ``..`` included) to a folder under one of ``roots``."""
    real = os.path.realpath(value)
    for root in roots:
        try:
            if os.path.commonpath([real, root]) == root:
                return True
        except ValueError:  # different drives on Windows
            continue
    return False


def query_to_argv(sensor_cls, pairs: Iterable[tuple[str, str]], allowed_paths: tuple[str, ...] = ()) -> list[str]:
    """Map query pairs to ``--option=value`` argv for ``sensor_cls``; raise BadRequest on unknown names.

    Args:
        sensor_cls: a registered sensor class (its ``params`` are the allowed names).
        pairs: decoded ``(name, value)`` pairs, reserved names already removed.
        allowed_paths: with ``serve --allow-path``, the (resolved) folders a path
            parameter may point into; empty means any path the agent's user can read.

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
        if param.kind == "flag" and value == "":
            value = "yes"  # ?flag alone means "on", as --flag does on the command line
        if param.kind == "path" and allowed_paths and not path_allowed(value, allowed_paths):
            # Said without echoing the path: an HTTP client should not learn what exists here.
            raise BadRequest(f"Parameter {param.name}: this agent only serves folders under its --allow-path "
                             f"list ({len(allowed_paths)} folder(s)); ask the node's administrator.")
        argv.append(f"{param.option}={value}")
    return argv


class AgentApp:
    """The WSGI callable serving every registered sensor.

    Args:
        auth: the request authenticator (also owns the Scrubber of agent secrets).
        state_dir: where sensors keep rate/trend samples for the agent.
        env: environment the sensors see (PRTG placeholders, AWS settings).
        cache_ttl: seconds a sensor result is shared by identical requests.
        hub: shared long-lived resources (NVML session) handed to backends.
        allowed_paths: folders path parameters may point into (``--allow-path``).
        deadline_s: per-scan deadline (``--deadline``); a scan past it answers a PRTG error
            naming what it waits on, and the request never waits longer.
        sensor_defaults: per-sensor node settings (``--sensor-defaults``), see ``defaults.py``.
    """

    def __init__(self, auth: Authenticator, state_dir: Path, env: Mapping[str, str] | None = None,
                 cache_ttl: float = 5.0, cache_entries: int = 256, hub: SharedResources | None = None,
                 allowed_paths: Iterable[str] = (), deadline_s: float | None = None,
                 sensor_defaults: Mapping[str, list[str]] | None = None):
        from prtg_ai.core.deadline import DEFAULT_S

        self.auth = auth
        self.runner = ScanRunner(DEFAULT_S if deadline_s is None else deadline_s, error_body)
        self.sensor_defaults = dict(sensor_defaults or {})
        self.allowed_paths = tuple(os.path.realpath(p) for p in allowed_paths)
        self.state_dir = Path(state_dir)
        self.env = dict(os.environ if env is None else env)
        self.cache: TTLCache[tuple[str, bool]] = TTLCache(cache_ttl, max_entries=cache_entries)
        self.hub = hub or SharedResources()
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
        # The path only: the query string may carry the token.
        log.info("%s %s -> %d in %.1f ms", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO", "")[:200],
                 status, (time.perf_counter() - started) * 1000.0)
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else body]

    def dispatch(self, environ: Mapping[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        """Route one request; return status, extra headers and body."""
        path = environ.get("PATH_INFO", "") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return 405, [("Allow", "GET, HEAD")], error_body(f"Method {method[:10]} is not allowed: PRTG polls with GET.")
        if path == "/health":
            return 200, [], self._health()
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
        match = _SENSOR_PATH.match(path)
        if match is None or match.group(1) not in registry.SENSORS:
            shown = path if len(path) <= 80 else path[:77] + "..."
            return 404, [], error_body(
                f"No such sensor or page: {shown!r}. Sensors are served at /sensors/<id>, ids: "
                f"{', '.join(registry.sensor_ids())}.")
        return 200, [], self.sensor_body(match.group(1), pairs)

    # -- sensors ---------------------------------------------------------
    def sensor_body(self, sensor_id: str, pairs: list[tuple[str, str]]) -> bytes:
        """Run (or share) one sensor result for these query pairs; always a valid PRTG body."""
        fmt = "prtg"
        formats = [v for k, v in pairs if k == FORMAT_PARAM]
        pairs = [(k, v) for k, v in pairs if k != FORMAT_PARAM]
        try:
            if formats:
                fmt = formats[-1].strip().lower()
                if fmt not in ("prtg", "v2"):
                    raise BadRequest(f"format={formats[-1][:20]!r} is not one of prtg, v2.")
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
        ctx = Context(env=self.env, state_dir=self.state_dir, secrets=scrubber)
        result = run_sensor(sensor_id, argv, ctx)
        return finish(result, fmt).text.encode("utf-8")

    # -- pages -----------------------------------------------------------
    def _health(self) -> bytes:
        stuck = self.runner.stuck()
        return json.dumps({"status": "degraded" if stuck else "ok", "version": __version__,
                           "uptime_s": round(time.monotonic() - self.started, 1),
                           "stuck_scans": len(stuck), "stuck": stuck[:16],
                           "deadline_s": self.runner.seconds}).encode("utf-8")

    def _index(self, environ: Mapping[str, str]) -> bytes:
        scheme = environ.get("wsgi.url_scheme", "http")
        host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '')}"
        base = f"{scheme}://{host}"
        rows = []
        for sid in registry.sensor_ids():
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
