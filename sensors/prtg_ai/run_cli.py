"""``prtg-ai run SENSOR ...``: the path PRTG starts on every scan.

It never imports click (or any other sensor's code): start-up is part of the
product (benchmarks/bench_startup.py). ``cli.main`` sends ``run`` here; the click
command ``prtg-ai run --help`` documents the same options.
"""

from __future__ import annotations

import sys

RUN_USAGE = "prtg-ai run SENSOR [--format prtg|v2|table] [--deadline 45s] [--PARAM VALUE ...]"


def _take_option(args: list[str], option: str, example: str) -> tuple[str | None, list[str], str | None]:
    """Take ``OPTION VALUE`` / ``OPTION=VALUE`` (the last one wins) out of ``args``: (value, rest, problem)."""
    value, rest, problem = None, [], None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == option:
            if i + 1 < len(args):
                value = args[i + 1]
                i += 2
                continue
            problem = f"{option} needs a value, e.g. {example}"
        elif arg.startswith(option + "="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return value, rest, problem


def _split_format(args: list[str]) -> tuple[str, list[str], str | None]:
    fmt, rest, problem = _take_option(args, "--format", "prtg, v2 or table")
    fmt = "prtg" if fmt is None else fmt
    if fmt not in ("prtg", "v2", "table") and problem is None:
        problem = f"--format {fmt!r} is not one of prtg, v2, table"
        fmt = "prtg"
    return fmt, rest, problem


def run_command(args: list[str]) -> int:
    """``prtg-ai run SENSOR ...``: print one PRTG result and exit 0, whatever happens.

    The scan runs under a ``Watchdog``: past its deadline the watchdog prints a PRTG
    error naming what the scan was waiting on and ends the process (exit 0), even
    when the scan is stuck in a C call that never returns.
    """
    watchdog = None
    try:
        from prtg_ai.core import deadline
        from prtg_ai.core.context import Context
        from prtg_ai.core.log import prepare
        from prtg_ai.core.runtime import execute, finish
        from prtg_ai.prtg.model import SensorResult

        fmt, rest, problem = _split_format(args)
        # --deadline is a runtime option of every sensor, taken out before the sensor's own.
        raw_deadline, rest, deadline_problem = _take_option(rest, "--deadline", "30s")
        ctx = Context()
        problem = problem or deadline_problem
        seconds = deadline.DEFAULT_S
        try:
            seconds = deadline.parse(raw_deadline if raw_deadline is not None else ctx.env.get(deadline.ENV))
        except ValueError as exc:
            problem = problem or str(exc)
        prepare(ctx.state_path, ctx.env, ctx.secrets)
        sensor_id = rest[0] if rest else ""

        def overrun(what: str) -> None:
            text = deadline.overrun_text(sensor_id[:60], seconds, what)
            # PRTG's answer first: the stuck scan might hold a lock the log needs.
            _write(finish(SensorResult.failure(ctx.secrets.scrub(text)), fmt).text)
            from prtg_ai.core.log import get_logger

            get_logger("prtg_ai.runtime").error("%s", ctx.secrets.scrub(text))

        if problem:
            outcome = finish(SensorResult.failure(problem), fmt)
        elif not rest or rest[0].startswith("-"):
            from prtg_ai.core.registry import sensor_ids

            outcome = finish(SensorResult.failure(
                f"No sensor named. Usage: {RUN_USAGE}. Sensors: {', '.join(sensor_ids())}"), fmt)
        else:
            with deadline.Watchdog(seconds, overrun) as watchdog:
                outcome = execute(rest[0], rest[1:], ctx, fmt)
        text = outcome.text
    except BaseException as exc:  # the last guard: even a broken install answers PRTG in JSON
        if isinstance(exc, KeyboardInterrupt):
            text = '{"prtg":{"error":1,"text":"Sensor interrupted before it finished."}}'
        else:
            text = ('{"prtg":{"error":1,"text":"prtg-ai could not start (%s). '
                    'Reinstall the pack or run prtg-ai doctor on this host."}}' % type(exc).__name__)
    if watchdog is not None and not watchdog.claim():
        watchdog.wait_forever()  # the watchdog has answered and is ending the process
    _write(text)
    return 0


def _write(text: str) -> None:
    if sys.stdout is None:  # started with stdout closed (>&-): nobody to tell, and no traceback either
        return
    data = (text if text.endswith("\n") else text + "\n").encode("utf-8")
    stream = getattr(sys.stdout, "buffer", None)
    try:
        if stream is not None:
            stream.write(data)
            stream.flush()
        else:
            sys.stdout.write(data.decode("utf-8"))
            sys.stdout.flush()
    except OSError:  # BrokenPipeError among them: the reader went away
        pass
