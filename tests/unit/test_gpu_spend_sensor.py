"""gpu_spend answered from its caches, with boto3 made unimportable: no AWS, no network.

The caches are written through the same ``SharedCache`` files the sensor reads, named by
the sensor itself, so these tests exercise the fast path a 60 s PRTG scan takes.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone

import pytest

from support import channels

from prtg_ai.core.params import resolve
from prtg_ai.gpu_spend.gpu_spend import GpuSpendSensor

NOW = datetime(2026, 9, 21, 10, 0, tzinfo=timezone.utc).timestamp()
ENV = {"AWS_ACCESS_KEY_ID": "AKIAUNITTEST", "AWS_SECRET_ACCESS_KEY": "unit-secret-value",
       "AWS_DEFAULT_REGION": "us-east-1"}
BURN = {"instances": 3, "spot": 1, "gpus": 16.125, "accelerators": 12, "burn": 90.5, "idle": 1,
        "idle_burn": 22.0, "unpriced": 0, "unpriced_types": [], "idle_ids": ["i-2"], "unknown": 0}


@pytest.fixture
def no_boto3(monkeypatch):
    """Any attempt to import boto3/botocore fails loudly (a None entry makes import raise)."""
    for name in ("boto3", "botocore", "botocore.config", "botocore.session", "botocore.exceptions"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture
def seeded(make_ctx, clock):
    """Write fresh identity, live and cost caches as the sensor would name them; return a ctx builder."""
    clock.now = NOW

    def _seed(argv=(), live=None, cost=None, live_age=60.0, cost_age=3600.0):
        ctx = make_ctx(env=dict(ENV))
        sensor = GpuSpendSensor(ctx, resolve(GpuSpendSensor.params, list(argv), ctx.env))
        identity, live_cache = sensor.caches()
        with identity.session() as st:
            st.data.update({"account": "123456789012", "fetched_at": NOW - 10})
        with live_cache.session() as st:
            st.data.update(live if live is not None else
                           {"fetched_at": NOW - live_age, "regions": ["us-east-1"], "burn": BURN, "notes": []})
        with sensor.cost_cache_for("123456789012").session() as st:
            st.data.update(cost if cost is not None else {
                "fetched_at": NOW - cost_age,
                "daily": {f"2026-09-{d:02d}": {"usd": 100.0, "estimated": False} for d in range(1, 21)}
                | {"2026-09-21": {"usd": 40.0, "estimated": True}},
                "forecast": {"day": "2026-09-21", "usd": 1000.0},
                "budgets": [{"name": "gpu-monthly", "limit": 5000.0, "actual": 2040.0, "forecast": 3000.0}],
                "requests": {"day": "2026-09-21", "count": 2, "total": 9},
            })
        return ctx

    return _seed


def test_fresh_caches_answer_every_channel_without_boto3(seeded, sensor_run, no_boto3):
    ctx = seeded()
    result = sensor_run("gpu_spend", [], ctx)
    assert not result.error, result.message()
    ch = channels(result)
    assert ch["Running GPU Instances"] == 3 and ch["Spot GPU Instances"] == 1
    assert ch["GPUs"] == 16.125 and ch["AI Accelerators"] == 12
    assert ch["Burn Rate"] == 90.5 and ch["Idle Burn Rate"] == 22.0 and ch["Idle GPU Instances"] == 1
    assert ch["Unpriced GPU Instances"] == 0
    assert ch["Instance Data Age"] == 60
    assert ch["GPU Spend Month To Date"] == 2040.0
    assert ch["GPU Spend Yesterday"] == 100.0
    assert ch["GPU Spend Projected Month End"] == 3000.0 and ch["Projection Source"] == 1
    assert ch["Budget Used"] == pytest.approx(40.8) and ch["Budget Projected Use"] == 60.0
    assert ch["Cost Data Age"] == 1.0
    assert ch["Cost Explorer Requests Today"] == 2
    assert result.channel("Cost Data Age").limitmaxwarning == 12  # 2 x the 6 h refresh


def test_refresh_interval_moves_the_data_age_and_request_limits(seeded, sensor_run, no_boto3):
    ctx = seeded(["--ce-refresh-hours", "12"], cost_age=11 * 3600.0)
    # Twice the refresh interval warns; 48 h (or four intervals) is an error; two refreshes
    # a day plus the forecast, doubled, plus two, is the request warning.
    result = sensor_run("gpu_spend", ["--ce-refresh-hours", "12"], ctx, limits={
        "cost_data_age": {"limitmaxwarning": 24, "limitmaxerror": 48},
        "ce_requests_today": {"limitmaxwarning": 2 * (2 + 1) + 2}})
    assert not result.error, result.message()
    assert result.channel("Cost Data Age").value == 11.0


def test_explicit_budget_wins_over_the_aws_budget(seeded, sensor_run, no_boto3):
    ctx = seeded(["--budget", "4080"])
    ch = channels(sensor_run("gpu_spend", ["--budget", "4080"], ctx))
    assert ch["Budget Used"] == 50.0
    assert ch["Budget Projected Use"] == pytest.approx(100 * 3000 / 4080, abs=0.01)


def test_a_named_budget_that_does_not_exist_is_a_note_not_an_error(seeded, sensor_run, no_boto3):
    ctx = seeded(["--budget-name", "ml-team"])
    result = sensor_run("gpu_spend", ["--budget-name", "ml-team"], ctx)
    assert not result.error
    assert "Budget Used" not in channels(result)
    assert "AWS Budget 'ml-team' not found (monthly cost budgets: gpu-monthly)" in result.message()


def test_a_recorded_denial_in_back_off_is_an_error_without_calling_aws(seeded, sensor_run, no_boto3):
    text = ("AWS denied Cost Explorer GetCostAndUsage: the credentials lack IAM permission ce:GetCostAndUsage "
            "(AccessDeniedException). Add ce:GetCostAndUsage to the probe's IAM policy.")
    ctx = seeded(cost={"fetched_at": NOW - 3600, "daily": {}, "requests": {"day": "2026-09-21", "count": 1},
                       "failure": {"at": NOW - 60, "count": 1, "kind": "denied", "text": text}})
    result = sensor_run("gpu_spend", [], ctx)
    assert result.error
    assert "lack IAM permission ce:GetCostAndUsage" in result.message()


def test_a_recorded_throttle_serves_the_cached_spend_with_its_age(seeded, sensor_run, no_boto3):
    cost = {"fetched_at": NOW - 7 * 3600, "daily": {"2026-09-20": {"usd": 150.0, "estimated": True}},
            "requests": {"day": "2026-09-21", "count": 3},
            "failure": {"at": NOW - 120, "count": 1, "kind": "throttled",
                        "text": "AWS throttled Cost Explorer GetCostAndUsage (LimitExceededException)."}}
    ctx = seeded(cost=cost)
    result = sensor_run("gpu_spend", [], ctx)
    assert not result.error
    assert channels(result)["Cost Data Age"] == 7.0
    assert channels(result)["GPU Spend Yesterday"] == 150.0
    assert "Serving cost explorer data fetched 7.0 h ago; next attempt in 13m" in result.message()


def test_no_live_data_and_a_recorded_outage_is_a_warning_with_the_cost_channels(seeded, sensor_run, no_boto3):
    live = {"failure": {"at": NOW - 30, "count": 1, "kind": "unreachable",
                        "text": "AWS endpoint https://ec2.us-east-1.amazonaws.com for EC2 DescribeInstances "
                                "could not be reached."}}
    ctx = seeded(live=live)
    result = sensor_run("gpu_spend", [], ctx)
    assert not result.error and result.warning
    assert "Instance data unavailable: AWS endpoint" in result.message()
    assert "Burn Rate" not in channels(result)
    # No burn rate: the projection still comes from the forecast.
    assert channels(result)["Projection Source"] == 1


@pytest.mark.parametrize("argv, param", [
    (["--region", "us-east-1,../../etc"], "--region"),
    (["--region", "US_EAST_1"], "--region"),
    (["--family", "p5;rm"], "--family"),
    (["--ce-refresh-hours", "0.5"], "--ce-refresh-hours"),
    (["--idle-gpu-percent", "101"], "--idle-gpu-percent"),
    (["--idle-window", "1m"], "--idle-window"),
])
def test_bad_parameters_name_the_parameter_before_any_aws_access(argv, param, sensor_run, make_ctx, no_boto3):
    result = sensor_run("gpu_spend", argv, make_ctx(env=dict(ENV)))
    assert result.error
    assert param in result.message()


def test_the_primary_channel_leads_from_the_first_scan(seeded, sensor_run, clock, no_boto3):
    """PRTG pins the first channel of scan 1 as primary: month-to-date spend, the catalogue's first row."""
    ctx = seeded()
    first = sensor_run("gpu_spend", [], ctx)
    clock.advance(60)
    second = sensor_run("gpu_spend", [], ctx)
    assert first.channels[0].name == second.channels[0].name == "GPU Spend Month To Date"
