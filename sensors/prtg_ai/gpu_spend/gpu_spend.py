"""``gpu_spend``: cloud GPU spend on AWS, near real time, without a Cost Explorer bill of its own.

Reads (through ``prtg_ai.backends.aws``, the only boto3 user):

* billed spend: Cost Explorer ``GetCostAndUsage`` (daily ``UnblendedCost`` filtered
  to GPU/accelerator ``INSTANCE_TYPE_FAMILY`` values) and ``GetCostForecast``; AWS
  Budgets ``DescribeBudgets``. Cached on disk per account and query, shared by every
  sensor on the host, refreshed at most every ``--ce-refresh-hours`` (default 6: AWS
  updates billing data a few times a day), re-querying the last two days for late
  corrections. Each CE request costs $0.01; at 6 h that is about 5 requests a day
  instead of 1,440 for a 60 s sensor that asked every scan.
* now: ``DescribeInstances`` (running GPU instances), ``DescribeInstanceTypes``
  (``GpuInfo``, fractional GPUs, ``NeuronInfo``), Pricing ``GetProducts`` (on-demand
  list price, cached a day), ``DescribeSpotPriceHistory`` (spot instances at their AZ's
  spot price), CloudWatch ``ListMetrics``/``GetMetricData`` (CWAgent
  ``nvidia_smi_utilization_gpu``, else ``AWS/EC2 CPUUtilization``) for idle instances.
  Cached for ``--live-refresh`` (default 5 min).

A scan whose caches are fresh reads three small files and never imports boto3.

Needs (least-privilege policy: ``installer/assets/iam/prtg-ai-gpu-spend-policy.json``):
``ce:GetCostAndUsage``, ``ce:GetCostForecast``, ``budgets:ViewBudget``,
``ec2:DescribeInstances``, ``ec2:DescribeInstanceTypes``, ``ec2:DescribeSpotPriceHistory``,
``pricing:GetProducts``, ``cloudwatch:ListMetrics``, ``cloudwatch:GetMetricData``; a
writable state folder (without one Cost Explorer is not queried at all: every scan
would be billed).

The burn rate is list price: reserved instances, savings plans, capacity blocks and
credits make the bill lower; Cost Explorer's channels show the billed amounts.
Instances are priced as Linux.
"""

from __future__ import annotations

import math
import re

from prtg_ai.core.errors import ConfigError, SensorError
from prtg_ai.core.params import Param, format_duration
from prtg_ai.core.sensor import Sensor
from prtg_ai.gpu_spend import ce_cache
from prtg_ai.gpu_spend import spend_model as sm
from prtg_ai.gpu_spend.ce_cache import SharedCache
from prtg_ai.gpu_spend.cloud_params import CLOUD_PARAMS
from prtg_ai.gpu_spend.dates import datetime, timedelta, timezone
from prtg_ai.prtg.model import SensorResult

IDENTITY_TTL_S = 86400.0        # re-check the account behind the credentials daily (free STS call)
TYPE_TTL_S = 7 * 86400.0        # instance types' GPU counts change only with new types
PRICE_TTL_S = 86400.0           # on-demand list prices: a day
CE_BACKOFF_S = 900.0            # first retry of a failed CE refresh after 15 min, then 30, 60...
LIVE_BACKOFF_MAX_S = 1800.0
MAX_CATALOG_ENTRIES = 400
METRIC_PERIOD_S = 300           # CPUUtilization basic monitoring is 5-minutely
# Patterns as strings: ``re`` compiles (and caches) them only when a region or family is given.
_REGION = r"^[a-z]{2}(-[a-z]+)+-\d{1,2}\Z"
_FAMILY = r"^[a-z][a-z0-9-]{0,20}\Z"
MAX_CLIENT_REGIONS = 8
_SOURCE_TEXT = {sm.PROJECTION_FORECAST: "Cost Explorer forecast",
                sm.PROJECTION_DAILY: "sensor projection from the daily average",
                sm.PROJECTION_BURN: "sensor projection from the burn rate"}


class _Config:
    """The sensor's parameters, checked and normalised."""

    def __init__(self, **values):
        self.regions: list[str] = values["regions"]
        self.families: list[str] = values["families"]
        self.profile: str | None = values["profile"]
        self.budget: float | None = values["budget"]
        self.budget_name: str | None = values["budget_name"]
        self.ce_ttl_s: float = values["ce_ttl_s"]
        self.live_ttl_s: float = values["live_ttl_s"]
        self.idle_gpu: float = values["idle_gpu"]
        self.idle_cpu: float = values["idle_cpu"]
        self.idle_window_s: float = values["idle_window_s"]


class _Part:
    """One cached part (live or cost): its data, and the failure when its last refresh failed."""

    __slots__ = ("data", "error")

    def __init__(self, data: dict | None, error=None):
        self.data = data
        self.error = error  # an AwsError from this scan, or a failure dict recorded by an earlier one


class GpuSpendSensor(Sensor):
    id = "gpu_spend"
    title = "Cloud GPU spend (AWS, Azure, Google Cloud)"
    summary = ("GPU spend month to date, yesterday and projected (Cost Explorer, cached), budget use, and "
               "now: running GPU instances, GPUs, burn and idle burn in $/h.")
    interval = 300
    params = (
        Param("region", "str", "region(s) whose running GPU instances are counted (repeatable or "
              "comma-separated; default: the profile's / AWS_DEFAULT_REGION)", multiple=True, metavar="REGION"),
        Param("profile", "str", "AWS profile (default: boto3's chain: AWS_PROFILE, environment, instance role)",
              metavar="NAME"),
        Param("budget", "float", "monthly GPU budget in USD; budget channels compare GPU spend with it",
              minimum=0.01, maximum=1e12, metavar="USD"),
        Param("budget_name", "str", "AWS Budget to report (default: the only monthly cost budget with "
              "'gpu' in its name)", metavar="NAME"),
        Param("ce_refresh_hours", "float", "refresh Cost Explorer data at most this often (each request "
              "costs $0.01)", default=6.0, minimum=1.0, maximum=168.0, metavar="HOURS"),
        Param("live_refresh", "duration", "refresh instances, prices and CloudWatch at most this often",
              default=300.0, minimum=0.0, maximum=86400.0, metavar="DURATION"),
        Param("idle_gpu_percent", "float", "an instance is idle when GPU utilisation stays below this",
              default=5.0, minimum=0.0, maximum=100.0, metavar="PERCENT"),
        Param("idle_cpu_percent", "float", "without GPU metrics: idle when CPU utilisation stays below this",
              default=10.0, minimum=0.0, maximum=100.0, metavar="PERCENT"),
        Param("idle_window", "duration", "how long utilisation must stay low to count as idle",
              default=1800.0, minimum=600.0, maximum=86400.0, metavar="DURATION"),
        Param("family", "str", "instance families counted as GPU spend (repeatable or comma-separated; "
              "default: every GPU/accelerator family)", multiple=True, metavar="FAMILY"),
    ) + CLOUD_PARAMS  # --cloud azure|gcp and their scope parameters (prtg_ai.gpu_spend)

    # -- parameters --------------------------------------------------------------
    def _config(self) -> _Config:
        v = self.values
        regions = list(v.get("region") or ())
        for r in regions:
            if not re.match(_REGION, r):
                raise ConfigError("region", f"{r!r} is not an AWS region name such as us-east-1")
        given = list(v.get("family") or ())
        families = given or list(sm.GPU_FAMILIES)
        client = self.ctx.policy is not None
        for f in given:  # the default families are ours: only what was given is checked
            if not re.match(_FAMILY, f) or (client and f not in sm.GPU_FAMILIES):
                # Through the agent only the known GPU families: each other value would be a new cost query.
                raise ConfigError("family", f"{f[:30]!r} is not a GPU instance family such as p5 or g6e")
        if client and len(regions) > MAX_CLIENT_REGIONS:
            raise ConfigError("region", f"through the agent at most {MAX_CLIENT_REGIONS} regions per sensor")
        profile = (v.get("profile") or "").strip() or None
        return _Config(
            regions=sorted(set(regions)), families=sorted(set(families)), profile=profile,
            budget=v.get("budget"), budget_name=(v.get("budget_name") or "").strip() or None,
            ce_ttl_s=float(v["ce_refresh_hours"]) * 3600.0, live_ttl_s=float(v["live_refresh"]),
            idle_gpu=float(v["idle_gpu_percent"]), idle_cpu=float(v["idle_cpu_percent"]),
            idle_window_s=float(v["idle_window"]),
        )

    # -- acquire -------------------------------------------------------------------
    def run(self) -> SensorResult:
        cloud = self.values.get("cloud") or "aws"
        if cloud != "aws":
            return _other_cloud(self, cloud)
        cfg = self._config()
        now = self.ctx.now()
        notes: list[str] = []
        identity_cache, live_cache = self.caches(cfg)
        account = (identity_cache.peek() or {}).get("account")
        cost_cache = self.cost_cache_for(account, cfg)
        live = _Part(live_cache.peek())
        cost = _Part(cost_cache.peek() if cost_cache else None)

        live_base = max(60.0, cfg.live_ttl_s)
        live_due = ce_cache.due(live.data, cfg.live_ttl_s, live_base, LIVE_BACKOFF_MAX_S, now)
        cost_due = ce_cache.due(cost.data, cfg.ce_ttl_s, CE_BACKOFF_S, cfg.ce_ttl_s, now)
        if live_due or cost_due:
            from prtg_ai.backends import aws  # boto3 loads only on this path

            session = aws.Aws(cfg.profile, self.ctx.env)
            account = self._account(session, identity_cache, now)
            if live_due:
                live = self._refresh_live(session, live_cache, cfg, now, notes)
            if cost_due:
                cost_cache = self.cost_cache_for(account, cfg)
                cost = self._refresh_cost(session, cost_cache, account, cfg, now, notes)
        for part in (live, cost):
            if part.error is None and part.data and part.data.get("failure"):
                part.error = part.data["failure"]  # a failure recorded by an earlier scan, in back-off
        return self._build(cfg, now, live, cost, notes)

    def caches(self, cfg: _Config | None = None) -> tuple[SharedCache, SharedCache]:
        """The identity cache (credentials -> account) and this configuration's live cache."""
        cfg = cfg or self._config()
        cred = ce_cache.credential_fingerprint(self.ctx.env, cfg.profile)
        identity = SharedCache(self.ctx.state_path, {"kind": "identity", "cred": cred})
        live = SharedCache(self.ctx.state_path, {
            "kind": "live", "cred": cred, "families": cfg.families,
            "regions": cfg.regions or ["default", self.ctx.env.get("AWS_REGION", ""),
                                       self.ctx.env.get("AWS_DEFAULT_REGION", "")],
            "idle": [cfg.idle_gpu, cfg.idle_cpu, cfg.idle_window_s]})
        return identity, live

    def cost_cache_for(self, account: str | None, cfg: _Config | None = None) -> SharedCache | None:
        """The cost cache of an account and query: shared by every sensor asking the same thing."""
        cfg = cfg or self._config()
        if not account:
            return None
        return SharedCache(self.ctx.state_path, {"kind": "cost", "account": account, "families": cfg.families,
                                                "metric": sm.COST_METRIC})

    def _account(self, session, identity_cache: SharedCache, now: float) -> str:
        """The account id behind the credentials: cached a day, from STS when older."""
        known = identity_cache.peek() or {}
        if known.get("account") and ce_cache.is_fresh(known, IDENTITY_TTL_S, now):
            return known["account"]
        from prtg_ai.backends.aws import AwsError

        try:
            account = session.account_id()
        except AwsError as exc:
            self.log.warning("Account lookup failed (%s): %s", exc.kind, exc.message())
            if exc.transient and known.get("account"):
                return known["account"]
            raise
        with identity_cache.session() as state:
            state.data.update({"account": account, "fetched_at": now})
        return account

    # -- refresh: now ----------------------------------------------------------------
    def _refresh_live(self, session, cache: SharedCache, cfg: _Config, now: float, notes: list[str]) -> _Part:
        """Read the fleet now (every region), under the live cache's lock; record a failure instead of raising."""
        from prtg_ai.backends.aws import AwsError

        with cache.session() as state:
            notes.extend(state.notes)
            data = state.data
            if data and not ce_cache.due(data, cfg.live_ttl_s, max(60.0, cfg.live_ttl_s), LIVE_BACKOFF_MAX_S, now):
                return _Part(data)  # another scan refreshed it while this one waited for the lock
            region_notes: list[str] = []
            try:
                regions = cfg.regions or [self._default_region(session)]
                burns = [self._read_region(session, region, cfg, now, region_notes) for region in regions]
            except AwsError as exc:
                self.log.warning("Instance data refresh failed (%s): %s", exc.kind, exc.message())
                ce_cache.record_failure(data, now, exc.kind, exc.message())
                return _Part(data, exc)
            data.update({"fetched_at": now, "regions": regions, "burn": sm.merge_burns(burns).to_json(),
                         "notes": region_notes[:10]})
            ce_cache.clear_failure(data)
            return _Part(data)

    @staticmethod
    def _default_region(session) -> str:
        region = session.default_region()
        if not region:
            raise ConfigError("region", "no region given and boto3 has none (AWS_DEFAULT_REGION or the "
                                        "profile's region); give --region")
        return region

    def _read_region(self, session, region: str, cfg: _Config, now: float, notes: list[str]) -> sm.Burn:
        """Running GPU instances of one region, priced and classified idle/busy."""
        from prtg_ai.backends.aws import AwsError

        instances = session.running_instances(region)
        types, price_of = self._catalog(session, region, instances, cfg, now, notes)
        gpu = [i for i in instances
               if sm.is_gpu_type(i["type"], sm.TypeInfo.from_json(types.get(i["type"], {})), cfg.families)]
        spot_types = sorted({i["type"] for i in gpu if i["lifecycle"] == "spot"})
        spot: dict[str, dict[str, float]] = {}
        if spot_types:
            try:
                spot = session.spot_prices(region, spot_types, datetime.fromtimestamp(now, tz=timezone.utc))
            except AwsError as exc:
                if not exc.transient:
                    raise
                notes.append(f"{exc.problem} Spot instances are unpriced this time.")
        states = self._idle_states(session, region, gpu, cfg, now, notes)
        rows = []
        for inst in gpu:
            info = sm.TypeInfo.from_json(types.get(inst["type"], {}))
            is_spot = inst["lifecycle"] == "spot"
            price = sm.spot_price_for(spot.get(inst["type"], {}), inst["az"]) if is_spot else price_of.get(inst["type"])
            rows.append({"id": inst["id"], "type": inst["type"], "spot": is_spot, "gpus": info.gpus,
                         "accelerators": info.accelerators, "price": price,
                         "state": states.get(inst["id"], sm.UNKNOWN)})
        return sm.summarise(rows)

    def _catalog(self, session, region: str, instances: list[dict], cfg: _Config, now: float,
                 notes: list[str]) -> tuple[dict, dict[str, float]]:
        """GPU counts per type (cached a week) and on-demand prices (cached a day), shared per region."""
        from prtg_ai.backends.aws import AwsError

        cache = SharedCache(self.ctx.state_path, {"kind": "catalog", "region": region})
        with cache.session() as state:
            types = state.data.setdefault("types", {})
            prices = state.data.setdefault("prices", {})
            wanted = sorted({i["type"] for i in instances if i["type"]})
            stale = [t for t in wanted if not _fresh_entry(types.get(t), TYPE_TTL_S, now)]
            if stale:
                found = session.instance_types(region, stale)
                for t in stale:
                    info = sm.type_info(found[t]) if t in found else sm.TypeInfo(0.0, 0)
                    types[t] = {**info.to_json(), "at": now}
            gpu_on_demand = sorted({i["type"] for i in instances if i["lifecycle"] != "spot" and
                                    sm.is_gpu_type(i["type"], sm.TypeInfo.from_json(types.get(i["type"], {})),
                                                   cfg.families)})
            for t in gpu_on_demand:
                if _fresh_entry(prices.get(t), PRICE_TTL_S, now):
                    continue
                try:
                    usd = sm.on_demand_price(session.on_demand_price_list(region, t))
                except AwsError as exc:
                    if not exc.transient:
                        raise
                    kept = "older prices are kept" if any(t in prices for t in gpu_on_demand) else \
                        "the burn rate misses unpriced types"
                    notes.append(f"{exc.problem} {kept}.")
                    break  # the next type would fail the same way
                prices[t] = {"usd": usd, "at": now}
            _trim(types)
            _trim(prices)
            price_of = {t: float(e["usd"]) for t, e in prices.items() if e.get("usd") is not None}
            return dict(types), price_of

    def _idle_states(self, session, region: str, gpu: list[dict], cfg: _Config, now: float,
                     notes: list[str]) -> dict[str, str]:
        """Instance id -> idle / busy / unknown over ``--idle-window`` (GPU metrics first, CPU otherwise)."""
        from prtg_ai.backends.aws import AwsError

        if not gpu:
            return {}
        try:
            series = session.gpu_metric_series(region)
            queries, owner = [], {}
            for inst in gpu:
                for dims in series.get(inst["id"], [])[:32]:
                    qid = f"g{len(queries)}"
                    queries.append({"id": qid, "namespace": "CWAgent", "metric": "nvidia_smi_utilization_gpu",
                                    "dims": dims})
                    owner[qid] = (inst["id"], "gpu")
                # CPU too: a GPU series that stopped reporting (agent down) falls back to CPU.
                qid = f"c{len(queries)}"
                queries.append({"id": qid, "namespace": "AWS/EC2", "metric": "CPUUtilization",
                                "dims": [{"Name": "InstanceId", "Value": inst["id"]}]})
                owner[qid] = (inst["id"], "cpu")
            end = datetime.fromtimestamp(now, tz=timezone.utc)
            values = session.metric_values(region, queries, end - timedelta(seconds=cfg.idle_window_s), end,
                                           METRIC_PERIOD_S)
        except AwsError as exc:
            if not exc.transient:
                raise
            notes.append(f"{exc.problem} Idle instances were not assessed.")
            return {}
        found: dict[str, dict[str, list[float]]] = {}
        for qid, vals in values.items():
            if qid in owner:
                iid, kind = owner[qid]
                found.setdefault(iid, {"gpu": [], "cpu": []})[kind].extend(vals)
        return {inst["id"]: sm.classify_idle(found.get(inst["id"], {}).get("gpu"),
                                             found.get(inst["id"], {}).get("cpu"),
                                             cfg.idle_gpu, cfg.idle_cpu)[0]
                for inst in gpu}

    # -- refresh: billed spend ---------------------------------------------------------
    def _refresh_cost(self, session, cache: SharedCache, account: str, cfg: _Config, now: float,
                      notes: list[str]) -> _Part:
        """Refresh Cost Explorer data under the cost cache's lock; count every request made."""
        with cache.session() as state:
            notes.extend(state.notes)
            data = state.data
            if not state.writable:
                # Without a cache every scan would buy a Cost Explorer request: refuse, serve what is on disk.
                return _Part(data or None, {"kind": "nocache", "text": (
                    "Cost Explorer was not queried because its cache cannot be saved in the state folder "
                    f"{self.ctx.state_path} (see the note); without a cache every scan would cost $0.01.")})
            if data and not ce_cache.due(data, cfg.ce_ttl_s, CE_BACKOFF_S, cfg.ce_ttl_s, now):
                return _Part(data)  # another sensor refreshed the shared cache while this one waited
            today = sm.utc_day(now)
            # One cap per account and UTC day over every query (families, refresh interval):
            # distinct parameters open distinct cost caches, never more Cost Explorer spend.
            cap = SharedCache(self.ctx.state_path, {"kind": "ce_cap", "account": account})
            with cap.session() as capped:
                used = ce_cache.requests_today(capped.data, today.isoformat())
                if used + ce_cache.CE_REQUESTS_PER_REFRESH > ce_cache.CE_DAILY_REQUEST_CAP or not capped.writable:
                    return _Part(data or None, {"kind": "capped", "text": (
                        f"Cost Explorer was not queried: this account's daily cap of "
                        f"{ce_cache.CE_DAILY_REQUEST_CAP} requests ($0.01 each) is reached; it resets at 00:00 UTC.")})
                error, sent = self._query_cost(session, data, cfg, account, today, now, notes)
                ce_cache.count_requests(capped.data, today.isoformat(), sent)
            return _Part(data, error)

    def _query_cost(self, session, data: dict, cfg: _Config, account: str, today, now: float,
                    notes: list[str]):
        """Ask Cost Explorer (and Budgets) once; return the error (or None) and the requests sent."""
        from prtg_ai.backends.aws import AwsError

        daily = data.get("daily") or {}
        start, end = sm.query_window(today, daily)
        before = session.sent("ce")
        error = None
        try:
            fetched = sm.parse_daily(session.cost_and_usage(start, end, cfg.families, sm.COST_METRIC))
            data["daily"] = sm.merge_daily(daily, fetched, today)
            data["fetched_at"] = now
            data["queried"] = [start.isoformat(), end.isoformat()]
            if (data.get("forecast") or {}).get("day") != today.isoformat():
                # Once a day: the forecast moves slowly and costs another $0.01.
                try:
                    usd = session.cost_forecast(today, sm.next_month_start(today), cfg.families,
                                                sm.FORECAST_METRIC)
                    data["forecast"] = {"day": today.isoformat(), "usd": usd}
                except AwsError as exc:
                    if not exc.transient:
                        raise
                    notes.append(f"{exc.problem} The projection is the sensor's own until the next refresh.")
            try:
                data["budgets"] = sm.compact_budgets(session.budgets(account))
                data.pop("budgets_problem", None)
            except AwsError as exc:
                data["budgets_problem"] = exc.message()  # optional: reported only when a budget is asked for
            ce_cache.clear_failure(data)
        except AwsError as exc:
            self.log.warning("Cost Explorer refresh failed (%s): %s", exc.kind, exc.message())
            ce_cache.record_failure(data, now, exc.kind, exc.message())
            error = exc
        except ValueError as exc:  # a non-USD or malformed amount
            self.log.warning("Cost Explorer answer unusable: %s", exc)
            ce_cache.record_failure(data, now, "failed", f"Cost Explorer answer unusable: {exc}.")
            error = data["failure"]
        finally:
            ce_cache.count_requests(data, today.isoformat(), session.sent("ce") - before)
        return error, session.sent("ce") - before

    # -- evaluate and summarise ------------------------------------------------------
    def _build(self, cfg: _Config, now: float, live: _Part, cost: _Part, notes: list[str]) -> SensorResult:
        has_live, has_cost = usable_parts(live, cost, "AWS")
        result = SensorResult()
        burn = self._live_channels(result, live, now) if has_live else None
        self._auto_stop_channels(result, now)
        summary = []
        if burn is not None:
            extra = f", {burn.accelerators} AI accelerators" if burn.accelerators else ""
            summary.append(f"{burn.instances} GPU instances ({burn.gpus:g} GPUs{extra}) at ${burn.burn:,.2f}/h, "
                           f"{burn.idle} idle (${burn.idle_burn:,.2f}/h)")
        if has_cost:
            summary.append(self._cost_channels(result, cfg, cost.data, now, burn))
        elif cost.data:
            result.add(self.channel("ce_requests_today",
                                    ce_cache.requests_today(cost.data, sm.utc_day(now).isoformat())))
        result.text = "; ".join(s for s in summary if s)
        closing_notes(result, now, (("Instance data", "instance data", live, has_live),
                                    ("Cost Explorer data", "cost explorer data", cost, has_cost)),
                      notes, lambda name, data: _retry_hint(data, cfg, now, name == "Cost Explorer data"))
        return result

    def _live_channels(self, result: SensorResult, live: _Part, now: float) -> sm.Burn:
        burn = sm.Burn.from_json(live.data["burn"])
        result.add(self.channel("running_instances", burn.instances))
        result.add(self.channel("spot_instances", burn.spot))
        result.add(self.channel("gpus", round(burn.gpus, 3)))
        result.add(self.channel("accelerators", burn.accelerators))
        result.add(self.channel("burn_rate", round(burn.burn, 4)))
        result.add(self.channel("idle_instances", burn.idle))
        result.add(self.channel("idle_burn", round(burn.idle_burn, 4)))
        result.add(self.channel("unpriced_instances", burn.unpriced))
        result.add(self.channel("live_data_age", int(round(ce_cache.age_s(live.data["fetched_at"], now) or 0))))
        if burn.unpriced:
            result.note(f"No price found for {', '.join(burn.unpriced_types[:5])}: the burn rate leaves "
                        f"{burn.unpriced} instance(s) out")
        if burn.unknown:
            result.note(f"{burn.unknown} GPU instance(s) have no CloudWatch data in the idle window and were "
                        "not assessed for idleness")
        return burn

    def _auto_stop_channels(self, result: SensorResult, now: float) -> None:
        """What ``prtg-ai act stop-idle-gpus`` stopped today on this host (its small daily file, no AWS call)."""
        from prtg_ai.core.auto_stopped import today_totals

        count, usd = today_totals(self.ctx.state_path, now)
        result.add(self.channel("auto_stopped_today", count))
        result.add(self.channel("burn_avoided", round(usd, 4)))

    def _cost_channels(self, result: SensorResult, cfg: _Config, data: dict, now: float,
                       burn: sm.Burn | None) -> str:
        today = sm.utc_day(now)
        daily = data.get("daily") or {}
        mtd = sm.month_to_date(daily, today)
        yesterday = sm.day_amount(daily, today - timedelta(days=1))
        hour = (now % 86400.0) / 3600.0
        projected, source = sm.project_month_end(daily, today, data.get("forecast"),
                                                 burn.burn if burn is not None else None, hour)
        result.add(self.channel("mtd_spend", round(mtd, 2)))
        if yesterday is not None:
            result.add(self.channel("yesterday_spend", round(yesterday, 2)))
        if projected is not None:
            result.add(self.channel("projected_spend", round(projected, 2)))
            result.add(self.channel("projection_source", source))
        self._budget_channels(result, cfg, data, mtd, projected)
        age_h = (ce_cache.age_s(data["fetched_at"], now) or 0.0) / 3600.0
        refresh_h = cfg.ce_ttl_s / 3600.0
        result.add(self.channel("cost_data_age", round(age_h, 3), limitmaxwarning=round(2 * refresh_h, 3),
                                limitmaxerror=round(max(48.0, 4 * refresh_h), 3)))
        per_day = math.ceil(24.0 / refresh_h) + 1  # refreshes plus the daily forecast
        result.add(self.channel("ce_requests_today", ce_cache.requests_today(data, today.isoformat()),
                                limitmaxwarning=2 * per_day + 2))
        text = f"GPU spend this month ${mtd:,.2f}"
        if projected is not None:
            text += f", projected ${projected:,.2f} ({_SOURCE_TEXT[source]})"
        return text + f"; cost data {age_h:.1f} h old"

    def _budget_channels(self, result: SensorResult, cfg: _Config, data: dict, mtd: float,
                         projected: float | None) -> None:
        if cfg.budget:
            used, ahead = sm.percent(mtd, cfg.budget), sm.percent(projected, cfg.budget)
        else:
            budgets = data.get("budgets") or []
            chosen = sm.pick_budget(budgets, cfg.budget_name)
            if chosen is None:
                if cfg.budget_name:
                    known = ", ".join(b["name"] for b in budgets[:5]) or "none"
                    problem = data.get("budgets_problem")
                    result.note(problem if problem else
                                f"AWS Budget {cfg.budget_name!r} not found (monthly cost budgets: {known})")
                return
            used = sm.percent(chosen.get("actual"), chosen["limit"])
            ahead = sm.percent(chosen.get("forecast"), chosen["limit"])
            result.note(f"Budget: AWS Budget {chosen['name']!r} (${chosen['limit']:,.2f} a month, its own scope)")
        if used is not None:
            result.add(self.channel("budget_used", round(used, 2)))
        if ahead is not None:
            result.add(self.channel("budget_projected", round(ahead, 2)))


def _other_cloud(sensor: GpuSpendSensor, cloud: str) -> SensorResult:
    """Azure and Google Cloud: the same channels from ``prtg_ai.gpu_spend`` (imported only for them)."""
    from prtg_ai.gpu_spend import cloud_engine as engine

    if cloud == "azure":
        from prtg_ai.gpu_spend.azure import Provider
    else:
        from prtg_ai.gpu_spend.gcp import Provider
    return engine.run(sensor, Provider(sensor))


def _fresh_entry(entry: dict | None, ttl_s: float, now: float) -> bool:
    return bool(entry) and -ce_cache.CLOCK_SKEW_S <= now - float(entry.get("at", -1e18)) < ttl_s


def _trim(entries: dict) -> None:
    """Keep a catalogue file bounded: drop the oldest entries beyond MAX_CATALOG_ENTRIES."""
    if len(entries) > MAX_CATALOG_ENTRIES:
        for key in sorted(entries, key=lambda k: float(entries[k].get("at", 0)))[:len(entries) - MAX_CATALOG_ENTRIES]:
            del entries[key]


def usable_parts(live, cost, cloud: str) -> tuple[bool, bool]:
    """(live data present, cost data present); raises when access is denied or there is no data at all.

    Shared by every cloud (``cloud_engine``): a denial or missing credentials is the
    answer whatever the cache holds; stale data is served with its age.
    """
    for part in (live, cost):
        if part.error is not None and _kind(part.error) in ("denied", "credentials"):
            raise SensorError(error_text(part.error))
    has_live = bool(live.data and live.data.get("fetched_at") is not None and "burn" in live.data)
    has_cost = bool(cost.data and cost.data.get("fetched_at") is not None)
    if not has_live and not has_cost:
        texts = [error_text(p.error) for p in (live, cost) if p.error is not None]
        raise SensorError(" ".join(dict.fromkeys(texts)) or f"No {cloud} data yet.",
                          "" if texts else "The first refresh has not completed; check the log.")
    return has_live, has_cost


def _kind(error) -> str:
    return error.get("kind", "failed") if isinstance(error, dict) else getattr(error, "kind", "failed")


def error_text(error) -> str:
    return str(error.get("text", "")) if isinstance(error, dict) else error.message()


def closing_notes(result: SensorResult, now: float, parts, notes: list[str], hint=None) -> None:
    """The notes every cloud's summary ends with (shared by ``cloud_engine``).

    ``parts``: (name, how the served data is called, part, usable), live data first.
    A failed part still usable is served with its error and age (``hint(name, data)``
    may add when the next attempt is); a failed part without data is a warning. Then
    ``notes`` of this scan and the live data's own notes.
    """
    for name, served, part, has in parts:
        if part.error is None:
            continue
        if has:
            age = _age_words(ce_cache.age_s(float(part.data["fetched_at"]), now))
            retry = hint(name, part.data) if hint is not None else ""
            result.note(f"{error_text(part.error)} Serving {served} fetched {age} ago{retry}")
        else:
            result.warning = True
            result.note(f"{name} unavailable: {error_text(part.error)}")
    live, has_live = parts[0][2], parts[0][3]
    for note in notes + list((live.data or {}).get("notes", []) if has_live else []):
        result.note(note)


def _age_words(seconds: float | None) -> str:
    seconds = seconds or 0.0
    if seconds >= 5400:
        return f"{seconds / 3600.0:.1f} h"
    return f"{max(1, round(seconds / 60.0))} min"


def _retry_hint(data: dict, cfg: _Config, now: float, is_cost: bool) -> str:
    base, cap = (CE_BACKOFF_S, cfg.ce_ttl_s) if is_cost else (max(60.0, cfg.live_ttl_s), LIVE_BACKOFF_MAX_S)
    when = ce_cache.next_attempt_at(data, base, cap)
    if when is None:
        return ""
    return f"; next attempt in {format_duration(max(60, int(round((when - now) / 60.0)) * 60))}"


class _Families:
    """The one part of the sensor's configuration the type/price catalogue reads."""

    def __init__(self, families):
        self.families = list(families)


def type_catalog(ctx, session, region: str, instances: list[dict], families, now: float,
                 notes: list[str]) -> tuple[dict, dict[str, float]]:
    """GPU counts per instance type and on-demand $/h of ``region``: the sensor's own catalogue and cache.

    For ``prtg-ai act stop-idle-gpus``, so "GPU instance" and "price" mean exactly what
    they mean for this sensor, and whichever of the two refreshes the shared cache first
    saves the other the calls. ``instances`` need ``type`` and ``lifecycle``.
    """
    return GpuSpendSensor(ctx, {})._catalog(session, region, instances, _Families(families), now, notes)
