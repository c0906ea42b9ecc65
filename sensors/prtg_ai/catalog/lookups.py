"""Value lookups (``.ovl``) as data: id, desired value, undefined state and each value's state.

``<sensor_id>.lookups.csv`` beside the channel catalogue is the source; ``lookups/*.ovl`` are rendered from it
(``prtg-ai render``) and a test fails when they are stale.
"""

from __future__ import annotations

import csv
import os
from functools import lru_cache

from prtg_ai.catalog import CATALOG_DIR

STATES = ("Ok", "Warning", "Error", "None")


class Lookup:
    """One value lookup: its id, desired value, state for undefined values and value -> (state, text)."""

    def __init__(self, id: str, desired: int, undefined: str):
        self.id = id
        self.desired = desired
        self.undefined = undefined
        self.values: dict[int, tuple[str, str]] = {}


@lru_cache(maxsize=None)
def load_lookups() -> dict[str, Lookup]:
    lookups: dict[str, Lookup] = {}
    for name in sorted(n for n in os.listdir(CATALOG_DIR) if n.endswith(".lookups.csv")):
        _read(os.path.join(CATALOG_DIR, name), lookups)
    return lookups


def _read(path, lookups: dict[str, Lookup]) -> None:
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            lk = lookups.setdefault(row["lookup"], Lookup(row["lookup"], int(row["desired"]), row["undefined"]))
            if int(row["desired"]) != lk.desired or row["undefined"] != lk.undefined:
                raise ValueError(f"lookup {lk.id}: desired/undefined differ between rows")
            if row["state"] not in STATES or row["undefined"] not in STATES:
                raise ValueError(f"lookup {lk.id}: state must be one of {STATES}")
            value = int(row["value"])
            if value in lk.values:
                raise ValueError(f"lookup {lk.id}: value {value} twice")
            lk.values[value] = (row["state"], row["text"])
