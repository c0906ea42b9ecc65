"""The catalogue and the code stay in step (DataDog's metadata.csv check, both directions)."""

from __future__ import annotations

import re

import pytest

from prtg_ai.catalog import COLUMNS, catalogued_sensors, load
from prtg_ai.catalog.lookups import load_lookups
from prtg_ai.core import registry
from prtg_ai.prtg.units import SIZES, SPEED_TIMES, UNITS, V2_MIN_ID
from support import COLLECTED_FILES, EMITTED


def _pattern(name: str) -> re.Pattern:
    return re.compile("^" + re.escape(name).replace(re.escape("{instance}"), ".+") + "$")


def _spec_for(sensor: str, channel_name: str):
    for spec in load(sensor):
        if _pattern(spec.name).match(channel_name):
            return spec
    return None


def test_every_registered_sensor_has_a_catalogue_and_vice_versa():
    assert sorted(registry.sensor_ids()) == catalogued_sensors()


@pytest.mark.parametrize("sensor", registry.sensor_ids())
def test_catalogue_rows_are_well_formed(sensor):
    cat = load(sensor)
    names, spans = set(), []
    for spec in cat:
        assert spec.unit in UNITS, f"{spec.key}: unit {spec.unit}"
        assert spec.speedsize in (None, *SIZES) and spec.volumesize in (None, *SIZES)
        assert spec.speedtime in (None, *SPEED_TIMES)
        assert spec.description, f"{spec.key} needs a description"
        assert spec.name not in names, f"duplicate channel name {spec.name}"
        names.add(spec.name)
        assert spec.v2_id >= V2_MIN_ID and spec.v2_span >= 1
        spans.append((spec.v2_id, spec.v2_id + spec.v2_span - 1, spec.key))
        if spec.lookup:
            assert spec.unit == "Custom" and not spec.float, f"{spec.key}: lookups need integer Custom"
            assert spec.lookup in load_lookups(), f"{spec.key}: lookup {spec.lookup} is not defined"
            assert spec.lookup.startswith("prtgai.")
            # PRTG: use either a lookup's states or limits on a channel, not both.
            assert not any(getattr(spec, k) is not None for k in
                           ("limitmaxerror", "limitmaxwarning", "limitminwarning", "limitminerror"))
        if spec.templated:
            assert spec.v2_span > 1, f"{spec.key}: templated channels reserve an id span"
    spans.sort()
    for (a_lo, a_hi, a), (b_lo, b_hi, b) in zip(spans, spans[1:]):
        assert a_hi < b_lo, f"Script v2 ids of {a} and {b} overlap"


def test_catalogue_columns_are_fixed():
    assert COLUMNS[0] == "key" and "v2_id" in COLUMNS


@pytest.mark.after_all
def test_every_emitted_channel_is_catalogued_with_its_unit_and_float():
    if not EMITTED:
        pytest.skip("no sensor result was recorded in this run; run the whole suite")
    for sensor, chans in EMITTED.items():
        for name, seen in chans.items():
            spec = _spec_for(sensor, name)
            assert spec is not None, f"{sensor}: channel {name!r} is emitted but not catalogued"
            for unit, customunit, is_float, lookup in seen:
                assert (unit, customunit, is_float, lookup) == (
                    spec.unit, spec.customunit if spec.unit == "Custom" else None, spec.float, spec.lookup
                ) or (unit, is_float, lookup) == (spec.unit, spec.float, spec.lookup), (
                    f"{sensor}: {name!r} emitted as {unit}/{customunit}/float={is_float}/{lookup}, "
                    f"catalogued as {spec.unit}/{spec.customunit}/float={spec.float}/{spec.lookup}")


@pytest.mark.after_all
@pytest.mark.parametrize("sensor", registry.sensor_ids())
def test_every_catalogued_channel_is_emitted_by_some_test(sensor):
    if not any(sensor in f for f in COLLECTED_FILES if "/contract/" not in f):
        pytest.skip(f"no test of {sensor} was collected in this run; run the whole suite")
    emitted = EMITTED.get(sensor, {})
    missing = [spec.name for spec in load(sensor)
               if not any(_pattern(spec.name).match(name) for name in emitted)]
    assert not missing, f"{sensor}: catalogued but never emitted by any test: {missing}"
