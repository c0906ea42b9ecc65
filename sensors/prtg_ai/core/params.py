"""Sensor parameters: declaration, parsing and the three ways PRTG passes them.

Sources, highest precedence first:

1. command-line options (``--path /data --window 6h``), as PRTG's "Parameters"
   field passes them to EXE/Script Advanced and SSH Script Advanced;
2. Python Script Advanced's JSON document in ``sys.argv[1]``: its ``params`` string
   is split like a command line; of its other keys only PRTG placeholders a parameter
   declares (``env=("prtg_host",)`` takes the key ``host``) are used, every other key
   (``timeout`` included) is ignored;
3. PRTG placeholders exported as environment variables ("Set placeholders as
   environment values": ``prtg_host``, ...), for parameters that declare them;

then the declared default.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence

from prtg_ai.core.errors import ConfigError

MAX_VALUE_LEN = 4096
PLACEHOLDER_PREFIX = "prtg_"  # PRTG placeholder env names; the PSA JSON key is the rest
_DURATION = r"(?i)^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$"  # compiled on first use (re caches it)
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

KINDS = ("str", "int", "float", "duration", "path", "glob", "choice", "flag")


class Param:
    """A declared sensor parameter.

    ``kind`` is one of ``str``, ``int``, ``float``, ``duration`` (``90s``, ``30m``,
    ``6h``, ``2d``; seconds as a float), ``path``, ``glob``, ``choice``, ``flag``.
    ``env`` names PRTG placeholders (environment variables) that may supply it;
    ``state_key`` marks parameters that identify the sensor instance's state;
    ``secret`` values are scrubbed from every output and log.
    """

    __slots__ = ("name", "kind", "help", "required", "default", "multiple", "choices", "minimum",
                 "maximum", "secret", "env", "state_key", "metavar")

    def __init__(self, name: str, kind: str = "str", help: str = "", required: bool = False,
                 default: Any = None, multiple: bool = False, choices: tuple[str, ...] = (),
                 minimum: float | None = None, maximum: float | None = None, secret: bool = False,
                 env: tuple[str, ...] = (), state_key: bool = False, metavar: str = "VALUE"):
        if kind not in KINDS:
            raise ValueError(f"parameter {name!r}: unknown kind {kind!r}")
        self.name, self.kind, self.help, self.required = name, kind, help, required
        self.default, self.multiple, self.choices = default, multiple, tuple(choices)
        self.minimum, self.maximum, self.secret = minimum, maximum, secret
        self.env, self.state_key, self.metavar = tuple(env), state_key, metavar

    def __repr__(self) -> str:
        return f"Param({self.name!r}, {self.kind!r})"

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    def convert(self, raw: str) -> Any:
        """Convert one raw string to this parameter's type, or raise ConfigError."""
        if len(raw) > MAX_VALUE_LEN:
            raise ConfigError(self.name, f"value is {len(raw)} characters long; at most {MAX_VALUE_LEN} are accepted")
        if "\x00" in raw:
            raise ConfigError(self.name, "value contains a NUL character")
        if self.kind == "int":
            try:
                value: Any = int(raw.strip())
            except ValueError:
                raise ConfigError(self.name, f"expected a whole number, got {raw!r}") from None
        elif self.kind == "float":
            try:
                value = float(raw.strip())
            except ValueError:
                raise ConfigError(self.name, f"expected a number, got {raw!r}") from None
            if not math.isfinite(value):
                raise ConfigError(self.name, f"expected a finite number, got {raw!r}")
        elif self.kind == "duration":
            value = parse_duration(self.name, raw)
        elif self.kind == "choice":
            value = raw.strip().lower()
            if value not in self.choices:
                raise ConfigError(self.name, f"{raw!r} is not one of {', '.join(self.choices)}")
        elif self.kind == "path":
            if not raw.strip():
                raise ConfigError(self.name, "path is empty")
            from pathlib import Path  # only sensors with a path parameter pay for pathlib

            value = Path(raw)
        elif self.kind == "glob":
            value = raw.strip()
            if not value:
                raise ConfigError(self.name, "pattern is empty")
            if "/" in value or "\\" in value:
                raise ConfigError(self.name, f"{raw!r}: the pattern matches entry names, it may not contain a path separator")
        elif self.kind == "flag":
            lowered = raw.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ConfigError(self.name, f"expected yes or no, got {raw!r}")
            value = lowered in ("1", "true", "yes", "on")
        else:
            value = raw
        if self.kind in ("int", "float", "duration"):
            self._check_range(value, raw)
        return value

    def _check_range(self, value: float, raw: str) -> None:
        def show(x: float) -> str:
            return format_duration(x) if self.kind == "duration" else f"{x:g}"

        if self.minimum is not None and value < self.minimum:
            raise ConfigError(self.name, f"{raw!r} is below the minimum of {show(self.minimum)}")
        if self.maximum is not None and value > self.maximum:
            raise ConfigError(self.name, f"{raw!r} is above the maximum of {show(self.maximum)}")


def parse_duration(name: str, raw: str) -> float:
    match = re.match(_DURATION, raw)
    if not match:
        raise ConfigError(name, f"{raw!r} is not a duration; use a number with s, m, h, d or w, e.g. 6h or 30m")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]


def format_duration(seconds: float) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def split_cli(argv: Sequence[str], declared: Sequence[Param]) -> dict[str, list[str]]:
    """Split ``--name value`` / ``--name=value`` arguments into raw strings per parameter."""
    by_option = {p.option: p for p in declared}
    raw: dict[str, list[str]] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(None, f"Unexpected argument {arg!r}: parameters are given as --name VALUE ({_known(declared)})")
        option, has_eq, inline = arg.partition("=")
        param = by_option.get(option)
        if param is None:
            raise ConfigError(None, f"Unknown option {option!r}. {_known(declared)}")
        if param.kind == "flag" and not has_eq:
            # "--explain" alone means yes; "--explain no" (PRTG parameter strings, the
            # agent's query) carries its value, and a bad one names the parameter
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                i += 1
                value = args[i]
            else:
                value = "yes"
        elif has_eq:
            value = inline
        else:
            if i + 1 >= len(args):
                raise ConfigError(param.name, "needs a value")
            i += 1
            value = args[i]
        raw.setdefault(param.name, []).append(value)
        i += 1
    return raw


def _known(declared: Sequence[Param]) -> str:
    if not declared:
        return "This sensor takes no parameters."
    return "This sensor takes " + ", ".join(p.option for p in declared) + "."


def python_script_json(document: str, declared: Sequence[Param]) -> dict[str, list[str]]:
    """Turn Python Script Advanced's ``sys.argv[1]`` JSON into raw parameter strings."""
    try:
        data = json.loads(document)
    except ValueError:
        raise ConfigError(None, "The first argument looks like Python Script Advanced JSON but does not parse") from None
    if not isinstance(data, dict):
        raise ConfigError(None, "Python Script Advanced JSON must be an object")
    # Only PRTG placeholders a parameter declares (``env=("prtg_host",)`` maps the key
    # ``host``) are taken; PRTG's other keys (``timeout`` is the scanning interval minus
    # one second, not ours) and any key that merely matches a parameter name are ignored.
    mapped = {var[len(PLACEHOLDER_PREFIX):]: p.name for p in declared for var in p.env
              if var.startswith(PLACEHOLDER_PREFIX)}
    raw: dict[str, list[str]] = {}
    for key, value in data.items():
        name = mapped.get(key) if isinstance(key, str) else None
        if name and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            raw.setdefault(name, []).append(str(value))
    extra = data.get("params")
    if isinstance(extra, str) and extra.strip():
        try:
            import shlex  # only for the rare Python Script Advanced 'params' string

            words = shlex.split(extra, posix=True)
        except ValueError as exc:
            raise ConfigError(None, f"Additional parameters do not parse: {exc}") from None
        for name, values in split_cli(words, declared).items():
            raw[name] = values  # explicit parameters win over same-named placeholders
    return raw


def resolve(
    declared: Sequence[Param],
    argv: Sequence[str],
    env: Mapping[str, str],
) -> dict[str, Any]:
    """Return the typed parameter values from argv, PSA JSON and environment placeholders."""
    argv = list(argv)
    raw: dict[str, list[str]] = {}
    if argv and argv[0].lstrip().startswith("{"):
        raw.update(python_script_json(argv[0], declared))
        argv = argv[1:]
    raw.update(split_cli(argv, declared))
    values: dict[str, Any] = {}
    for param in declared:
        strings = raw.get(param.name)
        if strings is None:
            for var in param.env:
                if env.get(var):
                    strings = [env[var]]
                    break
        if strings is None:
            if param.required:
                raise ConfigError(param.name, f"is required ({param.help})" if param.help else "is required")
            values[param.name] = param.default
            continue
        if not param.multiple and len(strings) > 1:
            raise ConfigError(param.name, "given more than once")
        converted = []
        for s in strings:
            # Every repeatable parameter also takes a comma-separated list (no value of one holds a comma).
            parts = [x.strip() for x in s.split(",")] if param.multiple else [s]
            converted.extend(param.convert(x) for x in parts if x or not param.multiple)
        values[param.name] = converted if param.multiple else converted[0]
    return values
