"""What every non-AWS cloud of ``gpu_spend`` shares: caches, back-off, the daily request cap, channels.

A cloud module (``azure``, ``gcp``) provides a ``Provider`` with:

* ``config()``: the checked parameters; ``cost_identity()`` / ``live_identity()``: cache keys;
* ``open()``: the backend session (imports the cloud's credential library; only on a refresh);
* ``refresh_cost(session, data, today, notes)``: fill ``data`` with ``daily``
  (``{day: {"usd", "estimated"}}``), ``through`` (the newest day the billing data
  covers), ``forecast``, ``budgets``; raise ``CloudError`` on failure;
* ``refresh_live(session, now, notes)``: a ``spend_model.Burn`` of the running fleet.

The flow is the AWS sensor's: a scan whose caches are fresh reads two small files
and imports nothing of the cloud; a refresh takes the cache's lock, re-reads, asks
the cloud, records a failure with an exponential back-off (longer when the service
said ``Retry-After``), and counts every billed or throttled request. A daily cap
per cost cache stops a runaway (many sensors, clock trouble) before the bill or the
tenant's throttling quota does.
"""

from __future__ import annotations

import math

from prtg_ai.gpu_spend import ce_cache
from prtg_ai.gpu_spend import spend_model as sm
from prtg_ai.gpu_spend.ce_cache import SharedCache
from prtg_ai.gpu_spend.dates import date, timedelta
from prtg_ai.gpu_spend.gpu_spend import closing_notes, usable_parts
from prtg_ai.prtg.model import SensorResult

COST_BACKOFF_S = 900.0
LIVE_BACKOFF_MAX_S = 1800.0
# At most this many cost API requests (pages included) per cost cache and UTC day. The
# default refresh (6 h, two days re-queried, one forecast, budgets) needs about 10.
DAILY_REQUEST_CAP = 48
PROJECTION_TEXT = {sm.PROJECTION_FORECAST: "{label} forecast", sm.PROJECTION_DAILY: "sensor projection from the daily "
                   "average", sm.PROJECTION_BURN: "sensor projection from the burn rate"}


class ProviderBase:
    """What every cloud's ``Provider`` starts with: the sensor, its environment, its checked parameters."""

    def __init__(self, sensor):
        self.sensor = sensor
        self.env = sensor.ctx.env
        self.cfg = self._config(sensor.values)  # each cloud checks its own parameters


class Part:
    __slots__ = ("data", "error")

    def __init__(self, data: dict | None, error=None):
        self.data = data
        self.error = error


# -- the daily cap (generic: any counter kept with ce_cache.count_requests) ------------
def cap_reached(data: dict | None, day: str, cap: int) -> bool:
    return ce_cache.requests_today(data, day) >= cap


def add_today(data: dict, key: str, day: str, amount: float) -> float:
    """Add ``amount`` to today's counter ``key`` (bytes billed, ...); a new UTC day starts at 0."""
    counter = data.get(key) or {}
    if counter.get("day") != day:
        counter = {"day": day, "value": 0}
    counter["value"] = counter.get("value", 0) + amount
    data[key] = counter
    return counter["value"]


def today_value(data: dict | None, key: str, day: str) -> float:
    counter = (data or {}).get(key) or {}
    return counter.get("value", 0) if counter.get("day") == day else 0


def record_failure(data: dict, now: float, exc) -> None:
    ce_cache.record_failure(data, now, exc.kind, exc.message())
    if getattr(exc, "retry_after", None):
        data["failure"]["not_before"] = now + float(exc.retry_after)


def credential_fingerprint(env, names) -> str:
    """A checksum of the environment that picks credentials and endpoints (names only of secrets' holders)."""
    from prtg_ai.core.state import instance_file_stem

    return instance_file_stem("cred", {k: env.get(k, "") for k in names}).split("-", 1)[1]


# -- the run -------------------------------------------------------------------------
def run(sensor, provider) -> SensorResult:
    cfg = provider.cfg
    now = sensor.ctx.now()
    notes: list[str] = []
    cost_cache = SharedCache(sensor.ctx.state_path, provider.cost_identity())
    live_cache = SharedCache(sensor.ctx.state_path, provider.live_identity())
    live, cost = Part(live_cache.peek()), Part(cost_cache.peek())
    live_base = max(60.0, cfg["live_ttl_s"])
    live_due = ce_cache.due(live.data, cfg["live_ttl_s"], live_base, LIVE_BACKOFF_MAX_S, now)
    cost_due = ce_cache.due(cost.data, cfg["cost_ttl_s"], COST_BACKOFF_S, cfg["cost_ttl_s"], now)
    if live_due or cost_due:
        session = provider.open()
        if live_due:
            live = _refresh_live(sensor, provider, session, live_cache, now, notes)
        if cost_due:
            cost = _refresh_cost(sensor, provider, session, cost_cache, now, notes)
    for part in (live, cost):
        if part.error is None and part.data and part.data.get("failure"):
            part.error = part.data["failure"]
    return _build(sensor, provider, now, live, cost, notes)


def _refresh_live(sensor, provider, session, cache: SharedCache, now: float, notes: list[str]) -> Part:
    from prtg_ai.backends.cloud_http import CloudError

    cfg = provider.cfg
    with cache.session() as state:
        notes.extend(state.notes)
        data = state.data
        if data and not ce_cache.due(data, cfg["live_ttl_s"], max(60.0, cfg["live_ttl_s"]), LIVE_BACKOFF_MAX_S, now):
            return Part(data)
        live_notes: list[str] = []
        try:
            burn = provider.refresh_live(session, now, live_notes)
        except CloudError as exc:
            sensor.log.warning("%s fleet refresh failed (%s): %s", provider.label, exc.kind, exc.message())
            record_failure(data, now, exc)
            return Part(data, exc)
        data.update({"fetched_at": now, "burn": burn.to_json(), "notes": live_notes[:10]})
        ce_cache.clear_failure(data)
        return Part(data)


def _refresh_cost(sensor, provider, session, cache: SharedCache, now: float, notes: list[str]) -> Part:
    from prtg_ai.backends.cloud_http import CloudError

    cfg = provider.cfg
    with cache.session() as state:
        notes.extend(state.notes)
        data = state.data
        if not state.writable:
            return Part(data or None, {"kind": "nocache", "text": (
                f"{provider.cost_source} was not queried because its cache cannot be saved in the state folder "
                f"{sensor.ctx.state_path} (see the note); without a cache every scan would be billed or throttled.")})
        if data and not ce_cache.due(data, cfg["cost_ttl_s"], COST_BACKOFF_S, cfg["cost_ttl_s"], now):
            return Part(data)
        today = sm.utc_day(now)
        if cap_reached(data, today.isoformat(), DAILY_REQUEST_CAP):
            return Part(data or None, {"kind": "capped", "text": (
                f"{provider.cost_source} was not queried: the daily cap of {DAILY_REQUEST_CAP} requests for this "
                "scope is reached (too many sensors or refreshes for one scope?).")})
        before = session.cost_requests()
        error = None
        try:
            provider.refresh_cost(session, data, today, notes)
            data["fetched_at"] = now
            ce_cache.clear_failure(data)
        except CloudError as exc:
            sensor.log.warning("%s refresh failed (%s): %s", provider.cost_source, exc.kind, exc.message())
            record_failure(data, now, exc)
            error = exc
        except ValueError as exc:  # a non-USD or malformed amount
            sensor.log.warning("%s answer unusable: %s", provider.cost_source, exc)
            ce_cache.record_failure(data, now, "failed", f"{provider.cost_source} answer unusable: {exc}.")
            error = data["failure"]
        finally:
            ce_cache.count_requests(data, today.isoformat(), session.cost_requests() - before)
        return Part(data, error)


# -- channels -----------------------------------------------------------------------
def _build(sensor, provider, now: float, live: Part, cost: Part, notes: list[str]) -> SensorResult:
    has_live, has_cost = usable_parts(live, cost, provider.label)
    result = SensorResult()
    summary = []
    burn = None
    if has_live:
        burn = _live_channels(sensor, provider, result, live.data, now)
        summary.append(f"{burn.instances} GPU {provider.instance_word}s ({burn.gpus:g} GPUs"
                       + (f", {burn.accelerators} AI accelerators" if burn.accelerators else "")
                       + f") at ${burn.burn:,.2f}/h"
                       + (f", {burn.idle} idle (${burn.idle_burn:,.2f}/h)" if provider.has_idle else ""))
    if has_cost:
        summary.append(_cost_channels(sensor, provider, result, cost.data, now, burn))
    elif cost.data:
        result.add(sensor.channel("cost_api_requests_today",
                                  ce_cache.requests_today(cost.data, sm.utc_day(now).isoformat())))
    result.text = "; ".join(s for s in summary if s)
    fleet, billing = f"{provider.label} fleet data", f"{provider.cost_source} data"
    closing_notes(result, now, ((fleet, fleet, live, has_live), (billing, billing, cost, has_cost)), notes)
    return result


def _live_channels(sensor, provider, result: SensorResult, data: dict, now: float) -> sm.Burn:
    burn = sm.Burn.from_json(data["burn"])
    result.add(sensor.channel("running_instances", burn.instances))
    result.add(sensor.channel("spot_instances", burn.spot))
    result.add(sensor.channel("gpus", round(burn.gpus, 3)))
    result.add(sensor.channel("accelerators", burn.accelerators))
    result.add(sensor.channel("burn_rate", round(burn.burn, 4)))
    if provider.has_idle:
        result.add(sensor.channel("idle_instances", burn.idle))
        result.add(sensor.channel("idle_burn", round(burn.idle_burn, 4)))
    else:
        result.note(f"Idle GPU Instances and Idle Burn Rate are not reported for {provider.label} "
                    "(no utilisation source is read)")
    result.add(sensor.channel("unpriced_instances", burn.unpriced))
    result.add(sensor.channel("live_data_age", int(round(ce_cache.age_s(data["fetched_at"], now) or 0))))
    if burn.unpriced:
        result.note(f"No price found for {', '.join(burn.unpriced_types[:5])}: the burn rate leaves "
                    f"{burn.unpriced} {provider.instance_word}(s) out")
    if provider.has_idle and burn.unknown:
        result.note(f"{burn.unknown} GPU {provider.instance_word}(s) have no utilisation data in the idle window "
                    "and were not assessed for idleness")
    return burn


def _cost_channels(sensor, provider, result: SensorResult, data: dict, now: float, burn: sm.Burn | None) -> str:
    cfg = provider.cfg
    today = sm.utc_day(now)
    daily = data.get("daily") or {}
    through = date.fromisoformat(data["through"]) if data.get("through") else None
    mtd = sm.month_to_date(daily, today)
    yesterday = today - timedelta(days=1)
    if through is not None and through >= yesterday:
        # Days the billing data covers but without a GPU row cost nothing.
        result.add(sensor.channel("yesterday_spend", round(sm.day_amount(daily, yesterday) or 0.0, 2)))
    elif through is not None:
        result.note(f"{provider.cost_source} covers days up to {through.isoformat()} so far (billing data lags): "
                    "GPU Spend Yesterday is left out until it arrives")
    else:
        result.note(f"{provider.cost_source} has no billing rows yet for this scope")
    # Project from the last day the data covers: days in the lag are neither spend nor forecast yet.
    basis = today if through is None or through >= today else max(sm.month_start(today),
                                                                   through + timedelta(days=1))
    hour = (now % 86400.0) / 3600.0 if basis == today else 0.0
    projected, source = sm.project_month_end(daily, basis, data.get("forecast"),
                                             burn.burn if burn is not None else None, hour)
    result.add(sensor.channel("mtd_spend", round(mtd, 2)))
    if projected is not None:
        result.add(sensor.channel("projected_spend", round(projected, 2)))
        result.add(sensor.channel("projection_source", source))
    _budget_channels(sensor, provider, result, data, mtd, projected)
    age_h = (ce_cache.age_s(data["fetched_at"], now) or 0.0) / 3600.0
    refresh_h = cfg["cost_ttl_s"] / 3600.0
    result.add(sensor.channel("cost_data_age", round(age_h, 3), limitmaxwarning=round(2 * refresh_h, 3),
                              limitmaxerror=round(max(48.0, 4 * refresh_h), 3)))
    per_day = provider.requests_per_refresh * math.ceil(24.0 / refresh_h) + 2
    result.add(sensor.channel("cost_api_requests_today", ce_cache.requests_today(data, today.isoformat()),
                              limitmaxwarning=2 * per_day))
    for key, channel in provider.extra_counters:
        result.add(sensor.channel(channel, round(float(today_value(data, key, today.isoformat())) / 1e6, 3)))
    text = f"GPU spend this month ${mtd:,.2f}"
    if projected is not None:
        text += f", projected ${projected:,.2f} ({PROJECTION_TEXT[source].format(label=provider.label)})"
    return text + f"; cost data {age_h:.1f} h old"


def _budget_channels(sensor, provider, result: SensorResult, data: dict, mtd: float, projected: float | None) -> None:
    cfg = provider.cfg
    if cfg.get("budget"):
        used, ahead = sm.percent(mtd, cfg["budget"]), sm.percent(projected, cfg["budget"])
    else:
        budgets = data.get("budgets") or []
        chosen = sm.pick_budget(budgets, cfg.get("budget_name"))
        if chosen is None:
            if cfg.get("budget_name"):
                known = ", ".join(b["name"] for b in budgets[:5]) or "none"
                result.note(data.get("budgets_problem") or
                            f"{provider.label} budget {cfg['budget_name']!r} not found (monthly budgets: {known})")
            return
        if chosen.get("actual") is None:
            # The Budget API gives the amount only (Google Cloud): compare this sensor's GPU spend with it.
            used, ahead = sm.percent(mtd, chosen["limit"]), sm.percent(projected, chosen["limit"])
            result.note(f"Budget: {provider.label} budget {chosen['name']!r} (${chosen['limit']:,.2f} a month), "
                        "compared with the GPU spend of this sensor")
        else:
            used = sm.percent(chosen.get("actual"), chosen["limit"])
            ahead = sm.percent(chosen.get("forecast"), chosen["limit"])
            result.note(f"Budget: {provider.label} budget {chosen['name']!r} (${chosen['limit']:,.2f} a month, "
                        "its own scope)")
    if used is not None:
        result.add(sensor.channel("budget_used", round(used, 2)))
    if ahead is not None:
        result.add(sensor.channel("budget_projected", round(ahead, 2)))
