"""A local Azure for ``gpu_spend --cloud azure``: ARM, the App Service managed-identity endpoint, Retail Prices.

One ``ThreadingHTTPServer`` on 127.0.0.1 (port 0) answers, in the request and
response shapes of the public API references (see
``tests/testcases/gpu_spend/azure_nseries/SOURCE.md``):

* ``GET /msi/token`` (App Service managed identity, what ``IDENTITY_ENDPOINT`` points
  azure-identity at): ``{"access_token", "expires_on", "resource", "token_type"}``;
* Cost Management ``POST {scope}/providers/Microsoft.CostManagement/query`` and
  ``.../forecast``: ``{"properties": {"nextLink", "columns", "rows"}}``, paged by
  ``$skiptoken`` (the client POSTs the same body to ``nextLink``); the query honours
  the body's time period and MeterCategory filter;
* Consumption ``GET {scope}/providers/Microsoft.Consumption/budgets``;
* Compute ``GET /subscriptions/{id}/providers/Microsoft.Compute/virtualMachines?statusOnly=true``
  (paged by ``nextLink``);
* Monitor ``GET {vm}/providers/Microsoft.Insights/metrics``;
* Retail Prices ``GET /api/retail/prices?$filter=...`` (``Items``, ``NextPageLink``).

ARM routes demand the bearer token the identity endpoint issued (401
``InvalidAuthenticationToken`` otherwise); Retail Prices records whether a token was
sent (it must not be). Faults are queued per operation: ``(status, headers, body)``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import date, datetime, timedelta

from fakes.loopback import ApiFake

TOKEN = "fake-arm-token-7f3e"
COLUMNS_QUERY = [{"name": "Cost", "type": "Number"}, {"name": "UsageDate", "type": "Number"},
                 {"name": "MeterSubCategory", "type": "String"}, {"name": "Currency", "type": "String"}]
COLUMNS_FORECAST = [{"name": "Cost", "type": "Number"}, {"name": "UsageDate", "type": "Number"},
                    {"name": "CostStatus", "type": "String"}, {"name": "Currency", "type": "String"}]


class FakeAzure(ApiFake):
    def __init__(self, scenario: dict):
        self.scenario = scenario
        self._new_log()
        self.lock = threading.Lock()
        self.page_rows = 50
        self.vm_page = 3
        self.price_page = 2
        self.msi_fail = False
        self.link_base = "https://management.azure.com"  # where nextLinks point (ARM's own host)
        self._serve()

    def env(self) -> dict:
        return {"IDENTITY_ENDPOINT": f"{self.url}/msi/token", "IDENTITY_HEADER": "fake-identity-header",
                "PRTG_AI_AZURE_ENDPOINT": self.url, "PRTG_AI_AZURE_PRICES_ENDPOINT": self.url}

    # -- plumbing ------------------------------------------------------------------
    @classmethod
    def send(cls, handler, status: int, doc, headers: dict | None = None):
        cls.send_bytes(handler, status, json.dumps(doc).encode(), "application/json; charset=utf-8", headers or {})

    @staticmethod
    def operation(method: str, path: str) -> str:
        p = path.lower()
        if p.startswith("/msi/token"):
            return "msi"
        if p.endswith("/providers/microsoft.costmanagement/query"):
            return "costmanagement:Query"
        if p.endswith("/providers/microsoft.costmanagement/forecast"):
            return "costmanagement:Forecast"
        if p.endswith("/providers/microsoft.consumption/budgets"):
            return "consumption:Budgets"
        if p.endswith("/providers/microsoft.compute/virtualmachines"):
            return "compute:VirtualMachinesListAll"
        if p.endswith("/providers/microsoft.insights/metrics"):
            return "monitor:MetricsList"
        if p.startswith("/api/retail/prices"):
            return "prices:RetailPrices"
        return f"?:{method} {path}"

    def handle(self, handler, method: str):
        path, query, raw = self.read_request(handler)
        body = json.loads(raw) if raw else None
        op = self.operation(method, path)
        fault = self.log_request(handler, op, method, path, query, body)
        if fault:
            return self.send(handler, fault[0], fault[2], fault[1])
        if op == "msi":
            if self.msi_fail or handler.headers.get("X-IDENTITY-HEADER") != "fake-identity-header":
                return self.send(handler, 400, {"error": "invalid_request",
                                                "error_description": "Identity not found"})
            return self.send(handler, 200, {"access_token": TOKEN, "expires_on": str(int(time.time()) + 3600),
                                            "resource": query.get("resource", ""), "token_type": "Bearer"})
        if op.startswith("prices:"):
            return self.prices(handler, query)
        if handler.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.send(handler, 401, {"error": {"code": "InvalidAuthenticationToken",
                                                      "message": "The access token is invalid."}})
        if op == "costmanagement:Query":
            return self.cost_query(handler, path, query, body)
        if op == "costmanagement:Forecast":
            return self.forecast(handler, body)
        if op == "consumption:Budgets":
            return self.send(handler, 200, {"value": self.scenario.get("budgets", [])})
        if op == "compute:VirtualMachinesListAll":
            return self.vms(handler, path, query)
        if op == "monitor:MetricsList":
            return self.metrics(handler, path, query)
        return self.send(handler, 404, {"error": {"code": "NotFound", "message": "no such route"}})

    # -- Cost Management ------------------------------------------------------------------
    def cost_query(self, handler, path, query, body):
        period = body["timePeriod"]
        start, end = period["from"][:10], period["to"][:10]
        cats = body["dataset"]["filter"]["dimensions"]["values"]
        rows = [[r["cost"], int(r["day"].replace("-", "")), r["sub"], r.get("currency", "USD")]
                for r in self.scenario["costs"] if start <= r["day"] <= end and r["category"] in cats]
        skip = int(query.get("$skiptoken", "0") or 0)
        page = rows[skip:skip + self.page_rows]
        props = {"nextLink": None, "columns": COLUMNS_QUERY, "rows": page}
        if skip + self.page_rows < len(rows):
            props["nextLink"] = (f"{self.link_base}{path}?api-version={query.get('api-version')}"
                                 f"&$skiptoken={skip + self.page_rows}")
        return self.send(handler, 200, {"id": f"{path}/q-0001", "name": "q-0001",
                                        "type": "Microsoft.CostManagement/query", "properties": props},
                         {"x-ms-ratelimit-microsoft.costmanagement-qpu-remaining":
                          "QueriesPerHour:597,QueriesPerMin:57,QueriesPer10Sec:9"})

    def forecast(self, handler, body):
        per_day = self.scenario.get("forecast_per_day")
        start = date.fromisoformat(body["timePeriod"]["from"][:10])
        end = date.fromisoformat(body["timePeriod"]["to"][:10])
        rows = []
        day = start
        while per_day is not None and day <= end:
            rows.append([per_day, int(day.strftime("%Y%m%d")), "Forecast", "USD"])
            day += timedelta(days=1)
        return self.send(handler, 200, {"id": "forecast-0001", "name": "forecast-0001",
                                        "type": "Microsoft.CostManagement/query",
                                        "properties": {"nextLink": None, "columns": COLUMNS_FORECAST, "rows": rows}})

    # -- Compute, Monitor ------------------------------------------------------------------
    def vms(self, handler, path, query):
        assert query.get("statusOnly") == "true"
        docs = []
        for vm in self.scenario["vms"]:
            rid = f"/subscriptions/{self.scenario['subscription']}/resourceGroups/{vm['rg']}/providers/" \
                  f"Microsoft.Compute/virtualMachines/{vm['name']}"
            props = {"hardwareProfile": {"vmSize": vm["size"]}, "provisioningState": "Succeeded",
                     "instanceView": {"statuses": [
                         {"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded"},
                         {"code": f"PowerState/{vm['power']}", "level": "Info",
                          "displayStatus": f"VM {vm['power']}"}]}}
            if vm.get("spot"):
                props.update({"priority": "Spot", "evictionPolicy": "Deallocate"})
            docs.append({"name": vm["name"], "id": rid, "type": "Microsoft.Compute/virtualMachines",
                         "location": vm["location"], "properties": props})
        skip = int(query.get("$skiptoken", "0") or 0)
        page = {"value": docs[skip:skip + self.vm_page]}
        if skip + self.vm_page < len(docs):
            page["nextLink"] = (f"https://management.azure.com{path}?api-version={query.get('api-version')}"
                                f"&statusOnly=true&$skiptoken={skip + self.vm_page}")
        return self.send(handler, 200, page)

    def metrics(self, handler, path, query):
        name = re.search(r"/virtualMachines/([^/]+)/providers", path).group(1)
        vm = next(v for v in self.scenario["vms"] if v["name"] == name)
        metric = query.get("metricnames")
        if query.get("metricnamespace"):
            if vm.get("gpu") is None:
                return self.send(handler, 400, {"code": "BadRequest", "message": "Failed to find metric "
                                                "configuration for provider: Microsoft.Compute"})
            value = vm["gpu"]
        else:
            value = vm.get("cpu")
        start, end = query["timespan"].split("/")
        t0 = datetime.fromisoformat(start.replace("Z", "+00:00"))
        points = [{"timeStamp": (t0 + timedelta(minutes=5 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   **({"average": value} if value is not None else {})} for i in range(6)]
        return self.send(handler, 200, {
            "cost": 0, "timespan": query["timespan"], "interval": "PT5M", "namespace": "Microsoft.Compute/virtualMachines",
            "resourceregion": vm["location"],
            "value": [{"id": f"{path}/{metric}", "type": "Microsoft.Insights/metrics",
                       "name": {"value": metric, "localizedValue": metric}, "unit": "Percent",
                       "timeseries": [{"metadatavalues": [], "data": points}], "errorCode": "Success"}]})

    # -- Retail Prices ---------------------------------------------------------------------
    def prices(self, handler, query):
        flt = query.get("$filter", "")
        sku = re.search(r"armSkuName eq '([^']+)'", flt).group(1)
        region = re.search(r"armRegionName eq '([^']+)'", flt).group(1)
        items = [dict(item, armSkuName=sku, armRegionName=region) for item in
                 self.scenario["prices"].get(f"{region}|{sku}", [])]
        skip = int(query.get("$skip", "0") or 0)
        page = {"BillingCurrency": "USD", "CustomerEntityId": "Default", "CustomerEntityType": "Retail",
                "Items": items[skip:skip + self.price_page], "NextPageLink": None, "Count": 0}
        page["Count"] = len(page["Items"])
        if skip + self.price_page < len(items):
            page["NextPageLink"] = (f"https://prices.azure.com/api/retail/prices?api-version=2023-01-01-preview"
                                    f"&$filter={flt}&$skip={skip + self.price_page}")
        return self.send(handler, 200, page)
