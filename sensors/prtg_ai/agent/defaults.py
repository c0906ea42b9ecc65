"""Node settings for the agent: ``serve --sensor-defaults SENSOR="--PARAM VALUE ..."``.

What a device template cannot know (where this node keeps its checkpoints, how many
GPUs it should have) lives on the node, not in PRTG: the agent adds these parameters
to every request for that sensor, and a parameter the request names itself wins.
The same lines come from ``PRTG_AI_SENSOR_DEFAULTS`` (entries separated by newlines
or ``;``: the systemd environment file, a Kubernetes ConfigMap), in the shape
``push --sensor-args`` takes.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from prtg_ai.core import registry
from prtg_ai.core.errors import ConfigError
from prtg_ai.core.params import split_cli

ENV = "PRTG_AI_SENSOR_DEFAULTS"
OPTION = "--sensor-defaults"


class DefaultsError(ValueError):
    """A ``--sensor-defaults`` line that names no sensor or a parameter the sensor lacks."""


def env_entries(value: str | None) -> list[str]:
    """Entries of ``PRTG_AI_SENSOR_DEFAULTS``: one per line or ``;``-separated."""
    if not value:
        return []
    return [e.strip() for line in value.splitlines() for e in line.split(";") if e.strip()]


def parse(entries: Iterable[str]) -> dict[str, list[str]]:
    """``SENSOR="--PARAM VALUE ..."`` entries -> sensor id -> argv; checked against each sensor's parameters."""
    out: dict[str, list[str]] = {}
    for entry in entries:
        sensor, eq, args = entry.partition("=")
        sensor = sensor.strip()
        if not eq or not sensor:
            raise DefaultsError(f'{OPTION} {entry[:60]!r}: expected SENSOR="--PARAM VALUE ..."')
        if sensor not in registry.SENSORS:
            raise DefaultsError(f"{OPTION} {sensor[:40]!r}: no such sensor (sensors: {', '.join(registry.sensor_ids())})")
        try:
            words = shlex.split(args, posix=True)
            split_cli(words, registry.get(sensor).params)  # unknown options fail at start, not per scan
        except ValueError as exc:
            raise DefaultsError(f"{OPTION} {sensor}: {exc}") from None
        except ConfigError as exc:
            raise DefaultsError(f"{OPTION} {sensor}: {exc.message()}") from None
        out.setdefault(sensor, []).extend(words)
    return out


def merge(sensor_cls, defaults: list[str], request_argv: list[str]) -> list[str]:
    """The request's ``--name=value`` argv plus each default parameter the request does not name."""
    if not defaults:
        return request_argv
    named = {arg.partition("=")[0] for arg in request_argv}
    raw = split_cli(defaults, sensor_cls.params)
    by_name = {p.name: p for p in sensor_cls.params}
    merged = list(request_argv)
    for name, values in raw.items():
        option = by_name[name].option
        if option not in named:
            merged += [f"{option}={v}" for v in values]
    return merged


def configured_paths(defaults: dict[str, list[str]]) -> list[str]:
    """The path values the node's administrator configured: the agent lets requests reach exactly these.

    ``--sensor-defaults checkpoint_volume="--path /data/ckpt"`` on a network listener
    without ``--allow-path`` would otherwise be refused by the agent's own path policy.
    """
    out = []
    for sensor, words in defaults.items():
        params = registry.get(sensor).params
        kinds = {p.name: p.kind for p in params}
        for name, values in split_cli(words, params).items():
            if kinds.get(name) == "path":
                out += [str(v) for v in values if str(v).strip()]
    return out


def missing_text(sensor_cls, argv: list[str]) -> str | None:
    """When a required parameter is neither in the request nor configured: the exact line to add."""
    named = {arg.partition("=")[0] for arg in argv}
    missing = [p for p in sensor_cls.params if p.required and p.option not in named]
    if not missing:
        return None
    p = missing[0]
    example = f'{sensor_cls.id}="{p.option} {p.metavar or "VALUE"}"'
    return (f"Sensor {sensor_cls.id} needs {p.option} ({p.help}) and this node has none configured. "
            f"Add {OPTION} {example} to the agent (or a line {example} to {ENV} in its environment file "
            f"or ConfigMap) and restart it, or add {p.name}=... to this sensor's URL.")
