"""The channel catalogue: one source of truth for every channel the pack emits.

Each sensor has ``<sensor_id>.csv`` beside this module (DataDog's ``metadata.csv``
pattern); ``_common.csv`` holds channels every sensor carries. A row fixes a
channel's name, unit, sizes, float, lookup, default limits, Script v2 id and
description. Sensors build channels only through ``Catalog.make`` so code and
catalogue cannot drift; contract tests check both directions.

Value lookups a sensor uses are in ``<sensor_id>.lookups.csv`` (see ``lookups.py``).

Names may contain ``{instance}`` (per-port, per-GPU channels); such a row reserves
``v2_span`` consecutive Script v2 ids starting at ``v2_id``.
"""

from __future__ import annotations

import os
from functools import lru_cache

from prtg_ai.prtg.model import Channel

# Found beside this module, not through importlib.resources (prtg_ai.data): every scan reads
# the catalogue, and that import (typing, tempfile behind it) is more than the benchmark row
# "start-up: gpu (console script, whole process)" leaves room for (benchmarks/bench_startup.py).
# A string, not a Path: pathlib is not needed on a scan's path (see core/context.py).
CATALOG_DIR = os.path.dirname(os.path.abspath(__file__))
COLUMNS = (
    "key", "name", "unit", "customunit", "speedsize", "volumesize", "speedtime", "float",
    "lookup", "limitmode", "limitmaxerror", "limitmaxwarning", "limitminwarning",
    "limitminerror", "limitwarningmsg", "limiterrormsg", "v2_id", "v2_span", "description",
)
_LIMIT_KEYS = ("limitmaxerror", "limitmaxwarning", "limitminwarning", "limitminerror")


def _num(text: str) -> float | int | None:
    if text == "":
        return None
    value = float(text)
    return int(value) if value.is_integer() else value


SPEC_FIELDS = (
    "sensor", "key", "name", "unit", "customunit", "speedsize", "volumesize", "speedtime", "float",
    "lookup", "limitmode", "limitmaxerror", "limitmaxwarning", "limitminwarning", "limitminerror",
    "limitwarningmsg", "limiterrormsg", "v2_id", "v2_span", "description",
)


class ChannelSpec:
    """A catalogued channel (one CSV row, typed)."""

    __slots__ = SPEC_FIELDS

    def __init__(self, **values):
        for name in SPEC_FIELDS:
            setattr(self, name, values[name])

    def __repr__(self) -> str:
        return f"ChannelSpec({self.sensor}.{self.key}: {self.name!r})"

    @property
    def templated(self) -> bool:
        return "{instance}" in self.name

    def make(self, value, instance: str | None = None, index: int = 0, **overrides) -> Channel:
        """Build a Channel carrying ``value`` with this spec's presentation and limits.

        Args:
            value: the measured value (int for integer channels, float otherwise).
            instance: fills ``{instance}`` in templated names.
            index: position of the instance within this row's reserved v2 id span.
            **overrides: limit keys a user parameter changed (e.g. limitmaxwarning).
        """
        if self.templated:
            if instance is None:
                raise ValueError(f"channel {self.key!r} needs an instance")
            if not 0 <= index < self.v2_span:
                raise ValueError(f"channel {self.key!r}: index {index} outside its id span")
            name = self.name.format(instance=instance)
        else:
            name = self.name
        limits = {k: getattr(self, k) for k in _LIMIT_KEYS}
        limits.update({k: v for k, v in overrides.items() if k in _LIMIT_KEYS})
        has_limits = any(v is not None for v in limits.values())
        return Channel(
            name=name,
            value=value,
            unit=self.unit,
            customunit=self.customunit,
            speedsize=self.speedsize,
            volumesize=self.volumesize,
            speedtime=self.speedtime,
            float=self.float,
            valuelookup=self.lookup,
            limitmode=(self.limitmode or bool(overrides)) if has_limits else None,
            limitwarningmsg=self.limitwarningmsg if has_limits else None,
            limiterrormsg=self.limiterrormsg if has_limits else None,
            v2_id=self.v2_id + index,
            **limits,
        )


class Catalog:
    """The catalogued channels of one sensor (plus the common ones), by key."""

    def __init__(self, sensor: str, specs: dict[str, ChannelSpec]):
        self.sensor = sensor
        self.specs = specs

    def __getitem__(self, key: str) -> ChannelSpec:
        return self.specs[key]

    def __iter__(self):
        return iter(self.specs.values())

    def make(self, key: str, value, **kwargs) -> Channel:
        return self.specs[key].make(value, **kwargs)


def csv_fields(line: str) -> list[str]:
    """The fields of one line of a catalogue file (RFC 4180 quoting; a field never spans lines).

    Not the csv module: every scan reads the catalogue, and importing csv cost about
    2 ms of CPU, 5 % of the budget of the row "start-up: gpu_spend from a fresh cache"
    (benchmarks/bench_spend_startup.py). tests/contract/test_catalog.py holds this to
    csv.reader on every catalogue file and on hand-made quoting cases.
    """
    if '"' not in line:
        return line.split(",")
    fields, current = [], ""
    parts = line.split('"')  # even indexes lie outside quotes, odd ones inside
    for i, part in enumerate(parts):
        if i % 2:
            current += part
        elif 0 < i < len(parts) - 1 and part == "":
            current += '"'  # "" inside a quoted field: one quote
        else:
            pieces = part.split(",")
            current += pieces[0]
            for piece in pieces[1:]:
                fields.append(current)
                current = piece
    fields.append(current)
    return fields


def read_rows(path: str) -> list[dict[str, str]]:
    """The rows of a catalogue file as dicts by column (its header must be ``COLUMNS``)."""
    with open(path, encoding="utf-8", newline="") as fh:
        lines = [line[:-1] if line.endswith("\r") else line for line in fh.read().split("\n")]
    header = tuple(csv_fields(lines[0])) if lines else ()
    if header != COLUMNS:
        raise ValueError(f"{os.path.basename(path)}: columns must be {COLUMNS}")
    rows = []
    for number, line in enumerate(lines[1:], 2):
        if not line:
            continue
        fields = csv_fields(line)
        if len(fields) != len(COLUMNS):
            raise ValueError(f"{os.path.basename(path)}:{number}: {len(fields)} fields, not {len(COLUMNS)}")
        rows.append(dict(zip(COLUMNS, fields)))
    return rows


def _read_rows(path: str, sensor: str) -> dict[str, ChannelSpec]:
    specs: dict[str, ChannelSpec] = {}
    name = os.path.basename(path)
    for row in read_rows(path):
        key = row["key"]
        if key in specs:
            raise ValueError(f"{name}: duplicate key {key!r}")
        specs[key] = ChannelSpec(
            sensor=sensor,
            key=key,
            name=row["name"],
            unit=row["unit"] or "Custom",
            customunit=row["customunit"] or None,
            speedsize=row["speedsize"] or None,
            volumesize=row["volumesize"] or None,
            speedtime=row["speedtime"] or None,
            float=row["float"] == "1",
            lookup=row["lookup"] or None,
            limitmode=row["limitmode"] == "1",
            limitmaxerror=_num(row["limitmaxerror"]),
            limitmaxwarning=_num(row["limitmaxwarning"]),
            limitminwarning=_num(row["limitminwarning"]),
            limitminerror=_num(row["limitminerror"]),
            limitwarningmsg=row["limitwarningmsg"] or None,
            limiterrormsg=row["limiterrormsg"] or None,
            v2_id=int(row["v2_id"]),
            v2_span=int(row["v2_span"] or 1),
            description=row["description"],
        )
    return specs


@lru_cache(maxsize=None)
def load(sensor: str) -> Catalog:
    """Return the catalogue of ``sensor``: its own rows plus the common rows."""
    specs = _read_rows(os.path.join(CATALOG_DIR, "_common.csv"), sensor)
    specs.update(_read_rows(os.path.join(CATALOG_DIR, f"{sensor}.csv"), sensor))
    return Catalog(sensor, specs)


def catalogued_sensors() -> list[str]:
    return sorted(name[:-4] for name in os.listdir(CATALOG_DIR)
                  if name.endswith(".csv") and not name.startswith("_") and not name.endswith(".lookups.csv"))

