"""Pure maths of the ``gpu_spend`` sensor: GPU families, accelerator counts, burn, idleness, projection.

Nothing here touches the network, the disk or the clock: every function takes the
data the backend read (plain dicts and numbers) and returns plain values, so the
arithmetic is tested without AWS.

Facts relied on (``reference/infra-anchors.md`` §A):

* Cost Explorer amounts are strings; ``TimePeriod.End`` is exclusive; the current
  day comes back ``Estimated`` and recent days keep changing for a day or more.
* ``DescribeInstanceTypes``: NVIDIA/AMD GPUs are in ``GpuInfo``; fractional types
  (g6f, gr6f) report ``Count: 0`` with ``GpuPartitionSize`` 0.125 or 0.5; Trainium
  and Inferentia are in ``NeuronInfo``; dl2q's Qualcomm cards only in
  ``InferenceAcceleratorInfo``.
* Pricing ``PriceList`` entries are JSON strings (or, defensively, dicts).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping

from prtg_ai.gpu_spend.dates import date, datetime, timedelta, timezone

# No dataclasses, calendar or typing at run time: a script sensor pays every import on every scan.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# EC2 instance families with GPUs or AI accelerators (Cost Explorer's INSTANCE_TYPE_FAMILY
# values). The live view does not rely on this list alone: any running type whose
# DescribeInstanceTypes entry has GPUs or accelerators counts too.
GPU_FAMILIES: tuple[str, ...] = (
    # NVIDIA training / HPC
    "p3", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en", "p6-b200", "p6-b300", "p6e-gb200",
    # NVIDIA / AMD graphics and inference
    "g4dn", "g4ad", "g5", "g5g", "g6", "g6e", "g6f", "gr6", "gr6f", "g7", "g7e",
    # AWS Trainium / Inferentia, Habana, Qualcomm
    "trn1", "trn1n", "trn2", "trn2u", "inf1", "inf2", "dl1", "dl2q",
)
COST_METRIC = "UnblendedCost"          # GetCostAndUsage spelling
FORECAST_METRIC = "UNBLENDED_COST"     # GetCostForecast spelling of the same metric
REQUERY_DAYS = 2                        # late corrections land on the last two days
KEEP_DAYS = 40                          # daily amounts older than this are dropped from the cache
AVERAGE_DAYS = 7                        # complete days behind the sensor's own projection

# Projection Source lookup values (prtgai.gpuspend.projection)
PROJECTION_FORECAST, PROJECTION_DAILY, PROJECTION_BURN = 1, 2, 3

IDLE, BUSY, UNKNOWN = "idle", "busy", "unknown"


# -- instance types ---------------------------------------------------------
def family_of(instance_type: str) -> str:
    """``p4d.24xlarge`` -> ``p4d`` (Cost Explorer's INSTANCE_TYPE_FAMILY)."""
    return instance_type.split(".", 1)[0]


class TypeInfo:
    """What a running instance of one type contributes: GPUs (may be fractional) and accelerators."""

    __slots__ = ("gpus", "accelerators", "gpu_name")

    def __init__(self, gpus: float, accelerators: int, gpu_name: str = ""):
        self.gpus = float(gpus)
        self.accelerators = int(accelerators)
        self.gpu_name = gpu_name

    def __eq__(self, other) -> bool:
        return isinstance(other, TypeInfo) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"TypeInfo(gpus={self.gpus!r}, accelerators={self.accelerators!r}, gpu_name={self.gpu_name!r})"

    @property
    def accelerated(self) -> bool:
        return self.gpus > 0 or self.accelerators > 0

    def to_json(self) -> dict:
        return {"gpus": self.gpus, "accelerators": self.accelerators, "name": self.gpu_name}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "TypeInfo":
        return cls(float(doc.get("gpus", 0.0)), int(doc.get("accelerators", 0)), str(doc.get("name", "")))


def type_info(raw: Mapping[str, Any]) -> TypeInfo:
    """Turn one ``DescribeInstanceTypes`` entry into GPU and accelerator counts.

    Args:
        raw: an ``InstanceTypes[]`` element (``GpuInfo``, ``NeuronInfo``,
            ``InferenceAcceleratorInfo`` may each be absent).

    Returns:
        GPUs as a float (a g6f.large holds 1/8 of an L4: ``Count`` is 0 there, so the
        share comes from ``LogicalGpuCount`` x ``GpuPartitionSize``) and the number of
        non-GPU accelerators (Neuron devices, else inference accelerators).
    """
    gpus = 0.0
    names = []
    for gpu in (raw.get("GpuInfo") or {}).get("Gpus") or []:
        count = float(gpu.get("Count") or 0)
        if count <= 0:
            # Fractional GPU: one logical GPU that is a partition of a physical one.
            count = float(gpu.get("LogicalGpuCount") or 0) * float(gpu.get("GpuPartitionSize") or 0)
        gpus += count
        if gpu.get("Name"):
            names.append(str(gpu["Name"]))
    neuron = sum(int(d.get("Count") or 0) for d in (raw.get("NeuronInfo") or {}).get("NeuronDevices") or [])
    # inf1/inf2 list the same chips in both places; count them once.
    inference = sum(int(a.get("Count") or 0)
                    for a in (raw.get("InferenceAcceleratorInfo") or {}).get("Accelerators") or [])
    return TypeInfo(round(gpus, 6), neuron or inference, "/".join(sorted(set(names))))


def is_gpu_type(instance_type: str, info: TypeInfo | None, families: Iterable[str] = GPU_FAMILIES) -> bool:
    """A type counts when AWS says it has GPUs/accelerators, or its family is a GPU family."""
    return (info is not None and info.accelerated) or family_of(instance_type) in set(families)


# -- prices -----------------------------------------------------------------
def on_demand_price(price_list: Iterable[Any]) -> float | None:
    """The hourly USD on-demand price in a Pricing ``GetProducts`` answer, or None.

    Several SKUs can survive the filters (capacity-block market options, other
    operations); the plain ``RunInstances`` on-demand SKU wins, else the cheapest
    positive hourly price, so an unexpected extra SKU never inflates the burn rate.
    """
    plain, other = [], []
    for entry in price_list:
        try:
            doc = json.loads(entry) if isinstance(entry, (str, bytes)) else entry
        except ValueError:
            continue
        if not isinstance(doc, Mapping):
            continue
        attrs = (doc.get("product") or {}).get("attributes") or {}
        for term in ((doc.get("terms") or {}).get("OnDemand") or {}).values():
            for dim in (term.get("priceDimensions") or {}).values():
                if str(dim.get("unit", "")).lower() not in ("hrs", "hours", "hr"):
                    continue
                try:
                    usd = float((dim.get("pricePerUnit") or {}).get("USD", "nan"))
                except (TypeError, ValueError):
                    continue
                if not math.isfinite(usd) or usd <= 0:
                    continue
                is_plain = attrs.get("operation", "RunInstances") == "RunInstances" and \
                    attrs.get("marketoption", "OnDemand") == "OnDemand"
                (plain if is_plain else other).append(usd)
    if plain:
        return min(plain)
    return min(other) if other else None


def spot_price_for(prices: Mapping[str, float], az: str) -> float | None:
    """The spot price of an instance's AZ; else the highest price seen in the region (never under-report)."""
    if az in prices:
        return prices[az]
    return max(prices.values()) if prices else None


# -- burn ---------------------------------------------------------------------
class Burn:
    """The fleet now: counts and $/h."""

    FIELDS = {"instances": 0, "spot": 0, "gpus": 0.0, "accelerators": 0, "burn": 0.0, "idle": 0,
              "idle_burn": 0.0, "unpriced": 0, "unpriced_types": list, "idle_ids": list, "unknown": 0}

    def __init__(self, **values):
        for name, default in self.FIELDS.items():
            value = values.get(name, default)
            setattr(self, name, value() if value is list else value)

    def __eq__(self, other) -> bool:
        return isinstance(other, Burn) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"Burn({self.to_json()!r})"

    def to_json(self) -> dict:
        return {name: getattr(self, name) for name in self.FIELDS}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "Burn":
        return cls(**{k: doc[k] for k in cls.FIELDS if k in doc})


def summarise(instances: Iterable[Mapping[str, Any]]) -> Burn:
    """Add up priced, classified GPU instances.

    Args:
        instances: dicts with ``type``, ``id``, ``spot`` (bool), ``gpus``,
            ``accelerators``, ``price`` ($/h or None when no price was found) and
            ``state`` (``idle``, ``busy`` or ``unknown``).
    """
    out = Burn()
    for inst in instances:
        out.instances += 1
        out.spot += 1 if inst.get("spot") else 0
        out.gpus += float(inst.get("gpus") or 0.0)
        out.accelerators += int(inst.get("accelerators") or 0)
        price = inst.get("price")
        if price is None:
            out.unpriced += 1
            if inst["type"] not in out.unpriced_types:
                out.unpriced_types.append(inst["type"])
        else:
            out.burn += float(price)
        if inst.get("state") == IDLE:
            out.idle += 1
            out.idle_ids.append(str(inst.get("id")))
            out.idle_burn += float(price or 0.0)
        elif inst.get("state") == UNKNOWN:
            out.unknown += 1
    out.gpus = round(out.gpus, 6)
    out.burn = round(out.burn, 6)
    out.idle_burn = round(out.idle_burn, 6)
    return out


def merge_burns(parts: Iterable[Burn]) -> Burn:
    """Add the per-region summaries into one."""
    total = Burn()
    for p in parts:
        for key in ("instances", "spot", "accelerators", "idle", "unpriced", "unknown"):
            setattr(total, key, getattr(total, key) + getattr(p, key))
        for key in ("gpus", "burn", "idle_burn"):
            setattr(total, key, round(getattr(total, key) + getattr(p, key), 6))
        total.unpriced_types += [t for t in p.unpriced_types if t not in total.unpriced_types]
        total.idle_ids += p.idle_ids
    return total


# -- idleness -----------------------------------------------------------------
def classify_idle(gpu_values: Iterable[float] | None, cpu_values: Iterable[float] | None,
                  gpu_threshold: float, cpu_threshold: float) -> tuple[str, str]:
    """Say whether an instance looked idle over the whole window.

    GPU utilisation (CloudWatch agent ``nvidia_smi_utilization_gpu``, every GPU of the
    instance) decides when it has data: a CPU-bound data loader with idle GPUs is
    still idle GPU spend. Without GPU data, ``CPUUtilization`` decides. Idle means
    every period average in the window stayed below the threshold; no data at all
    is ``unknown``, never idle (a missing agent must not raise an idle alarm).

    Returns:
        (``idle`` | ``busy`` | ``unknown``, ``gpu`` | ``cpu`` | ``none``)
    """
    gpu = [float(v) for v in gpu_values or () if v is not None and math.isfinite(float(v))]
    if gpu:
        return (IDLE if max(gpu) < gpu_threshold else BUSY), "gpu"
    cpu = [float(v) for v in cpu_values or () if v is not None and math.isfinite(float(v))]
    if cpu:
        return (IDLE if max(cpu) < cpu_threshold else BUSY), "cpu"
    return UNKNOWN, "none"


# -- days and Cost Explorer windows ------------------------------------------
def utc_day(ts: float) -> date:
    """The UTC calendar day of a Unix time (Cost Explorer days are UTC)."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).date()


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month_start(day: date) -> date:
    # Day 28 + 4 days always lands in the next month.
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def query_window(today: date, cached_days: Iterable[str]) -> tuple[date, date]:
    """The ``[start, end)`` days one Cost Explorer refresh asks for.

    Needed: the month so far, and at least the last ``REQUERY_DAYS`` days (yesterday on
    the 1st lies in the previous month). Days older than that which the cache already
    holds are final enough and are not bought again; the last two days always are,
    to pick up late corrections.
    """
    needed_from = min(month_start(today), today - timedelta(days=REQUERY_DAYS))
    requery_from = today - timedelta(days=REQUERY_DAYS)
    have = set(cached_days)
    start = requery_from
    day = needed_from
    while day < requery_from:
        if day.isoformat() not in have:
            start = day
            break
        day += timedelta(days=1)
    return start, today + timedelta(days=1)


def parse_daily(results_by_time: Iterable[Mapping[str, Any]], metric: str = COST_METRIC) -> dict[str, dict]:
    """``ResultsByTime`` -> ``{day: {"usd": amount, "estimated": bool}}``.

    Amounts arrive as strings; a non-USD unit is refused rather than summed as dollars.
    """
    out: dict[str, dict] = {}
    for item in results_by_time:
        start = str((item.get("TimePeriod") or {}).get("Start", ""))[:10]
        total = (item.get("Total") or {}).get(metric)
        if total is None:
            # Grouped queries put amounts in Groups; sum them.
            amounts = [g.get("Metrics", {}).get(metric) for g in item.get("Groups") or []]
            amounts = [a for a in amounts if a]
            if not amounts and not start:
                continue
            usd = sum(_usd(a) for a in amounts)
        else:
            usd = _usd(total)
        if start:
            out[start] = {"usd": round(usd, 6), "estimated": bool(item.get("Estimated", False))}
    return out


def _usd(amount: Mapping[str, Any]) -> float:
    unit = str(amount.get("Unit", "USD") or "USD")
    if unit.upper() != "USD":
        raise ValueError(f"Cost Explorer answered in {unit}, not USD")
    value = float(amount.get("Amount", "0") or 0)
    if not math.isfinite(value):
        raise ValueError("Cost Explorer answered a non-finite amount")
    return value


def merge_daily(cached: Mapping[str, dict], fetched: Mapping[str, dict], today: date) -> dict[str, dict]:
    """Fetched days replace cached ones; days older than ``KEEP_DAYS`` are dropped (bounded cache)."""
    merged = dict(cached)
    merged.update(fetched)
    oldest = (today - timedelta(days=KEEP_DAYS)).isoformat()
    return {d: v for d, v in sorted(merged.items()) if oldest <= d <= today.isoformat()}


def month_to_date(daily: Mapping[str, dict], today: date, include_today: bool = True) -> float:
    """Sum of this month's days up to today (today's estimate included unless asked not to)."""
    first = month_start(today).isoformat()
    last = today.isoformat()
    return round(sum(v["usd"] for d, v in daily.items()
                     if first <= d <= last and (include_today or d < last)), 6)


def day_amount(daily: Mapping[str, dict], day: date) -> float | None:
    entry = daily.get(day.isoformat())
    return None if entry is None else float(entry["usd"])


def project_month_end(daily: Mapping[str, dict], today: date, forecast: Mapping[str, Any] | None,
                      burn_per_hour: float | None, hour_of_day: float) -> tuple[float | None, int]:
    """Projected month-end spend and where it came from.

    1. Cost Explorer's forecast (made on day F for F..month end) + this month's actual
       spend before F: AWS's model, when it had enough history.
    2. Else actual spend before today + the average of the last complete days
       (up to ``AVERAGE_DAYS``) for each day left, today included.
    3. Else month to date + the current burn rate for the hours left.

    Returns:
        (amount or None, PROJECTION_* source; 0 when there is nothing to project from)
    """
    first = month_start(today)
    if forecast and forecast.get("day") and forecast.get("usd") is not None:
        fday = date.fromisoformat(forecast["day"])
        if month_start(fday) == first and fday <= today:
            before = sum(v["usd"] for d, v in daily.items() if first.isoformat() <= d < fday.isoformat())
            return round(before + float(forecast["usd"]), 2), PROJECTION_FORECAST
    days_left = (next_month_start(today) - today).days  # today included
    complete = sorted((d, v["usd"]) for d, v in daily.items() if d < today.isoformat())[-AVERAGE_DAYS:]
    if complete:
        average = sum(a for _, a in complete) / len(complete)
        return round(month_to_date(daily, today, include_today=False) + average * days_left, 2), PROJECTION_DAILY
    if burn_per_hour is not None:
        hours_left = days_left * 24.0 - hour_of_day
        return round(month_to_date(daily, today) + burn_per_hour * max(0.0, hours_left), 2), PROJECTION_BURN
    return None, 0


# -- budgets --------------------------------------------------------------------
def compact_budgets(raw: Iterable[Mapping[str, Any]], limit: int = 100) -> list[dict]:
    """Keep what the sensor needs of ``DescribeBudgets``: monthly cost budgets' limit, actual and forecast."""
    out = []
    for b in raw:
        if b.get("BudgetType", "COST") != "COST" or b.get("TimeUnit") != "MONTHLY":
            continue
        try:
            limit_usd = _usd(b["BudgetLimit"])
        except (KeyError, ValueError, TypeError):
            continue
        spend = b.get("CalculatedSpend") or {}
        entry = {"name": str(b.get("BudgetName", "")), "limit": limit_usd,
                 "actual": _safe_usd(spend.get("ActualSpend")), "forecast": _safe_usd(spend.get("ForecastedSpend"))}
        out.append(entry)
        if len(out) >= limit:
            break
    return out


def _safe_usd(amount) -> float | None:
    try:
        return _usd(amount) if amount else None
    except (ValueError, TypeError):
        return None


def pick_budget(budgets: Iterable[Mapping[str, Any]], name: str | None) -> dict | None:
    """The budget named ``name``; without a name, the only monthly cost budget with "gpu" in its name."""
    budgets = list(budgets)
    if name:
        return next((dict(b) for b in budgets if b["name"] == name), None)
    gpu = [b for b in budgets if "gpu" in b["name"].lower()]
    return dict(gpu[0]) if len(gpu) == 1 else None


def percent(part: float | None, whole: float | None) -> float | None:
    if part is None or not whole or whole <= 0:
        return None
    return round(100.0 * part / whole, 3)
