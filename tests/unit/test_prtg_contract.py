"""The PRTG wire contract: renderers produce what PRTG documents, the validator enforces its rules."""

from __future__ import annotations

import json

import pytest

from prtg_ai.prtg.model import Channel, SensorResult
from prtg_ai.prtg.render import render, to_legacy, to_v2
from prtg_ai.prtg.units import DECIMAL_BITS, human_size
from prtg_ai.prtg.validate import validate


def legacy(*channels, text="ok"):
    return {"prtg": {"text": text, "result": list(channels)}}


def test_every_channel_key_renders():
    ch = Channel(name="Temp", value=61.5, unit="Custom", customunit="°C", speedsize="Mega", volumesize="Giga",
                 speedtime="Minute", mode="Absolute", float=True, decimalmode="All", warning=True,
                 showchart=False, showtable=True, limitmaxerror=90, limitmaxwarning=80, limitminwarning=5,
                 limitminerror=1, limiterrormsg="hot", limitwarningmsg="warm", limitmode=True,
                 notifychanged=True, v2_id=11)
    doc = to_legacy(SensorResult(channels=[ch], text="hi"))
    out = doc["prtg"]["result"][0]
    assert out == {"channel": "Temp", "value": 61.5, "unit": "Custom", "customunit": "°C", "speedsize": "Mega",
                   "volumesize": "Giga", "speedtime": "Minute", "mode": "Absolute", "decimalmode": "All",
                   "float": 1, "warning": 1, "showchart": 0, "showtable": 1, "limitmaxerror": 90,
                   "limitmaxwarning": 80, "limitminwarning": 5, "limitminerror": 1, "limiterrormsg": "hot",
                   "limitwarningmsg": "warm", "limitmode": 1, "notifychanged": 1}
    assert validate(doc) == []


def test_lookup_channel_renders_as_integer_custom():
    ch = Channel(name="Trend", value=3, valuelookup="prtgai.checkpoint.filltrend", v2_id=17)
    assert to_legacy(SensorResult(channels=[ch]))["prtg"]["result"][0] == {
        "channel": "Trend", "value": 3, "unit": "Custom", "valuelookup": "prtgai.checkpoint.filltrend"}
    assert to_v2(SensorResult(channels=[ch]))["channels"][0] == {
        "id": 17, "name": "Trend", "type": "lookup", "value": 3, "lookup_name": "prtgai.checkpoint.filltrend"}


def test_error_results_both_formats():
    r = SensorResult.failure("NVML not found. Is the driver installed?")
    assert to_legacy(r) == {"prtg": {"error": 1, "text": "NVML not found. Is the driver installed?"}}
    assert to_v2(r) == {"version": 2, "status": "error", "message": "NVML not found. Is the driver installed?"}
    assert validate(to_legacy(r)) == [] and validate(to_v2(r)) == []


def test_text_is_cut_to_prtgs_2000_characters():
    r = SensorResult(channels=[Channel("A", 1, unit="Count", v2_id=10)], text="x" * 5000)
    assert len(to_legacy(r)["prtg"]["text"]) == 2000
    assert len(to_v2(r)["message"]) == 2000


def test_values_are_dot_decimal_json_numbers_and_integers_stay_integers():
    r = SensorResult(channels=[Channel("F", 0.016, unit="Percent", float=True, v2_id=10),
                               Channel("I", 7.0, unit="Count", v2_id=11)])
    text = render(r)
    assert '"value":0.016' in text and '"value":7,' in text and "0,016" not in text
    assert validate(text) == []


def test_non_finite_values_never_leave():
    with pytest.raises(ValueError):
        render(SensorResult(channels=[Channel("F", float("nan"), float=True, v2_id=10)]))


def test_result_level_warning_marks_a_channel():
    r = SensorResult(channels=[Channel("A", 1, unit="Count", v2_id=10)], warning=True)
    assert to_legacy(r)["prtg"]["result"][0]["warning"] == 1
    assert to_v2(r)["status"] == "warning"


@pytest.mark.parametrize("doc, problem", [
    (legacy({"channel": "A", "value": 1}, {"channel": "A", "value": 2}), "duplicate channel name"),
    (legacy(*[{"channel": f"C{i}", "value": i} for i in range(51)]), "at most 50"),
    (legacy({"channel": "A", "value": 1, "unit": "MegaByte"}), "unit 'MegaByte' is not one of PRTG's values"),
    (legacy({"channel": "A", "value": 0.34}), "needs float: 1"),
    (legacy({"channel": "A", "value": "0,016", "float": 1}), "is not a JSON number"),
    (legacy({"channel": "A", "value": 1}, text="x" * 2001), "PRTG keeps 2000"),
    (legacy({"channel": "A", "value": 1.5, "float": 1, "valuelookup": "x.y"}), "lookup channels need integer values"),
    (legacy({"channel": "A", "value": 1, "unit": "Count", "valuelookup": "x.y"}), "lookup channels need unit Custom"),
    (legacy({"channel": "A", "value": 1, "limitmode": 2}), "limitmode must be 0 or 1"),
    (legacy({"channel": "A", "value": 1, "speedsize": "Huge"}), "speedsize 'Huge'"),
    (legacy({"channel": "A", "value": 1, "colour": "red"}), "unknown keys ['colour']"),
    (legacy({"channel": "A", "value": 2 ** 63}), "2^62"),
    (legacy({"channel": "A"}), "'value' missing"),
    (legacy({"channel": " ", "value": 1}), "channel #0: 'channel' name missing"),
    (legacy({"channel": "A", "value": 1}, 7), "channel #1 must be an object"),
    ({"version": 2, "status": "ok", "message": "", "channels": [
        {"id": 10, "name": "A", "type": "integer", "value": 1},
        {"id": 11, "name": "A", "type": "integer", "value": 1}]}, "channel 'A': duplicate channel name"),
    ({"version": 2, "status": "ok", "message": "", "channels": [
        {"id": 10, "type": "integer", "value": 1}]}, "channel #0: 'name' missing"),
    (legacy(), "non-empty list"),
    ({"prtg": {"error": 1}}, "needs a text"),
    ({"version": 2, "status": "ok", "message": "", "channels": [
        {"id": 9, "name": "A", "type": "integer", "value": 1}]}, "must be an integer in 10.."),
    ({"version": 2, "status": "ok", "message": "", "channels": [
        {"id": 10, "name": "A", "type": "integer", "value": 1},
        {"id": 10, "name": "B", "type": "integer", "value": 1}]}, "duplicate id 10"),
    ({"version": 2, "status": "ok", "message": "", "channels": [
        {"id": 10, "name": "A", "type": "integer", "value": 1.5}]}, "needs float: 1"),
    ({"version": 2, "status": "fine", "message": "", "channels": []}, "status 'fine'"),
    ({"hello": 1}, "neither a legacy result"),
    ("{not json", "not valid JSON"),
])
def test_validator_rejects_what_prtg_rejects(doc, problem):
    problems = validate(doc if isinstance(doc, str) else json.dumps(doc))
    assert any(problem in p for p in problems), problems


def test_validator_accepts_a_paessler_style_document():
    doc = legacy({"channel": "GPU0 Temperature", "value": 61, "unit": "Temperature"},
                 {"channel": "GPU0 Utilization", "value": 87.5, "float": 1, "unit": "Percent",
                  "limitmode": 1, "limitmaxwarning": 90, "limitmaxerror": 97})
    assert validate(doc) == []


def test_limit_state_as_prtg_judges_it():
    ch = Channel("Used", 96.0, unit="Percent", float=True, limitmaxwarning=95, limitmaxerror=97, limitmode=True)
    assert ch.limit_state() == "warning"
    ch.value = 98
    assert ch.limit_state() == "error"
    ch.limitmode = False
    assert ch.limit_state() == "ok"


@pytest.mark.parametrize("args, text", [
    ((512,), "512 B"),                                       # the first unit is whole
    ((1536,), "1.5 KiB"),
    ((24 * 2 ** 20,), "24.0 MiB"),
    ((-3 * 2 ** 30,), "-3.0 GiB"),                           # a shrink reads as one
    ((2 ** 60,), "1024.0 PiB"),                              # the last unit takes what is left
    ((1536, DECIMAL_BITS[:1] + ("kbit",), 1000.0, "/s"), "1.5 kbit/s"),
    ((107e9, DECIMAL_BITS, 1000.0, "/s"), "107.0 Gbit/s"),
])
def test_human_size(args, text):
    assert human_size(*args) == text
