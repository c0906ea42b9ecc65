"""The pure maths of gpu_spend: accelerator counts, prices, burn, idleness, CE windows, projection."""

from __future__ import annotations

import json
from datetime import date

import pytest

from prtg_ai.gpu_spend import spend_model as sm

P5 = {"InstanceType": "p5.48xlarge", "GpuInfo": {"Gpus": [
    {"Name": "H100", "Manufacturer": "NVIDIA", "Count": 8, "LogicalGpuCount": 8, "GpuPartitionSize": 1.0}]}}
G6F = {"InstanceType": "g6f.large", "GpuInfo": {"Gpus": [
    {"Name": "L4", "Manufacturer": "NVIDIA", "Count": 0, "LogicalGpuCount": 1, "GpuPartitionSize": 0.125}]}}
GR6F = {"InstanceType": "gr6f.4xlarge", "GpuInfo": {"Gpus": [
    {"Name": "L4", "Count": 0, "LogicalGpuCount": 1, "GpuPartitionSize": 0.5}]}}
INF2 = {"InstanceType": "inf2.48xlarge",
        "NeuronInfo": {"NeuronDevices": [{"Count": 12, "Name": "Inferentia2"}]},
        "InferenceAcceleratorInfo": {"Accelerators": [{"Count": 12, "Name": "Inferentia2"}]}}
DL2Q = {"InstanceType": "dl2q.24xlarge",
        "InferenceAcceleratorInfo": {"Accelerators": [{"Count": 8, "Name": "Qualcomm AI100"}]}}
M5 = {"InstanceType": "m5.large"}


@pytest.mark.parametrize("raw, gpus, accelerators", [
    (P5, 8.0, 0), (G6F, 0.125, 0), (GR6F, 0.5, 0), (INF2, 0.0, 12), (DL2Q, 0.0, 8), (M5, 0.0, 0),
])
def test_type_info_counts_gpus_fractions_and_accelerators_once(raw, gpus, accelerators):
    info = sm.type_info(raw)
    assert info.gpus == gpus
    assert info.accelerators == accelerators
    assert info.accelerated == (gpus > 0 or accelerators > 0)
    assert sm.TypeInfo.from_json(json.loads(json.dumps(info.to_json()))) == info


def test_gpu_type_by_info_or_by_family():
    assert sm.is_gpu_type("p5.48xlarge", None)
    assert sm.is_gpu_type("x9gpu.large", sm.TypeInfo(1.0, 0))  # a family the list does not know yet
    assert not sm.is_gpu_type("m5.large", sm.TypeInfo(0.0, 0))
    assert not sm.is_gpu_type("p5.48xlarge", None, families=["g5"])
    assert sm.family_of("p6-b200.48xlarge") == "p6-b200"


def _sku(price, unit="Hrs", operation="RunInstances", market=None):
    attrs = {"operation": operation}
    if market:
        attrs["marketoption"] = market
    return {"product": {"attributes": attrs}, "terms": {"OnDemand": {"T": {"priceDimensions": {
        "R": {"unit": unit, "pricePerUnit": {"USD": str(price)}}}}}}}


def test_on_demand_price_prefers_the_plain_sku_and_reads_strings_or_dicts():
    entries = [json.dumps(_sku(90.0, market="CapacityBlock")), json.dumps(_sku(55.04, market="OnDemand"))]
    assert sm.on_demand_price(entries) == 55.04
    assert sm.on_demand_price([_sku(1.5)]) == 1.5                 # a dict, as botocore may decode it
    assert sm.on_demand_price([_sku(3.0, operation="RunInstances:0002")]) == 3.0  # only a non-plain SKU
    assert sm.on_demand_price([_sku(0.0), _sku(2.0, unit="Quantity")]) is None
    assert sm.on_demand_price(["{broken", 7]) is None


def test_spot_price_uses_the_instances_az_else_the_highest():
    prices = {"us-east-1a": 1.0, "us-east-1b": 1.4}
    assert sm.spot_price_for(prices, "us-east-1a") == 1.0
    assert sm.spot_price_for(prices, "us-east-1f") == 1.4
    assert sm.spot_price_for({}, "us-east-1a") is None


def test_summarise_and_merge_add_up():
    rows = [
        {"id": "i-1", "type": "p5.48xlarge", "spot": False, "gpus": 8, "accelerators": 0, "price": 55.0, "state": sm.BUSY},
        {"id": "i-2", "type": "p4d.24xlarge", "spot": False, "gpus": 8, "accelerators": 0, "price": 22.0, "state": sm.IDLE},
        {"id": "i-3", "type": "g6f.large", "spot": True, "gpus": 0.125, "accelerators": 0, "price": None, "state": sm.IDLE},
        {"id": "i-4", "type": "inf2.48xlarge", "spot": False, "gpus": 0, "accelerators": 12, "price": 13.0,
         "state": sm.UNKNOWN},
    ]
    burn = sm.summarise(rows)
    assert (burn.instances, burn.spot, burn.gpus, burn.accelerators) == (4, 1, 16.125, 12)
    assert burn.burn == 90.0 and burn.idle == 2 and burn.idle_burn == 22.0
    assert burn.unpriced == 1 and burn.unpriced_types == ["g6f.large"] and burn.unknown == 1
    total = sm.merge_burns([burn, sm.summarise(rows[:1])])
    assert total.instances == 5 and total.burn == 145.0 and total.gpus == 24.125
    assert sm.Burn.from_json(json.loads(json.dumps(total.to_json()))) == total


@pytest.mark.parametrize("gpu, cpu, expected", [
    ([2.0, 4.9], [90.0], (sm.IDLE, "gpu")),      # GPU data wins over a busy CPU
    ([2.0, 5.0], [1.0], (sm.BUSY, "gpu")),       # the threshold itself is not idle
    ([], [3.0, 9.9], (sm.IDLE, "cpu")),
    (None, [3.0, 10.0], (sm.BUSY, "cpu")),
    ([], [], (sm.UNKNOWN, "none")),              # no data is never idle
    ([float("nan")], None, (sm.UNKNOWN, "none")),
])
def test_classify_idle(gpu, cpu, expected):
    assert sm.classify_idle(gpu, cpu, 5.0, 10.0) == expected


def _days(start: date, end: date):
    return [date.fromordinal(o).isoformat() for o in range(start.toordinal(), end.toordinal() + 1)]


def test_query_window_buys_the_month_once_then_only_the_last_two_days():
    today = date(2026, 9, 21)
    assert sm.query_window(today, []) == (date(2026, 9, 1), date(2026, 9, 22))
    cached = _days(date(2026, 9, 1), date(2026, 9, 21))
    assert sm.query_window(today, cached) == (date(2026, 9, 19), date(2026, 9, 22))
    # A gap (the sensor was off) is filled from the first missing day.
    gap = [d for d in cached if d != "2026-09-10"]
    assert sm.query_window(today, gap) == (date(2026, 9, 10), date(2026, 9, 22))


def test_query_window_on_the_first_reaches_into_last_month():
    assert sm.query_window(date(2026, 10, 1), []) == (date(2026, 9, 29), date(2026, 10, 2))
    assert sm.query_window(date(2026, 10, 2), []) == (date(2026, 9, 30), date(2026, 10, 3))


def test_parse_daily_reads_string_amounts_and_refuses_other_currencies():
    results = [
        {"TimePeriod": {"Start": "2026-09-20", "End": "2026-09-21"},
         "Total": {"UnblendedCost": {"Amount": "150.0101516483", "Unit": "USD"}}, "Estimated": True},
        {"TimePeriod": {"Start": "2026-09-19", "End": "2026-09-20"}, "Total": {},
         "Groups": [{"Metrics": {"UnblendedCost": {"Amount": "1.5", "Unit": "USD"}}},
                    {"Metrics": {"UnblendedCost": {"Amount": "2.5", "Unit": "USD"}}}]},
    ]
    daily = sm.parse_daily(results)
    assert daily == {"2026-09-20": {"usd": 150.010152, "estimated": True},
                     "2026-09-19": {"usd": 4.0, "estimated": False}}
    with pytest.raises(ValueError, match="EUR"):
        sm.parse_daily([{"TimePeriod": {"Start": "2026-09-20"},
                         "Total": {"UnblendedCost": {"Amount": "1", "Unit": "EUR"}}}])


def test_merge_daily_replaces_requeried_days_and_stays_bounded():
    today = date(2026, 9, 21)
    old = {d: {"usd": 1.0, "estimated": False} for d in _days(date(2026, 7, 1), today)}
    merged = sm.merge_daily(old, {"2026-09-20": {"usd": 9.0, "estimated": True}}, today)
    assert merged["2026-09-20"]["usd"] == 9.0
    assert len(merged) == sm.KEEP_DAYS + 1
    assert min(merged) == "2026-08-12"


def _month(amount_by_day: dict[int, float], month=9):
    return {f"2026-{month:02d}-{d:02d}": {"usd": a, "estimated": False} for d, a in amount_by_day.items()}


def test_month_to_date_and_yesterday():
    daily = {**_month({30: 999.0}, month=8), **_month({1: 10.0, 2: 20.0, 3: 5.0})}
    today = date(2026, 9, 3)
    assert sm.month_to_date(daily, today) == 35.0
    assert sm.month_to_date(daily, today, include_today=False) == 30.0
    assert sm.day_amount(daily, date(2026, 9, 2)) == 20.0
    assert sm.day_amount(daily, date(2026, 9, 9)) is None


def test_projection_prefers_the_forecast_then_the_daily_average_then_the_burn_rate():
    today = date(2026, 9, 21)
    daily = _month({d: 100.0 for d in range(1, 21)} | {21: 40.0})
    forecast = {"day": "2026-09-21", "usd": 1000.0}
    assert sm.project_month_end(daily, today, forecast, 50.0, 10.0) == (3000.0, sm.PROJECTION_FORECAST)
    # A forecast made two days ago still counts: actual before that day + its forecast.
    old = {"day": "2026-09-19", "usd": 1300.0}
    assert sm.project_month_end(daily, today, old, None, 10.0) == (1800.0 + 1300.0, sm.PROJECTION_FORECAST)
    # Last month's forecast or none: average of the last 7 complete days x 10 days left.
    stale = {"day": "2026-08-30", "usd": 5.0}
    assert sm.project_month_end(daily, today, stale, None, 10.0) == (2000.0 + 1000.0, sm.PROJECTION_DAILY)
    assert sm.project_month_end(daily, today, {"day": "2026-09-21", "usd": None}, None, 10.0)[1] == \
        sm.PROJECTION_DAILY
    # The 1st without any complete day: month to date + burn for the hours left.
    first = date(2026, 9, 1)
    assert sm.project_month_end(_month({1: 12.0}), first, None, 2.0, 6.0) == (12.0 + 2.0 * (720 - 6),
                                                                              sm.PROJECTION_BURN)
    assert sm.project_month_end({}, first, None, None, 6.0) == (None, 0)


def test_month_boundaries():
    assert sm.next_month_start(date(2026, 12, 31)) == date(2027, 1, 1)
    assert sm.next_month_start(date(2028, 2, 10)) == date(2028, 3, 1)
    assert sm.utc_day(1_790_000_000.0) == date(2026, 9, 21)


def test_budgets_are_compacted_and_picked():
    raw = [
        {"BudgetName": "all", "BudgetType": "COST", "TimeUnit": "MONTHLY",
         "BudgetLimit": {"Amount": "90000", "Unit": "USD"}},
        {"BudgetName": "GPU training", "BudgetType": "COST", "TimeUnit": "MONTHLY",
         "BudgetLimit": {"Amount": "5000.0", "Unit": "USD"},
         "CalculatedSpend": {"ActualSpend": {"Amount": "2500", "Unit": "USD"},
                             "ForecastedSpend": {"Amount": "6000", "Unit": "USD"}}},
        {"BudgetName": "gpu-yearly", "BudgetType": "COST", "TimeUnit": "ANNUALLY",
         "BudgetLimit": {"Amount": "1", "Unit": "USD"}},
        {"BudgetName": "usage", "BudgetType": "USAGE", "TimeUnit": "MONTHLY",
         "BudgetLimit": {"Amount": "1", "Unit": "Hrs"}},
    ]
    budgets = sm.compact_budgets(raw)
    assert [b["name"] for b in budgets] == ["all", "GPU training"]
    chosen = sm.pick_budget(budgets, None)
    assert chosen["name"] == "GPU training"
    assert sm.percent(chosen["actual"], chosen["limit"]) == 50.0
    assert sm.percent(chosen["forecast"], chosen["limit"]) == 120.0
    assert sm.pick_budget(budgets, "all")["limit"] == 90000.0
    assert sm.pick_budget(budgets, "missing") is None
    assert sm.percent(1.0, 0.0) is None and sm.percent(None, 10.0) is None
