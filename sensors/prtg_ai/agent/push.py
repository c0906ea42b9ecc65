"""``prtg-ai push``: run sensors on a schedule and POST each result to PRTG's push port.

For nodes PRTG cannot reach (training nodes behind NAT), an HTTP Push Data
Advanced sensor on the probe listens on ``http(s)://<probe>:5050|5051/<token>``
and takes the same legacy JSON the script sensors print, POSTed with
``Content-Type: application/json``. The probe answers
``{"status": "Ok", "Matching Sensors": "1"}``; ``"0"`` means no sensor has that
token (a typo, or the sensor was deleted), which is logged as a warning.

Targets: ``--token SENSOR[:LABEL]=TOKEN`` names one push sensor; its parameters
come from ``--sensor-args SENSOR[:LABEL]="--path /data/ckpt"`` (a command line
as ``prtg-ai run`` takes it). The label lets one node push two instances of the
same sensor (two checkpoint folders) to two PRTG sensors.

Delivery: TLS is verified by default (``--ca-file`` for a probe's own CA,
``--insecure-skip-verify`` only when asked). A failed push (connection error,
timeout, HTTP 429 or 5xx, or any other non-2xx) is retried after an exponential
backoff with jitter (``base * 2**(n-1)`` seconds, capped at the interval, scaled by a
random factor in [0.5, 1]), so a fleet of nodes does not hammer a probe that just
came back in lock-step. A retry runs the sensor again: PRTG stamps data with the
time it arrives, so fresh data is the right data. SIGTERM / SIGINT stop the loop
at once, between pushes (a push in flight is bounded by ``--timeout``).

The token is part of the URL, so it is registered with the Scrubber: it never
appears in a log line, including error messages from the HTTP library.
"""

from __future__ import annotations

import json
import logging
import random
import shlex
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from prtg_ai import __version__
from prtg_ai.core import registry
from prtg_ai.core.context import Context
from prtg_ai.core.runtime import finish, run_sensor
from prtg_ai.prtg.model import SensorResult
from prtg_ai.core.secrets import Scrubber
from prtg_ai.maths.backoff import backoff_s

log = logging.getLogger("prtg_ai.agent.push")
BASE_BACKOFF_S = 1.0
RETRY_STATUS = 429


class PushConfigError(ValueError):
    """The push settings are unusable; the message says which option is wrong."""


@dataclass
class Target:
    """One push sensor: what to run and which token it pushes to."""

    key: str  # "SENSOR" or "SENSOR:LABEL"; shown in logs instead of the token
    sensor_id: str
    argv: list[str]
    token: str
    next_due: float = 0.0
    slot: float = 0.0  # the regular schedule, kept so retries do not shift it
    failures: int = 0


@dataclass
class Delivery:
    """What one POST achieved."""

    ok: bool
    detail: str
    matching: int | None = None


def parse_targets(token_specs: Iterable[str], args_specs: Iterable[str] = ()) -> list[Target]:
    """Build targets from ``SENSOR[:LABEL]=TOKEN`` and ``SENSOR[:LABEL]=ARGS`` specs.

    Raises:
        PushConfigError: unknown sensor, malformed spec, duplicate key, or
            arguments for a key that has no token.
    """
    targets: dict[str, Target] = {}
    for spec in token_specs:
        key, sep, token = spec.partition("=")
        key, token = key.strip(), token.strip()
        if not sep or not key or not token:
            raise PushConfigError("--token must be SENSOR=TOKEN or SENSOR:LABEL=TOKEN (the push sensor's "
                                  "Identification Token)")
        sensor_id = key.split(":", 1)[0]
        if sensor_id not in registry.SENSORS:
            raise PushConfigError(f"--token {key}=...: unknown sensor {sensor_id!r}; sensors: "
                                  f"{', '.join(registry.sensor_ids())}")
        if key in targets:
            raise PushConfigError(f"--token {key}=... given twice; use SENSOR:LABEL for a second instance")
        targets[key] = Target(key, sensor_id, [], token)
    for spec in args_specs:
        key, sep, args = spec.partition("=")
        key = key.strip()
        if not sep or key not in targets:
            raise PushConfigError(f"--sensor-args {spec[:40]!r}: expected KEY=\"--param value ...\" where KEY is "
                                  f"one of the --token keys ({', '.join(targets) or 'none given'})")
        try:
            targets[key].argv += shlex.split(args, posix=True)
        except ValueError as exc:
            raise PushConfigError(f"--sensor-args {key}: {exc}") from None
    if not targets:
        raise PushConfigError("give at least one --token SENSOR=TOKEN")
    return list(targets.values())


def check_probe_url(url: str) -> str:
    """Return the probe's base URL without a trailing slash; raise PushConfigError if unusable."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PushConfigError(f"--probe {url!r}: expected http(s)://PROBE:PORT, e.g. https://probe.example:5051")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise PushConfigError("--probe takes no query, fragment or credentials: the token goes in --token")
    return url.strip().rstrip("/")


def backoff_delay(failures: int, cap: float, base: float = BASE_BACKOFF_S,
                  rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after the ``failures``-th failure in a row: exponential, capped, jittered."""
    return backoff_s(failures, base, cap) * (0.5 + 0.5 * rand())


class Pusher:
    """Runs targets on their schedule and POSTs their results.

    Args:
        probe: the probe's push base URL, e.g. ``https://probe:5051``.
        targets: what to push.
        interval: seconds between pushes of one target (PRTG's scanning interval).
        session: a ``requests.Session``-like object (injectable for tests).
        verify: ``True``, a CA bundle path, or ``False`` (explicit opt-out).
        timeout: seconds for one POST (connect and read).
        ctx: the sensor context (state folder, environment, scrubber).
        sleep: ``sleep(seconds) -> stop_requested``; defaults to waiting on the stop event.
        clock: monotonic clock.
        rand: random source in [0, 1) for the jitter.
    """

    def __init__(self, probe: str, targets: Sequence[Target], interval: float = 60.0, *,
                 session=None, verify: bool | str = True, timeout: float = 15.0, ctx: Context | None = None,
                 sleep: Callable[[float], bool] | None = None, clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random, max_backoff: float | None = None):
        self.probe = check_probe_url(probe)
        self.targets = list(targets)
        self.interval = float(interval)
        self.verify = verify
        self.timeout = timeout
        self.ctx = ctx or Context()
        self._runner = None  # the deadline runner, made on the first push
        self.stop_event = threading.Event()
        self._sleep = sleep or self.stop_event.wait
        self.clock = clock
        self.rand = rand
        self.max_backoff = min(self.interval, max_backoff or self.interval)
        if session is None:
            import requests

            session = requests.Session()
        self.session = session
        self.session.headers.update({"Content-Type": "application/json",
                                     "User-Agent": f"prtg-ai/{__version__}"})
        for target in self.targets:
            self.secrets.register(target.token)
            self.secrets.register(quote(target.token, safe=""))

    @property
    def secrets(self) -> Scrubber:
        return self.ctx.secrets

    def url_for(self, target: Target) -> str:
        return f"{self.probe}/{quote(target.token, safe='')}"

    def stop(self) -> None:
        """Stop after the current push (signal- and thread-safe)."""
        self.stop_event.set()

    # -- one push ------------------------------------------------------------
    def body_for(self, target: Target) -> str:
        """Run the target's sensor; the legacy PRTG JSON, checked against PRTG's rules.

        Under the per-scan deadline (``PRTG_AI_DEADLINE``): a hung scan is pushed as a PRTG
        error naming what it waits on, and the next push shares (not repeats) the stuck call.
        """
        if self._runner is None:
            from prtg_ai.agent.dispatch import ScanRunner
            from prtg_ai.core import deadline

            try:
                seconds = deadline.parse(self.ctx.env.get(deadline.ENV))
            except ValueError:
                seconds = deadline.DEFAULT_S
            self._runner = ScanRunner(seconds, lambda text: finish(
                SensorResult.failure(self.ctx.secrets.scrub(text)), "prtg").text.encode("utf-8"))
        key = (target.sensor_id, tuple(target.argv))
        body = self._runner.run(key, target.sensor_id, lambda: finish(
            run_sensor(target.sensor_id, target.argv, self.ctx), "prtg").text.encode("utf-8"))
        return body.decode("utf-8")

    def post(self, target: Target, body: str) -> Delivery:
        """POST ``body`` to the target's push URL and interpret the probe's reply."""
        try:
            reply = self.session.post(self.url_for(target), data=body.encode("utf-8"), timeout=self.timeout,
                                      verify=self.verify, allow_redirects=False)
        except Exception as exc:  # requests' errors, TLS errors, bad proxies: all mean "retry later"
            return Delivery(False, self.secrets.scrub(f"{type(exc).__name__}: {exc}")[:500])
        if not 200 <= reply.status_code < 300:
            hint = " (rate limited)" if reply.status_code == RETRY_STATUS else ""
            # The status only: the probe's (or whatever answers there) body is not copied into the log.
            return Delivery(False, f"HTTP {reply.status_code}{hint}")
        try:
            answer = json.loads(reply.text)
            matching = int(answer.get("Matching Sensors"))
            status = str(answer.get("status", ""))
        except (ValueError, TypeError, AttributeError):
            return Delivery(True, f"HTTP {reply.status_code}, reply not in PRTG's format ({len(reply.content)} bytes)")
        return Delivery(True, f"status {status!r}, matching sensors {matching}", matching)

    def push(self, target: Target) -> Delivery:
        """Run and POST one target, log the outcome and schedule its next push."""
        delivery = self.post(target, self.body_for(target))
        now = self.clock()
        if delivery.ok:
            target.failures = 0
            if delivery.matching == 0:
                log.warning("Pushed %s but the probe has no sensor with its token (Matching Sensors: 0): "
                            "check the HTTP Push Data Advanced sensor's Identification Token", target.key)
            else:
                log.info("Pushed %s: %s", target.key, delivery.detail)
            target.slot += self.interval
            if target.slot <= now:  # we fell behind (long outage, slow sensor): restart the grid
                target.slot = now + self.interval
            target.next_due = target.slot
        else:
            target.failures += 1
            delay = backoff_delay(target.failures, self.max_backoff, rand=self.rand)
            log.warning("Push of %s failed (%s); attempt %d, retrying in %.1f s", target.key, delivery.detail,
                        target.failures, delay)
            target.next_due = now + delay
        return delivery

    # -- the loop ------------------------------------------------------------
    def run(self, max_pushes: int | None = None, once: bool = False, max_attempts: int = 5) -> int:
        """Push until stopped (or, with ``once``, until each target was delivered or gave up).

        Args:
            max_pushes: stop after this many POSTs in total (tests).
            once: push each target once, retrying up to ``max_attempts``; exit code 1 if one failed.
            max_attempts: attempts per target with ``once``.

        Returns:
            The process exit code.
        """
        start = self.clock()
        for target in self.targets:
            target.slot = target.next_due = start
        pending = list(self.targets)
        failed: list[Target] = []
        posts = 0
        while pending and not self.stop_event.is_set():
            target = min(pending, key=lambda t: t.next_due)
            wait = target.next_due - self.clock()
            if wait > 0 and self._sleep(wait):
                break
            if self.stop_event.is_set():
                break
            delivery = self.push(target)
            posts += 1
            if once and (delivery.ok or target.failures >= max_attempts):
                pending.remove(target)
                if not delivery.ok:
                    failed.append(target)
            if max_pushes is not None and posts >= max_pushes:
                break
        if self.stop_event.is_set():
            log.info("Push loop stopped by a signal after %d push(es)", posts)
        return 1 if failed else 0


def install_signal_handlers(pusher: Pusher) -> None:
    """SIGTERM / SIGINT (Ctrl+Break on Windows) stop the loop cleanly; main thread only."""
    def handler(signum, frame):  # noqa: ARG001 - signal API
        pusher.stop()

    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, handler)
