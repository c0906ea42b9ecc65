"""Azure access for ``gpu_spend --cloud azure``: the only module that imports ``azure.identity``.

REST over ``requests`` (``backends/cloud_http.py``) with a token from
``azure-identity``'s ``DefaultAzureCredential`` (environment, workload identity,
managed identity, Azure CLI, ...): the Cost Management, Compute and Monitor SDKs
would add a dozen packages and their import time for six calls. Nothing is imported
before the first call, so a scan answered from the cache never loads either.

Endpoints: Azure Resource Manager ``https://management.azure.com`` (override:
``PRTG_AI_AZURE_ENDPOINT``), the public Retail Prices API ``https://prices.azure.com``
(override: ``PRTG_AI_AZURE_PRICES_ENDPOINT``; needs no credentials and gets none).
The overrides exist for tests and sovereign clouds; they are read from the
process environment only, never from a sensor parameter, so no client of the agent
can send the token elsewhere.

What it calls, and the Azure RBAC action each needs (``RBAC_ACTIONS``; the custom
role ``installer/assets/iam/prtg-ai-gpu-spend-azure-role.json`` grants exactly these):

* Cost Management ``query`` (POST ``{scope}/providers/Microsoft.CostManagement/query``),
  ``forecast``; Consumption ``budgets`` (GET);
* Compute ``virtualMachines`` list with ``statusOnly=true`` (power state, size, priority);
* Monitor ``metrics`` (``Percentage CPU``; the guest GPU metric where an agent sends it);
* Retail Prices (public, unauthenticated).
"""

from __future__ import annotations

import os
from datetime import date, datetime
from urllib.parse import quote

from prtg_ai.backends.cloud_http import MAX_PAGES, CloudClient, CloudError, Http

ARM = "https://management.azure.com"
PRICES = "https://prices.azure.com"
ARM_SCOPE = "https://management.azure.com/.default"
COST_API_VERSION = "2023-03-01"
BUDGET_API_VERSION = "2023-05-01"
COMPUTE_API_VERSION = "2024-07-01"
METRICS_API_VERSION = "2023-10-01"
PRICES_API_VERSION = "2023-01-01-preview"
ROLE_FILE = "installer/assets/iam/prtg-ai-gpu-spend-azure-role.json"
MAX_COST_PAGES = 10   # each page is another throttled Cost Management call
# UNCONFIRMED: the metric name a guest agent publishes GPU utilisation under (Azure has no
# platform GPU metric). A VM without it is judged by Percentage CPU, as on AWS.
GPU_METRIC_NAMESPACE = "azure.vm.linux.guestmetrics"
GPU_METRIC = "nvidia_smi_utilization_gpu"

RBAC_ACTIONS: dict[tuple[str, str], str | None] = {
    ("costmanagement", "Query"): "Microsoft.CostManagement/query/read",
    ("costmanagement", "Forecast"): "Microsoft.CostManagement/forecast/read",
    ("consumption", "Budgets"): "Microsoft.Consumption/budgets/read",
    ("compute", "VirtualMachinesListAll"): "Microsoft.Compute/virtualMachines/read",
    ("monitor", "MetricsList"): "Microsoft.Insights/metrics/read",
    ("prices", "RetailPrices"): None,  # public
}
_NAMES = {"costmanagement": "Cost Management", "consumption": "Consumption", "compute": "Compute",
          "monitor": "Azure Monitor", "prices": "Retail Prices"}


def credential_status() -> tuple[bool, str]:
    """Whether azure-identity finds a credential, for ``prtg-ai doctor`` (never prints the token)."""
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        return False, "azure-identity is not installed (pip install 'prtg-ai[azure]')"
    import logging

    # The chain logs every failed credential to stderr; doctor's one line says it better.
    logging.getLogger("azure.identity").setLevel(logging.CRITICAL)
    try:
        DefaultAzureCredential(exclude_interactive_browser_credential=True).get_token(ARM_SCOPE)
    except Exception as exc:  # every credential in the chain failed: say which kind, not the details
        return False, f"no Azure credential usable ({type(exc).__name__}); set up a managed identity, " \
                      "AZURE_CLIENT_ID/AZURE_TENANT_ID with a federated token or certificate, or az login"
    return True, "a token for Azure Resource Manager was obtained (DefaultAzureCredential)"


# One credential object per process and environment: it keeps its token until shortly before expiry,
# so the agent and in-process callers do not ask the identity endpoint on every refresh.
_CREDENTIALS: dict[tuple, object] = {}


def _credential(env: dict):
    from azure.identity import DefaultAzureCredential

    key = tuple(sorted((k, v) for k, v in env.items() if k.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_"))))
    credential = _CREDENTIALS.get(key)
    if credential is None:
        if len(_CREDENTIALS) >= 16:
            _CREDENTIALS.clear()
        credential = _CREDENTIALS[key] = DefaultAzureCredential(exclude_interactive_browser_credential=True)
    return credential


class Azure(CloudClient):
    """The calls ``gpu_spend --cloud azure`` makes, with one credential."""

    def __init__(self, env):
        self.env = dict(env)
        self.arm = (self.env.get("PRTG_AI_AZURE_ENDPOINT") or ARM).rstrip("/")
        self.prices_url = (self.env.get("PRTG_AI_AZURE_PRICES_ENDPOINT") or PRICES).rstrip("/")
        self.http = Http("Azure", RBAC_ACTIONS, ROLE_FILE, _NAMES)

    # -- credentials --------------------------------------------------------
    @staticmethod
    def _fetch_token() -> str:
        try:
            import azure.identity  # noqa: F401
        except ImportError:
            raise CloudError("credentials", "azure-identity is not installed on this probe.",
                             "pip install 'prtg-ai[azure]' in the pack's Python environment.") from None
        try:
            return _credential(dict(os.environ)).get_token(ARM_SCOPE).token
        except Exception as exc:  # azure-identity raises ClientAuthenticationError / CredentialUnavailableError
            raise CloudError("credentials", f"No Azure credential could get a token ({type(exc).__name__}).",
                             "Give the probe a managed identity, AZURE_CLIENT_ID/AZURE_TENANT_ID with a "
                             "federated token or certificate, or run az login as the probe's account "
                             "(prtg-ai doctor checks it).") from None

    def _arm(self, service: str, op: str, method: str, path: str, params: dict, body=None,
             url: str | None = None) -> dict:
        doc, _ = self.http.call(service, op, method, url or f"{self.arm}{path}", token=self.token(),
                                params=params if url is None else None, body=body)
        return doc

    def _next(self, link: str | None) -> str | None:
        """The next page's URL on our endpoint; a nextLink elsewhere is refused (the token must not travel,
        and a listing cut short must not be cached as complete)."""
        if not link:
            return None
        if link.startswith(self.arm + "/"):
            return link
        if link.startswith(ARM + "/"):
            return self.arm + link[len(ARM):]  # recordings and overrides: same path on our endpoint
        raise CloudError("failed", "Azure answered with a next-page link to another host; it was not followed.",
                         "Check PRTG_AI_AZURE_ENDPOINT and any proxy between the probe and Azure.")

    # -- Cost Management -----------------------------------------------------
    def cost_query(self, scope: str, start: date, end: date, categories: list[str]) -> dict:
        """Daily actual cost of ``categories`` (MeterCategory), grouped by MeterSubCategory, ``[start, end]``.

        Returns ``{"columns": [...], "rows": [...]}`` with every page's rows (POST the same
        body to ``nextLink``, at most ``MAX_COST_PAGES``).
        """
        body = {
            "type": "ActualCost", "timeframe": "Custom",
            "timePeriod": {"from": f"{start.isoformat()}T00:00:00+00:00", "to": f"{end.isoformat()}T23:59:59+00:00"},
            "dataset": {
                "granularity": "Daily",
                "aggregation": {"totalCost": {"name": "Cost", "function": "Sum"}},
                "grouping": [{"type": "Dimension", "name": "MeterSubCategory"}],
                "filter": {"dimensions": {"name": "MeterCategory", "operator": "In", "values": list(categories)}},
            },
        }
        path = f"{scope}/providers/Microsoft.CostManagement/query"
        columns, rows, url = None, [], None
        for _ in range(MAX_COST_PAGES):
            doc = self._arm("costmanagement", "Query", "POST", path, {"api-version": COST_API_VERSION}, body, url)
            props = doc.get("properties") or {}
            columns = columns or props.get("columns") or []
            rows.extend(props.get("rows") or [])
            url = self._next(props.get("nextLink"))
            if not url:
                break
        return {"columns": columns or [], "rows": rows}

    def cost_forecast(self, scope: str, start: date, end: date, categories: list[str],
                      subcategories: list[str]) -> dict:
        """Forecast of the same costs over ``[start, end]`` (rows with CostStatus ``Forecast``)."""
        filters = [{"dimensions": {"name": "MeterCategory", "operator": "In", "values": list(categories)}},
                   {"dimensions": {"name": "MeterSubCategory", "operator": "In", "values": list(subcategories)}}]
        body = {
            "type": "ActualCost", "timeframe": "Custom",
            "timePeriod": {"from": f"{start.isoformat()}T00:00:00+00:00", "to": f"{end.isoformat()}T23:59:59+00:00"},
            "dataset": {"granularity": "Daily", "aggregation": {"totalCost": {"name": "Cost", "function": "Sum"}},
                        "filter": {"and": filters}},
            "includeActualCost": False, "includeFreshPartialCost": False,
        }
        doc = self._arm("costmanagement", "Forecast", "POST", f"{scope}/providers/Microsoft.CostManagement/forecast",
                        {"api-version": COST_API_VERSION}, body)
        props = doc.get("properties") or {}
        return {"columns": props.get("columns") or [], "rows": props.get("rows") or []}

    def budgets(self, scope: str) -> list[dict]:
        out, url = [], None
        for _ in range(MAX_PAGES):
            doc = self._arm("consumption", "Budgets", "GET", f"{scope}/providers/Microsoft.Consumption/budgets",
                            {"api-version": BUDGET_API_VERSION}, url=url)
            out.extend(doc.get("value") or [])
            url = self._next(doc.get("nextLink"))
            if not url:
                break
        return out

    # -- Compute and Monitor ----------------------------------------------------
    def virtual_machines(self, subscription: str, resource_group: str | None) -> list[dict]:
        """Every VM of the subscription (or resource group) with its power state, size, region and priority."""
        path = f"/subscriptions/{subscription}"
        if resource_group:
            path += f"/resourceGroups/{quote(resource_group, safe='')}"
        path += "/providers/Microsoft.Compute/virtualMachines"
        out, url = [], None
        for _ in range(MAX_PAGES):
            doc = self._arm("compute", "VirtualMachinesListAll", "GET", path,
                            {"api-version": COMPUTE_API_VERSION, "statusOnly": "true"}, url=url)
            for vm in doc.get("value") or []:
                props = vm.get("properties") or {}
                statuses = ((props.get("instanceView") or {}).get("statuses")) or []
                power = next((str(s.get("code", ""))[len("PowerState/"):] for s in statuses
                              if str(s.get("code", "")).startswith("PowerState/")), "")
                out.append({"id": str(vm.get("id", "")), "name": str(vm.get("name", "")),
                            "size": str((props.get("hardwareProfile") or {}).get("vmSize", "")),
                            "location": str(vm.get("location", "")), "power": power,
                            "spot": str(props.get("priority", "")).lower() in ("spot", "low")})
            url = self._next(doc.get("nextLink"))
            if not url:
                break
        return out

    def metric_averages(self, resource_id: str, start: datetime, end: datetime, metric: str,
                        namespace: str | None = None) -> list[float]:
        """5-minute averages of one metric of one resource over ``[start, end]``."""
        params = {"api-version": METRICS_API_VERSION, "metricnames": metric, "aggregation": "Average",
                  "interval": "PT5M", "timespan": f"{_iso(start)}/{_iso(end)}"}
        if namespace:
            params["metricnamespace"] = namespace
        doc = self._arm("monitor", "MetricsList", "GET", f"{resource_id}/providers/Microsoft.Insights/metrics", params)
        out = []
        for series in doc.get("value") or []:
            for ts in series.get("timeseries") or []:
                for point in ts.get("data") or []:
                    if point.get("average") is not None:
                        out.append(float(point["average"]))
        return out

    # -- Retail Prices ---------------------------------------------------------------
    def retail_prices(self, region: str, size: str) -> list[dict]:
        """Consumption price items of a VM size in a region (public API, no token; NextPageLink paging)."""
        flt = (f"serviceName eq 'Virtual Machines' and armRegionName eq '{region}' "
               f"and armSkuName eq '{size}' and priceType eq 'Consumption'")
        url = f"{self.prices_url}/api/retail/prices"
        params: dict | None = {"api-version": PRICES_API_VERSION, "$filter": flt}
        out = []
        for _ in range(5):
            doc, _ = self.http.call("prices", "RetailPrices", "GET", url, params=params)
            out.extend(doc.get("Items") or [])
            link = str(doc.get("NextPageLink") or "")
            if link.startswith(self.prices_url + "/"):
                url = link
            elif link.startswith(PRICES + "/"):
                url = self.prices_url + link[len(PRICES):]
            else:
                break
            params = None
        return out


def _iso(stamp: datetime) -> str:
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
