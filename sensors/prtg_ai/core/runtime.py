"""The guarded runtime: whatever happens, one valid PRTG result.

``execute`` resolves the sensor and its parameters, runs it, adds the
execution-time self-metric, renders the result and checks it against PRTG's rules
before it leaves. Every exception becomes an error result with an actionable
text: no traceback reaches PRTG (it goes to the log) and registered secrets are
scrubbed from the text.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prtg_ai.core import registry
from prtg_ai.core.context import Context
from prtg_ai.core.errors import ConfigError, PrtgAiError
from prtg_ai.core.log import get_logger
from prtg_ai.core.params import Param, resolve
from prtg_ai.prtg.model import SensorResult
from prtg_ai.prtg.render import render
from prtg_ai.prtg.validate import validate

log = get_logger("prtg_ai.runtime")
FORMATS = ("prtg", "v2", "table")
# PRTG placeholders that carry credentials: scrubbed wherever they would appear.
SECRET_ENV = ("prtg_windowspassword", "prtg_linuxpassword", "prtg_snmpcommunity",
              "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "PRTG_AI_TOKEN")
# Runtime-level option every sensor accepts: adaptive baselines of chosen channels.
BASELINE = Param("baseline", "str", "channel to keep an adaptive baseline for (repeatable or comma-separated): adds "
                 "'<channel> Deviation' and '<channel> Baseline State'", multiple=True, default=(),
                 metavar="CHANNEL")
MAX_BASELINES = 8  # the Script v2 id span the catalogue reserves for the companion channels


class Outcome:
    """What one guarded run produced: the result, its rendered text, the rule problems found."""

    __slots__ = ("result", "text", "problems")

    def __init__(self, result: SensorResult, text: str, problems: list[str]):
        self.result, self.text, self.problems = result, text, problems


def run_sensor(sensor_id: str, argv: Sequence[str], ctx: Context) -> SensorResult:
    """Run a sensor and return its SensorResult; every failure becomes an error result.

    A state file with well-formed JSON but contents of the wrong type (hand-edited,
    planted, written by a buggy build) would make every later scan fail the same
    way; so when a run fails unexpectedly after loading state, the files it loaded
    are set aside (``.corrupt``) and the sensor runs once more from a fresh baseline.
    """
    from prtg_ai.core import state

    run = state.begin_run()
    result = _run_once(sensor_id, argv, ctx)
    if run.get("crashed") and run["loaded"]:
        names = [f for f in run["loaded"] if state.set_aside(f)]
        if names:
            log.warning("Set aside state file(s) %s after an internal error; retrying with a fresh baseline", names)
            run = state.begin_run()
            result = _run_once(sensor_id, argv, ctx)
            result.note(f"State file(s) {', '.join(sorted(_base(n) for n in names))} held unexpected contents; "
                        f"set aside as .corrupt and started a fresh baseline")
    for note in run["late"]:
        result.note(note)  # e.g. a state that could not be saved, noticed after the sensor built its text
    return _scrubbed(result, ctx)


def _base(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _run_once(sensor_id: str, argv: Sequence[str], ctx: Context) -> SensorResult:
    from prtg_ai.core.state import _RUN

    started = time.perf_counter()
    for var in SECRET_ENV:
        ctx.secrets.register(ctx.env.get(var))
    try:
        cls = registry.get(sensor_id)
        own = any(p.name == BASELINE.name for p in cls.params)
        values = resolve(cls.params if own else (*cls.params, BASELINE), argv, ctx.env)
        baselines = () if own else tuple(values.pop(BASELINE.name) or ())
        for param in cls.params:
            if param.secret and values.get(param.name):
                ctx.secrets.register(str(values[param.name]))
        sensor = cls(ctx, values)
        result = sensor.run()
        if not result.error:
            order_channels(result, sensor.catalog)
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            result.add(sensor.channel("execution_time", round(elapsed_ms, 3)))
            if baselines:
                _apply_baselines(sensor, result, baselines, ctx)
    except PrtgAiError as exc:  # ConfigError and SensorError: each says what to fix in its message
        result = SensorResult.failure(exc.message())
    except MemoryError:
        result = SensorResult.failure(f"Sensor {sensor_id!s:.60} ran out of memory. Check the host's free memory.")
    except Exception as exc:  # the guard: a bug must still give PRTG a clean error
        log.exception("Unexpected error in sensor %r", sensor_id)
        run = _RUN.get()
        if run is not None:
            run["crashed"] = True
        result = SensorResult.failure(
            f"Internal error in sensor {sensor_id!s:.60} ({type(exc).__name__}: {str(exc)[:300]}). "
            f"Details are in the log under {ctx.state_path}; please report it with that log."
        )
    return result


def order_channels(result: SensorResult, catalog) -> None:
    """Put channels in catalogue order, the intended primary channel (first row) first.

    PRTG fixes a sensor's primary channel (the first one) when it creates the channels,
    so the order must not depend on which channels a scan happens to have. Order: the
    sensor's single channels as their rows are listed; then per-instance channels
    (per GPU, per port) by instance, each instance's rows in catalogue order; then the
    common rows (Execution Time, baselines).
    """
    rank: dict[int, tuple[int, int, int]] = {}
    for position, spec in enumerate(catalog):
        group = 2 if spec.key in _COMMON_KEYS else (1 if spec.v2_span > 1 else 0)
        for index in range(spec.v2_span):
            rank.setdefault(spec.v2_id + index, (group, index if group == 1 else position,
                                                 position if group == 1 else index))
    last = (3, 0, 0)
    result.channels.sort(key=lambda ch: rank.get(ch.v2_id, last))


_COMMON_KEYS = ("execution_time", "baseline_deviation", "baseline_state")


def _apply_baselines(sensor, result: SensorResult, names: tuple[str, ...], ctx: Context) -> None:
    """Add a Deviation and a Baseline State channel for each ``--baseline`` channel.

    The history lives in its own state file of this sensor instance (the sensor's
    identity plus a marker), so it never disturbs the sensor's own samples.
    Imported lazily: sensors without ``--baseline`` pay nothing for it.
    """
    from prtg_ai.maths.baseline import STATE_NAMES, Baseline
    from prtg_ai.core.state import StateStore
    from prtg_ai.prtg.units import CHANNEL_LIMIT

    names = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    if len(names) > MAX_BASELINES:
        raise ConfigError(BASELINE.name, f"at most {MAX_BASELINES} channels can have a baseline, got {len(names)}")
    by_name = {ch.name: ch for ch in result.channels}
    for name in names:
        ch = by_name.get(name)
        if ch is not None and (ch.valuelookup or not isinstance(ch.value, (int, float)) or isinstance(ch.value, bool)):
            raise ConfigError(BASELINE.name, f"{name!r} is a state (lookup) channel; a baseline needs a measured value")
    identity = {**sensor.state_identity(), "_baseline": "1"}
    with StateStore(ctx.state_path).session(sensor.id, identity, max_samples=1) as state:
        now = ctx.now()
        for index, name in enumerate(names):
            ch = by_name.get(name)
            if ch is None:
                known = ", ".join(sorted(by_name))[:300]
                result.note(f"--baseline {name!r}: no such channel in this scan (channels: {known})")
                continue
            if len(result.channels) + 2 > CHANNEL_LIMIT:
                result.note(f"--baseline {name!r}: skipped, PRTG allows at most {CHANNEL_LIMIT} channels")
                continue
            baseline = Baseline(state.data.get(name))
            verdict = baseline.observe(now, float(ch.value))
            state.data[name] = baseline.doc()
            result.add(sensor.channel("baseline_deviation", round(verdict.z, 2), instance=name, index=index))
            result.add(sensor.channel("baseline_state", verdict.state, instance=name, index=index))
            if verdict.state >= 2:
                result.note(f"{name} is {STATE_NAMES[verdict.state]} for this hour of the week: "
                            f"{ch.value:g} against a usual {verdict.expected:g} (deviation {verdict.z:+.1f})")
        # Baselines of channels no longer asked for are dropped: the file stays bounded.
        for stale in set(state.data) - set(names):
            del state.data[stale]
        for note in state.notes:
            result.note(note)


def _scrubbed(result: SensorResult, ctx: Context) -> SensorResult:
    if ctx.secrets:
        result.text = ctx.secrets.scrub(result.text)
        result.notes = [ctx.secrets.scrub(n) for n in result.notes]
        for ch in result.channels:
            ch.name = ctx.secrets.scrub(ch.name)
    return result


def execute(sensor_id: str, argv: Sequence[str], ctx: Context, fmt: str = "prtg") -> Outcome:
    """Run a sensor and render it; the text is always a valid PRTG document."""
    result = run_sensor(sensor_id, argv, ctx)
    return finish(result, fmt)


def finish(result: SensorResult, fmt: str) -> Outcome:
    """Render ``result`` and enforce PRTG's rules on it before it leaves."""
    wire = "v2" if fmt == "v2" else "prtg"
    try:
        text = render(result, wire, _lookups() if wire == "v2" else None)
        problems = validate(text)
    except (ValueError, TypeError) as exc:
        problems = [f"could not be rendered ({exc})"]
    if problems:
        log.error("Result broke PRTG's rules: %s", problems)
        result = SensorResult.failure(
            "Internal error: the sensor produced a result PRTG would reject ("
            + "; ".join(problems)[:500] + "). Please report it with the log."
        )
        text = render(result, wire, _lookups() if wire == "v2" else None)
    if fmt == "table":
        from prtg_ai.prtg.table import render_table

        text = render_table(result, _lookups())
    return Outcome(result, text, problems)


def _lookups() -> dict:
    """The pack's lookup definitions, or none when they cannot be read (the table still prints)."""
    from prtg_ai.catalog.lookups import load_lookups

    try:
        return load_lookups()
    except (OSError, ValueError):
        return {}


__all__ = ["Outcome", "execute", "finish", "run_sensor", "FORMATS"]
