"""``gpu_spend --cloud gcp``: GPU/TPU spend from the BigQuery billing export, the fleet from Compute and TPU.

Reads (through ``prtg_ai.backends.gcp``, the only ``google.auth`` user):

* billed spend: one BigQuery query of ``--billing-table`` per refresh, reading only the
  partitions needed (``_PARTITIONTIME`` from the day before the query window:
  a day's rows are exported on that day or later) and only five columns
  (``usage_start_time``, ``sku.description``, ``cost``, ``currency_conversion_rate``;
  ``_PARTITIONTIME`` is free). GPU/TPU SKUs are picked by ``SKU_PATTERN``; amounts are
  converted to USD with the row's ``currency_conversion_rate``. Every query carries
  ``maximumBytesBilled`` (``--max-billed-gb``) and its ``totalBytesBilled`` is
  counted (channel ``BigQuery MB Billed Today``). Google has no forecast API: the
  projection is the sensor's own. Budgets (``--billing-account``) give an amount only.
* now: running Compute Engine instances with accelerators (``guestAccelerators``; the
  A2/A3/G2 machine types' built-in GPUs from their names when absent) and TPU nodes,
  priced from the Cloud Billing Catalog (Compute Engine and Cloud TPU SKUs, cached a
  day): accelerators only, the VM's vCPUs and memory are not included.

Idle evidence is not read for Google Cloud (Cloud Monitoring is not queried): the
idle channels are omitted with a note.
"""

from __future__ import annotations

import re

from prtg_ai.core.errors import ConfigError
from prtg_ai.gpu_spend import cloud_engine as engine
from prtg_ai.gpu_spend import cloud_params as cp
from prtg_ai.gpu_spend import spend_model as sm
from prtg_ai.gpu_spend.ce_cache import SharedCache
from prtg_ai.gpu_spend.dates import date

# UNCONFIRMED: billing SKU descriptions of accelerators and accelerator-optimised machine types
# ("Nvidia Tesla A100 GPU running in Americas", "A3 Instance Core running in ...", "TPU v5e ...").
SKU_PATTERN = r"(?i)(\bGPU\b|\bTPU\b|^(A2|A3|A4|G2|G4) )"
COMPUTE_SERVICE = "6F81-5844-456A"     # Compute Engine in the Cloud Billing Catalog
TPU_SERVICE = "E000-3F24-B8AA"         # UNCONFIRMED: Cloud TPU's service id in the catalogue
PRICE_TTL_S = 86400.0
ACCELERATORS_FILE = "gcp_accelerators.csv"  # beside this module
# Machine types with built-in GPUs: (pattern, accelerator type, GPUs from the name's number or a table).
_BUILT_IN = (  # patterns as strings: compiled on first use (a cache hit never needs them)
    (r"^a2-highgpu-(\d+)g$", "nvidia-tesla-a100"),
    (r"^a2-megagpu-(\d+)g$", "nvidia-tesla-a100"),
    (r"^a2-ultragpu-(\d+)g$", "nvidia-a100-80gb"),
    (r"^a3-highgpu-(\d+)g$", "nvidia-h100-80gb"),
    (r"^a3-megagpu-(\d+)g$", "nvidia-h100-mega-80gb"),
    (r"^a3-ultragpu-(\d+)g$", "nvidia-h200-141gb"),
)
_G2_GPUS = {"4": 1, "8": 1, "12": 1, "16": 1, "32": 1, "24": 2, "48": 4, "96": 8}
_TPU_TYPE = r"^(v\d+[a-z]*|v5litepod)-(\d+)$"

QUERY = """SELECT FORMAT_DATE('%Y-%m-%d', DATE(usage_start_time)) AS day,
  SUM(IF(REGEXP_CONTAINS(sku.description, @sku_pattern), cost / currency_conversion_rate, 0)) AS gpu_usd,
  COUNT(*) AS billing_rows
FROM `{table}`
WHERE _PARTITIONTIME >= TIMESTAMP(DATE_SUB(@start, INTERVAL 1 DAY))
  AND usage_start_time >= TIMESTAMP(@start) AND usage_start_time < TIMESTAMP(@end)
GROUP BY day"""


def accelerators() -> dict[str, dict]:
    from prtg_ai.data import package_rows

    return {row["type"]: {"kind": row["kind"], "sku": row["sku"], "per_unit": float(row["chips_per_unit"])}
            for row in package_rows(__package__, ACCELERATORS_FILE)}


def instance_gpus(instance: dict) -> list[tuple[str, int]]:
    """(accelerator type, count) of an instance: ``guestAccelerators``, else the machine type's built-in GPUs."""
    out = []
    for acc in instance.get("guestAccelerators") or []:
        kind = str(acc.get("acceleratorType", "")).rsplit("/", 1)[-1]
        out.append((kind, int(acc.get("acceleratorCount") or 0)))
    if out:
        return out
    machine = str(instance.get("machineType", "")).rsplit("/", 1)[-1]
    for pattern, kind in _BUILT_IN:
        m = re.match(pattern, machine)
        if m:
            return [(kind, int(m.group(1)))]
    m = re.match(r"^g2-standard-(\d+)$", machine)
    if m and m.group(1) in _G2_GPUS:
        return [("nvidia-l4", _G2_GPUS[m.group(1)])]
    return []


def sku_price(skus: list[dict], keyword: str, region: str, spot: bool) -> float | None:
    """$/h of the SKU whose description starts with ``keyword`` in ``region`` (OnDemand, or Preemptible for spot)."""
    prices = []
    for sku in skus:
        desc = str(sku.get("description", ""))
        usage = str((sku.get("category") or {}).get("usageType", ""))
        if not desc.startswith(keyword) or "Commitment" in desc or region not in (sku.get("serviceRegions") or []):
            continue
        if usage != ("Preemptible" if spot else "OnDemand"):
            continue
        # "Nvidia Tesla A100 GPU" must not match "Nvidia Tesla A100 80GB GPU".
        rest = desc[len(keyword):]
        if rest and not rest.startswith(" "):
            continue
        for info in sku.get("pricingInfo") or []:
            expr = info.get("pricingExpression") or {}
            if expr.get("usageUnit") != "h":
                continue
            for rate in expr.get("tieredRates") or []:
                price = rate.get("unitPrice") or {}
                if price.get("currencyCode", "USD") != "USD":
                    continue
                usd = int(price.get("units") or 0) + int(price.get("nanos") or 0) / 1e9
                if usd > 0:
                    prices.append(usd)
    return min(prices) if prices else None


def parse_days(answer: dict) -> tuple[dict[str, dict], date | None]:
    """Query rows -> (GPU USD per day, newest day with any billing row)."""
    fields = answer["fields"]
    if not {"day", "gpu_usd", "billing_rows"} <= set(fields):
        raise ValueError("the billing query answered other columns")
    i_day, i_usd, i_rows = fields.index("day"), fields.index("gpu_usd"), fields.index("billing_rows")
    daily, newest = {}, None
    for row in answer["rows"]:
        day = date.fromisoformat(str(row[i_day]))
        usd = float(row[i_usd] or 0.0)
        if usd != usd or usd in (float("inf"), float("-inf")):
            raise ValueError("BigQuery answered a non-finite amount")
        if int(row[i_rows] or 0) > 0:
            newest = day if newest is None or day > newest else newest
        if usd:
            daily[day.isoformat()] = {"usd": round(usd, 6), "estimated": False}
    return daily, newest


def compact_budgets(raw: list[dict]) -> list[dict]:
    """Billing Budget API budgets -> the shared shape (amount only: Google reports no spend here)."""
    out = []
    for b in raw[:100]:
        spec = ((b.get("amount") or {}).get("specifiedAmount")) or {}
        if not spec or str(spec.get("currencyCode", "USD")) != "USD":
            continue  # lastPeriodAmount budgets and other currencies have no USD limit to compare with
        limit = int(spec.get("units") or 0) + int(spec.get("nanos") or 0) / 1e9
        if limit > 0:
            out.append({"name": str(b.get("displayName") or b.get("name", "")), "limit": limit, "actual": None,
                        "forecast": None})
    return out


class Provider(engine.ProviderBase):
    label = "Google Cloud"
    cost_source = "BigQuery billing export"
    instance_word = "instance"
    has_idle = False
    requests_per_refresh = 1
    extra_counters = (("billed", "billed_mb_today"),)

    @staticmethod
    def _config(v) -> dict:
        table = (v.get("billing_table") or "").strip()
        parts = cp.billing_table(table)
        if parts is None:
            raise ConfigError("billing_table", "give the billing export table as PROJECT.DATASET.TABLE with --cloud gcp"
                              if not table else "is not a BigQuery table name PROJECT.DATASET.TABLE")
        projects = list(v.get("project") or ())
        for p in projects:
            if not cp.is_project(p):
                raise ConfigError("project", f"{p[:40]!r} is not a Google Cloud project id")
        account = (v.get("billing_account") or "").strip().upper() or None
        if account and not cp.is_billing_account(account):
            raise ConfigError("billing_account", "is not a billing account id XXXXXX-XXXXXX-XXXXXX")
        return {"table": table, "query_project": parts[0],
                "projects": sorted(set(projects)) or [parts[0]], "billing_account": account,
                "max_bytes": int(float(v["max_billed_gb"]) * 1e9),
                "budget": v.get("budget"), "budget_name": (v.get("budget_name") or "").strip() or None,
                "cost_ttl_s": float(v["ce_refresh_hours"]) * 3600.0, "live_ttl_s": float(v["live_refresh"])}

    def _cred(self) -> str:
        return engine.credential_fingerprint(self.env, cp.GCP_CREDENTIAL_ENV)

    def cost_identity(self) -> dict:
        return {"kind": "cost", "cloud": "gcp", "table": self.cfg["table"], "account": self.cfg["billing_account"],
                "sku": SKU_PATTERN, "cred": self._cred()}

    def live_identity(self) -> dict:
        return {"kind": "live", "cloud": "gcp", "projects": self.cfg["projects"], "cred": self._cred()}

    def open(self):
        from prtg_ai.backends.gcp import Gcp  # requests and google-auth load only on this path

        session = Gcp(self.env)
        session.cost_requests = lambda: session.sent("bigquery")
        return session

    # -- billed spend -------------------------------------------------------------
    def refresh_cost(self, session, data: dict, today: date, notes: list[str]) -> None:
        from prtg_ai.backends.cloud_http import CloudError

        daily = data.get("daily") or {}
        start, end = sm.query_window(today, daily)
        params = [{"name": "start", "parameterType": {"type": "DATE"}, "parameterValue": {"value": start.isoformat()}},
                  {"name": "end", "parameterType": {"type": "DATE"}, "parameterValue": {"value": end.isoformat()}},
                  {"name": "sku_pattern", "parameterType": {"type": "STRING"},
                   "parameterValue": {"value": SKU_PATTERN}}]
        before = session.bytes_billed
        try:
            answer = session.query(self.cfg["query_project"], QUERY.format(table=self.cfg["table"]), params,
                                   self.cfg["max_bytes"])
        finally:
            engine.add_today(data, "billed", today.isoformat(), session.bytes_billed - before)
        fetched, newest = parse_days(answer)
        kept = {d: v for d, v in daily.items() if d < start.isoformat()}
        data["daily"] = sm.merge_daily(kept, fetched, today)
        if newest is not None and (data.get("through") is None or newest.isoformat() > data["through"]):
            data["through"] = newest.isoformat()
        data["queried"] = [start.isoformat(), end.isoformat()]
        data["last_billed"] = answer["billed"]
        notes.append(f"BigQuery billed {answer['billed'] / 1e6:,.1f} MB for this refresh's billing query")
        if self.cfg["billing_account"]:
            try:
                data["budgets"] = compact_budgets(session.budgets(self.cfg["billing_account"]))
                data.pop("budgets_problem", None)
            except CloudError as exc:
                data["budgets_problem"] = exc.message()

    # -- now -------------------------------------------------------------------------
    def refresh_live(self, session, now: float, notes: list[str]) -> sm.Burn:
        from prtg_ai.backends.cloud_http import CloudError

        catalog = accelerators()
        units = []  # (id, label, region, spot, kind, accelerator type, count)
        for project in self.cfg["projects"]:
            for inst in session.instances(project):
                region = str(inst.get("zone", "")).rsplit("/", 1)[-1].rsplit("-", 1)[0]
                sched = inst.get("scheduling") or {}
                spot = str(sched.get("provisioningModel", "")).upper() == "SPOT" or bool(sched.get("preemptible"))
                gpus = instance_gpus(inst)
                if gpus:
                    units.append({"id": f"{project}/{inst.get('name')}",
                                  "label": str(inst.get("machineType", "")).rsplit("/", 1)[-1],
                                  "region": region, "spot": spot, "accs": gpus, "tpu": False})
            try:
                nodes = session.tpu_nodes(project)
            except CloudError as exc:
                if exc.kind == "credentials":
                    raise
                notes.append(f"{exc.problem} TPU nodes are not counted.")
                nodes = []
            for node in nodes:
                if str(node.get("state", "")) not in ("READY", "CREATING", "RESTARTING", "REIMAGING", "REPAIRING"):
                    continue
                m = re.match(_TPU_TYPE, str(node.get("acceleratorType", "")))
                zone = str(node.get("name", "")).split("/locations/")[-1].split("/")[0]
                spot = bool((node.get("schedulingConfig") or {}).get("preemptible") or
                            (node.get("schedulingConfig") or {}).get("spot"))
                if m:
                    units.append({"id": str(node.get("name", "")), "label": m.group(0), "region": zone.rsplit("-", 1)[0],
                                  "spot": spot, "accs": [(m.group(1), int(m.group(2)))], "tpu": True})
        skus = self._skus(session, units, now, notes)
        rows = []
        for u in units:
            gpus, chips, price = 0.0, 0, 0.0
            for kind, count in u["accs"]:
                entry = catalog.get(kind)
                n = count * (entry["per_unit"] if entry else 1.0)
                if u["tpu"]:
                    chips += int(n)
                else:
                    gpus += n
                usd = sku_price(skus.get("tpu" if u["tpu"] else "compute", []), entry["sku"], u["region"], u["spot"]) \
                    if entry else None
                price = None if usd is None or price is None else price + usd * n
            rows.append({"id": u["id"], "type": u["label"], "spot": u["spot"], "gpus": gpus, "accelerators": chips,
                         "price": round(price, 6) if price is not None else None, "state": sm.UNKNOWN})
        return sm.summarise(rows)

    def _skus(self, session, units: list[dict], now: float, notes: list[str]) -> dict[str, list[dict]]:
        """The Compute Engine (and, with TPU nodes, Cloud TPU) SKUs of accelerators, cached a day, kept small."""
        from prtg_ai.backends.cloud_http import CloudError

        catalog = accelerators()
        wanted = {"compute": any(not u["tpu"] for u in units), "tpu": any(u["tpu"] for u in units)}
        cache = SharedCache(self.sensor.ctx.state_path, {"kind": "catalog", "cloud": "gcp"})
        out = {}
        with cache.session() as state:
            for name, service in (("compute", COMPUTE_SERVICE), ("tpu", TPU_SERVICE)):
                entry = state.data.get(name) or {}
                if wanted[name] and not (0 <= now - float(entry.get("at", -1e18)) < PRICE_TTL_S):
                    try:
                        keys = tuple(v["sku"] for v in catalog.values() if (v["kind"] == "tpu") == (name == "tpu"))
                        # Keep only accelerator SKUs: the Compute Engine catalogue has thousands.
                        entry = {"at": now, "skus": [s for s in session.skus(service)
                                                     if str(s.get("description", "")).startswith(keys)]}
                        state.data[name] = entry
                    except CloudError as exc:
                        if exc.kind == "credentials":
                            raise
                        notes.append(f"{exc.problem} Older prices are kept.")
                out[name] = entry.get("skus") or []
        return out
