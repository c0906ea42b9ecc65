"""``gpu_spend --cloud azure``: N-series GPU spend from Cost Management, the fleet from Compute.

Reads (through ``prtg_ai.backends.azure``, the only ``azure.identity`` user):

* billed spend: Cost Management ``query`` (daily ``Cost`` of MeterCategory ``Virtual
  Machines`` grouped by MeterSubCategory; the GPU series are picked by
  ``GPU_SERIES``: NC, ND, NV, NG), ``forecast`` for the rest of the month, Consumption
  ``budgets``. At subscription, resource-group or management-group scope. Cost
  Management is throttled per tenant (``x-ms-ratelimit-microsoft.costmanagement-*``)
  and its data lags by hours: the shared cost cache is refreshed at most every
  ``--ce-refresh-hours`` (default 6), a 429 is honoured with its retry-after, and
  the newest day the data covers is tracked so lag is not reported as zero spend.
* now: VMs of the subscription with their power state (``statusOnly=true``), N-series
  sizes -> GPUs from ``azure_sizes.csv`` (fractional NVads A10 v5 / NVv4 count their
  share), Retail Prices (Linux pay-as-you-go, Spot for Spot VMs; cached a day) and
  Azure Monitor ``Percentage CPU`` (and a guest GPU metric where one is sent) over
  ``--idle-window`` for idle VMs.

Needs: an identity ``DefaultAzureCredential`` finds, with the custom role
``installer/assets/iam/prtg-ai-gpu-spend-azure-role.json``; a writable state folder.
Amounts must be in USD (the channels' unit); a billing account in another currency
is reported as an error, not converted.
"""

from __future__ import annotations

import re

from prtg_ai.core.errors import ConfigError
from prtg_ai.gpu_spend import cloud_engine as engine
from prtg_ai.gpu_spend import cloud_params as cp
from prtg_ai.gpu_spend import spend_model as sm
from prtg_ai.gpu_spend.ce_cache import SharedCache
from prtg_ai.gpu_spend.dates import date, datetime, timedelta, timezone

COST_CATEGORIES = ["Virtual Machines"]
# MeterSubCategory of GPU VM series ("NCads A100 v4 Series", "NDv2 Series", "NVadsA10 v5 Series Windows"...).
# (Strings, compiled on first use by ``re``'s cache: a cache hit must not pay for them.)
GPU_SERIES = r"(?i)^N[CDVG]"
GPU_SIZE = r"(?i)^Standard_N[CDVG]"
SAFE_NAME = r"^[A-Za-z0-9_]{1,80}\Z"  # sizes and regions that may enter a price filter
RUNNING = ("running", "starting")
PRICE_TTL_S = 86400.0
MAX_ASSESSED = 50   # VMs whose metrics are read per refresh: two Monitor calls each
MAX_PRICED = 40     # (region, size) price look-ups per refresh
SIZES_FILE = "azure_sizes.csv"  # beside this module


def gpu_sizes() -> dict[str, float]:
    """Size name (lower case) -> GPUs per VM, from ``azure_sizes.csv``."""
    from prtg_ai.data import package_rows

    return {row["size"].lower(): float(row["gpus"]) for row in package_rows(__package__, SIZES_FILE)}


def parse_cost_rows(answer: dict) -> tuple[dict[str, dict], date | None, list[str]]:
    """Cost Management query columns/rows -> (GPU USD per day, newest day with any row, GPU subcategories).

    ``UsageDate`` is a number ``YYYYMMDD`` (or an ISO string in some API versions);
    the cost column is ``Cost`` / ``PreTaxCost``. A currency other than USD is refused.
    """
    names = [str(c.get("name", "")) for c in answer.get("columns") or []]
    lower = [n.lower() for n in names]

    def col(*candidates):
        for c in candidates:
            if c.lower() in lower:
                return lower.index(c.lower())
        return None

    i_cost = col("Cost", "PreTaxCost", "CostUSD", "PreTaxCostUSD")
    i_day, i_sub, i_cur = col("UsageDate"), col("MeterSubCategory"), col("Currency")
    if i_cost is None or i_day is None:
        raise ValueError("the answer has no cost or UsageDate column")
    daily: dict[str, dict] = {}
    newest, seen = None, set()
    for row in answer.get("rows") or []:
        day = _day(row[i_day])
        if i_cur is not None and str(row[i_cur] or "USD").upper() != "USD":
            raise ValueError(f"Cost Management answered in {str(row[i_cur])[:8]}, not USD")
        newest = day if newest is None or day > newest else newest
        sub = str(row[i_sub]) if i_sub is not None else ""
        if i_sub is not None and not re.match(GPU_SERIES, sub):
            continue
        usd = float(row[i_cost])
        if usd != usd or usd in (float("inf"), float("-inf")):
            raise ValueError("Cost Management answered a non-finite amount")
        seen.add(sub)
        entry = daily.setdefault(day.isoformat(), {"usd": 0.0, "estimated": False})
        entry["usd"] = round(entry["usd"] + usd, 6)
    return daily, newest, sorted(s for s in seen if s)


def _day(value) -> date:
    text = str(value)
    if text.isdigit() and len(text) == 8:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    return date.fromisoformat(text[:10])


def forecast_total(answer: dict, start: date, end: date) -> float | None:
    names = [str(c.get("name", "")).lower() for c in answer.get("columns") or []]
    i_cost = next((names.index(n) for n in ("cost", "pretaxcost", "costusd") if n in names), None)
    i_day = names.index("usagedate") if "usagedate" in names else None
    i_status = names.index("coststatus") if "coststatus" in names else None
    i_cur = names.index("currency") if "currency" in names else None
    if i_cost is None:
        return None
    total, found = 0.0, False
    for row in answer.get("rows") or []:
        if i_status is not None and str(row[i_status]).lower() != "forecast":
            continue
        if i_cur is not None and str(row[i_cur] or "USD").upper() != "USD":
            raise ValueError(f"Cost Management forecast answered in {str(row[i_cur])[:8]}, not USD")
        if i_day is not None and not (start <= _day(row[i_day]) <= end):
            continue
        total += float(row[i_cost])
        found = True
    return round(total, 6) if found else None


def compact_budgets(raw: list[dict]) -> list[dict]:
    """Consumption budgets -> the shared shape (monthly cost budgets only)."""
    out = []
    for b in raw[:100]:
        props = b.get("properties") or {}
        if str(props.get("category", "Cost")) != "Cost" or str(props.get("timeGrain", "Monthly")) != "Monthly":
            continue
        try:
            limit = float(props["amount"])
        except (KeyError, TypeError, ValueError):
            continue

        def amount(key):
            spend = props.get(key) or {}
            if spend.get("amount") is None or str(spend.get("unit", "USD")).upper() != "USD":
                return None
            return float(spend["amount"])
        out.append({"name": str(b.get("name", "")), "limit": limit, "actual": amount("currentSpend"),
                    "forecast": amount("forecastSpend")})
    return out


def retail_price(items: list[dict], spot: bool) -> float | None:
    """Linux pay-as-you-go (or Spot) $/h among Retail Prices items; the cheapest match, never Windows."""
    prices = []
    for item in items:
        sku = str(item.get("skuName", ""))
        if str(item.get("type", "")) != "Consumption" or str(item.get("currencyCode", "USD")) != "USD":
            continue
        if str(item.get("productName", "")).endswith("Windows") or "Low Priority" in sku:
            continue
        if str(item.get("unitOfMeasure", "1 Hour")) != "1 Hour" or sku.endswith(" Spot") != spot:
            continue
        try:
            price = float(item.get("retailPrice", item.get("unitPrice")))
        except (TypeError, ValueError):
            continue
        if price > 0:
            prices.append(price)
    return min(prices) if prices else None


class Provider(engine.ProviderBase):
    label = "Azure"
    cost_source = "Cost Management"
    instance_word = "VM"
    has_idle = True
    requests_per_refresh = 1
    extra_counters: tuple = ()

    @staticmethod
    def _config(v) -> dict:
        sub = (v.get("subscription") or "").strip()
        if not cp.is_subscription(sub):
            raise ConfigError("subscription", "give the Azure subscription id (a GUID) with --cloud azure"
                              if not sub else "is not a subscription id (a GUID)")
        rg = (v.get("resource_group") or "").strip() or None
        if rg and not cp.is_group_name(rg):
            raise ConfigError("resource_group", "is not a resource group name")
        mg = (v.get("management_group") or "").strip() or None
        if mg and not cp.is_group_name(mg):
            raise ConfigError("management_group", "is not a management group id")
        if rg and mg:
            raise ConfigError("management_group", "give either --resource-group or --management-group")
        if mg:
            scope = f"/providers/Microsoft.Management/managementGroups/{mg}"
        else:
            scope = f"/subscriptions/{sub.lower()}" + (f"/resourceGroups/{rg}" if rg else "")
        return {"subscription": sub.lower(), "resource_group": rg, "scope": scope,
                "budget": v.get("budget"), "budget_name": (v.get("budget_name") or "").strip() or None,
                "cost_ttl_s": float(v["ce_refresh_hours"]) * 3600.0, "live_ttl_s": float(v["live_refresh"]),
                "idle_gpu": float(v["idle_gpu_percent"]), "idle_cpu": float(v["idle_cpu_percent"]),
                "idle_window_s": float(v["idle_window"])}

    def _cred(self) -> str:
        return engine.credential_fingerprint(self.env, cp.AZURE_CREDENTIAL_ENV)

    def cost_identity(self) -> dict:
        return {"kind": "cost", "cloud": "azure", "scope": self.cfg["scope"].lower(), "cred": self._cred()}

    def live_identity(self) -> dict:
        c = self.cfg
        return {"kind": "live", "cloud": "azure", "sub": c["subscription"], "rg": (c["resource_group"] or "").lower(),
                "idle": [c["idle_gpu"], c["idle_cpu"], c["idle_window_s"]], "cred": self._cred()}

    def open(self):
        from prtg_ai.backends.azure import Azure  # requests and azure-identity load only on this path

        session = Azure(self.env)
        session.cost_requests = lambda: session.sent("costmanagement")
        return session

    # -- billed spend -----------------------------------------------------------
    def refresh_cost(self, session, data: dict, today: date, notes: list[str]) -> None:
        from prtg_ai.backends.cloud_http import CloudError

        scope = self.cfg["scope"]
        daily = data.get("daily") or {}
        start, end = sm.query_window(today, daily)
        answer = session.cost_query(scope, start, end - timedelta(days=1), COST_CATEGORIES)
        fetched, newest, subcats = parse_cost_rows(answer)
        # Days of the window the answer does not name cost nothing (or are not billed yet: see "through").
        kept = {d: v for d, v in daily.items() if d < start.isoformat()}
        data["daily"] = sm.merge_daily(kept, fetched, today)
        old = data.get("through")
        if newest is not None and (old is None or newest.isoformat() > old):
            data["through"] = newest.isoformat()
        data["subcategories"] = sorted(set(data.get("subcategories") or []) | set(subcats))[:50]
        data["queried"] = [start.isoformat(), end.isoformat()]
        through = date.fromisoformat(data["through"]) if data.get("through") else None
        basis = today if through is None or through >= today else through + timedelta(days=1)
        month_end = sm.next_month_start(today) - timedelta(days=1)
        if (data.get("forecast") or {}).get("asked") != today.isoformat() and data["subcategories"] \
                and sm.month_start(basis) == sm.month_start(today):
            try:
                usd = forecast_total(session.cost_forecast(scope, basis, month_end, COST_CATEGORIES,
                                                           data["subcategories"]), basis, month_end)
                data["forecast"] = {"day": basis.isoformat(), "usd": usd, "asked": today.isoformat()} \
                    if usd is not None else {"asked": today.isoformat()}
            except CloudError as exc:
                if not exc.transient:
                    raise
                notes.append(f"{exc.problem} The projection is the sensor's own until the next refresh.")
        try:
            data["budgets"] = compact_budgets(session.budgets(scope))
            data.pop("budgets_problem", None)
        except CloudError as exc:
            data["budgets_problem"] = exc.message()

    # -- now -------------------------------------------------------------------------
    def refresh_live(self, session, now: float, notes: list[str]) -> sm.Burn:
        from prtg_ai.backends.azure import GPU_METRIC, GPU_METRIC_NAMESPACE
        from prtg_ai.backends.cloud_http import CloudError

        c = self.cfg
        sizes = gpu_sizes()
        vms = [vm for vm in session.virtual_machines(c["subscription"], c["resource_group"])
               if vm["power"] in RUNNING and re.match(GPU_SIZE, vm["size"])]
        prices = self._prices(session, vms, now, notes)
        states: dict[str, str] = {}
        end = datetime.fromtimestamp(now, tz=timezone.utc)
        start = end - timedelta(seconds=c["idle_window_s"])
        for vm in vms[:MAX_ASSESSED]:
            try:
                cpu = session.metric_averages(vm["id"], start, end, "Percentage CPU")
            except CloudError as exc:
                if not exc.transient and exc.kind != "failed":
                    raise
                notes.append(f"{exc.problem} Idle VMs were not assessed.")
                break
            try:
                gpu = session.metric_averages(vm["id"], start, end, GPU_METRIC, GPU_METRIC_NAMESPACE)
            except CloudError:
                gpu = []  # no guest GPU metric for this VM: CPU decides
            states[vm["id"]] = sm.classify_idle(gpu, cpu, c["idle_gpu"], c["idle_cpu"])[0]
        rows = []
        for vm in vms:
            gpus = sizes.get(vm["size"].lower())
            if gpus is None:
                notes.append(f"{vm['size']} is not in the GPU size catalogue: its GPUs are not counted")
            rows.append({"id": vm["id"], "type": vm["size"], "spot": vm["spot"], "gpus": gpus or 0.0,
                         "accelerators": 0, "price": prices.get((vm["location"], vm["size"], vm["spot"])),
                         "state": states.get(vm["id"], sm.UNKNOWN)})
        return sm.summarise(rows)

    def _prices(self, session, vms: list[dict], now: float, notes: list[str]) -> dict:
        from prtg_ai.backends.cloud_http import CloudError

        cache = SharedCache(self.sensor.ctx.state_path, {"kind": "catalog", "cloud": "azure"})
        out = {}
        with cache.session() as state:
            prices = state.data.setdefault("prices", {})
            asked = 0
            for key in sorted({(vm["location"], vm["size"], vm["spot"]) for vm in vms}):
                region, size, spot = key
                if not (re.match(SAFE_NAME, region) and re.match(SAFE_NAME, size)):
                    continue
                name = f"{region}|{size}|{'spot' if spot else 'payg'}"
                entry = prices.get(name)
                if not (entry and 0 <= now - float(entry.get("at", -1e18)) < PRICE_TTL_S) and asked < MAX_PRICED:
                    asked += 1
                    try:
                        entry = {"usd": retail_price(session.retail_prices(region, size), spot), "at": now}
                        prices[name] = entry
                    except CloudError as exc:
                        notes.append(f"{exc.problem} Older prices are kept.")
                        break
                if entry and entry.get("usd") is not None:
                    out[key] = float(entry["usd"])
            if len(prices) > 400:
                for k in sorted(prices, key=lambda k: prices[k].get("at", 0))[:len(prices) - 400]:
                    del prices[k]
        return out

