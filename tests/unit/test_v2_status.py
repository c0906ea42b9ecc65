"""Script v2 ``status`` is judged from the catalogue's limits and lookup states, as PRTG judges legacy JSON."""

from __future__ import annotations

import json

from prtg_ai.catalog import load
from prtg_ai.catalog.lookups import load_lookups
from prtg_ai.prtg.model import SensorResult
from prtg_ai.prtg.render import render
from support import legacy_worst


def result_with(*channels) -> SensorResult:
    r = SensorResult(text="8 GPUs")
    for ch in channels:
        r.add(ch)
    return r


def test_one_degree_from_slowdown_is_an_error_in_v2_and_legacy():
    gpu = load("gpu")
    r = result_with(gpu.make("util_gpu", 97), gpu.make("slowdown_margin", 1))  # limitminerror 3
    legacy = json.loads(render(r, "prtg"))
    v2 = json.loads(render(r, "v2", load_lookups()))
    assert legacy_worst(legacy) == "error"
    assert v2["status"] == "error"
    assert v2["message"].startswith("Slowdown Margin is in error (1): At or near thermal slowdown.")
    assert v2["message"].endswith("8 GPUs.")


def test_a_warning_limit_gives_warning_and_a_lookup_state_counts():
    gpu = load("gpu")
    r = result_with(gpu.make("util_gpu", 10), gpu.make("slowdown_margin", 8))  # below the warning limit 10
    assert json.loads(render(r, "v2", load_lookups()))["status"] == "warning"
    health = load("gpu").make("health", 2)  # prtgai.gpu.health: 2 = Error
    r = result_with(gpu.make("util_gpu", 10), health)
    v2 = json.loads(render(r, "v2", load_lookups()))
    assert v2["status"] == "error" == legacy_worst(json.loads(render(r, "prtg")))
    assert v2["message"].startswith("GPU Health is in error (2")


def test_within_limits_is_ok():
    gpu = load("gpu")
    r = result_with(gpu.make("util_gpu", 10), gpu.make("slowdown_margin", 30), gpu.make("health", 0))
    assert json.loads(render(r, "v2", load_lookups()))["status"] == "ok" == legacy_worst(json.loads(render(r, "prtg")))


def test_without_lookup_definitions_only_limits_count():
    """``prtg/`` reads nothing itself: the caller passes the lookups, or a lookup state cannot count."""
    r = result_with(load("gpu").make("util_gpu", 10), load("gpu").make("health", 2))
    assert json.loads(render(r, "v2"))["status"] == "ok"
    assert json.loads(render(r, "v2", load_lookups()))["status"] == "error"
