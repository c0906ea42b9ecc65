"""The catalogue and the code stay in step (DataDog's metadata.csv check, both directions).

Code -> catalogue: every checked result, on the spot (``support.check_channels``, tested
here). Catalogue -> code: every row is emitted by some test (at the end of a whole run).
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from prtg_ai.catalog import CATALOG_DIR, COLUMNS, catalogued_sensors, csv_fields, load
from prtg_ai.catalog.lookups import load_lookups
from prtg_ai.core import registry
from prtg_ai.prtg.units import SIZES, SPEED_TIMES, UNITS, V2_MIN_ID
from support import EMITTED, catalogue_coverage, check_channels, whole_suite_collected


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


# Every result a test checks is compared with the catalogue on the spot (support.check_channels:
# unit, custom unit, sizes, float, lookup, limits). What is left for the end of a session is coverage.
@pytest.mark.after_all
@pytest.mark.parametrize("sensor", registry.sensor_ids())
def test_every_catalogued_channel_is_emitted_by_some_test(sensor):
    if not whole_suite_collected():
        pytest.skip("partial run: coverage is enforced when the whole suite runs; "
                    "this session's is in the 'catalogue coverage' summary")
    seen, missing = (catalogue_coverage() or {}).get(sensor, (0, [spec.key for spec in load(sensor)]))
    assert not missing, f"{sensor}: catalogued but never emitted by any test: {missing}"


@pytest.fixture
def unrecorded():
    """The checks below feed made-up channels: keep them out of the session's coverage tally."""
    saved = {sensor: Counter(rows) for sensor, rows in EMITTED.items()}
    yield
    EMITTED.clear()
    EMITTED.update(saved)


def _doc(*channels) -> dict:
    from prtg_ai.prtg.model import SensorResult
    from prtg_ai.prtg.render import to_legacy

    return to_legacy(SensorResult(channels=list(channels)))


@pytest.mark.parametrize("change, words", [
    ({"unit": "Count"}, "'unit': \"emitted 'Count', catalogued 'Custom'\""),
    ({"customunit": "MiB/h"}, "'customunit': \"emitted 'MiB/h', catalogued 'GiB/h'\""),
    ({"float": False}, "'float': 'emitted False, catalogued True'"),
    ({"limitmaxwarning": 50}, "'limitmaxwarning': 'emitted 50, catalogued None'"),
])
def test_the_result_check_refuses_a_channel_that_differs_from_its_row(change, words, unrecorded):
    ch = load("checkpoint_volume").make("growth_rate", 1.5)
    for key, value in change.items():
        setattr(ch, key, value)
    with pytest.raises(AssertionError) as err:
        check_channels("checkpoint_volume", _doc(ch))
    assert "'Growth Rate' (row growth_rate) differs" in str(err.value) and words in str(err.value)


def test_the_result_check_takes_limits_only_where_the_test_declares_them(unrecorded):
    cat = load("checkpoint_volume")
    stalled = cat.make("newest_age", 12.0, limitmaxwarning=30.0)  # what --stall-after 30m sets
    with pytest.raises(AssertionError, match="limitmaxwarning"):
        check_channels("checkpoint_volume", _doc(stalled))
    check_channels("checkpoint_volume", _doc(stalled), limits={"newest_age": {"limitmaxwarning": 30.0}})
    with pytest.raises(AssertionError, match="not in the catalogue"):
        check_channels("checkpoint_volume", _doc(stalled), limits={"Newest Checkpoint Age": {"limitmaxwarning": 30}})


def test_the_result_check_refuses_uncatalogued_channels_and_undefined_lookup_values(unrecorded):
    from prtg_ai.prtg.model import Channel

    with pytest.raises(AssertionError, match="'Spare' is emitted but not catalogued"):
        check_channels("checkpoint_volume", _doc(Channel("Spare", 1)))
    with pytest.raises(AssertionError, match="which lookup prtgai.checkpoint.filltrend does not define"):
        check_channels("checkpoint_volume", _doc(load("checkpoint_volume").make("fill_trend", 9)))


QUOTING_CASES = ['a,b,c', 'a,"b,c",d', '"x ""y"" z",1', '"",""', 'a,,b', '"a""",b', ',', 'a,', '""""', 'a,"b"',
                 '"a,""b"",c",d,"e"', 'plain text with spaces,"quoted, with comma"']


@pytest.mark.parametrize("line", QUOTING_CASES)
def test_the_catalogue_line_reader_splits_like_the_csv_module(line):
    assert csv_fields(line) == next(csv.reader([line]))


def test_every_catalogue_file_reads_as_the_csv_module_reads_it():
    files = sorted(Path(CATALOG_DIR).glob("*.csv"))
    assert len(files) >= 10
    for path in files:
        with open(path, encoding="utf-8", newline="") as fh:
            expected = [row for row in csv.reader(fh) if row]
        lines = [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip("\r")]
        assert [csv_fields(line.rstrip("\r")) for line in lines] == expected, path.name
