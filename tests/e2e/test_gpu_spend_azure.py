"""``gpu_spend --cloud azure`` end to end: azure-identity and requests over HTTP to a local Azure.

The fake (``tests/fakes/azure_fake.py``) speaks the request and response shapes of
the Cost Management, Consumption, Compute, Monitor, Retail Prices and App Service
managed-identity references; the scenario and how every expected number below was
worked out by hand are in ``tests/testcases/gpu_spend/azure_nseries/SOURCE.md``.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

pytest.importorskip("azure.identity")

from fakes.azure_fake import TOKEN, FakeAzure  # noqa: E402
from support import channels, spend_scanner  # noqa: E402

from prtg_ai.backends import cloud_http  # noqa: E402
from prtg_ai.core.context import Context  # noqa: E402
from prtg_ai.core.runtime import run_sensor  # noqa: E402

CASE = Path(__file__).resolve().parents[1] / "testcases" / "gpu_spend" / "azure_nseries"
SCENARIO = json.loads((CASE / "scenario.json").read_text(encoding="utf-8"))
SUB = SCENARIO["subscription"]
DAY = datetime(2026, 9, 21, 10, 0, tzinfo=timezone.utc)
ARGS = ["--cloud", "azure", "--subscription", SUB]


@pytest.fixture
def azure(monkeypatch):
    fake = FakeAzure(json.loads(json.dumps(SCENARIO)))
    for key in [k for k in os.environ if k.startswith(("AZURE_", "IDENTITY_", "MSI_", "PRTG_AI_AZURE"))]:
        monkeypatch.delenv(key)
    for k, v in fake.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AZURE_CONFIG_DIR", os.devnull)  # never the host's az login
    yield fake
    fake.close()


@pytest.fixture
def scan(tmp_path, clock):
    return spend_scanner(tmp_path, clock, ARGS, DAY)


def cost_calls(fake) -> int:
    return fake.counts["costmanagement:Query"] + fake.counts["costmanagement:Forecast"]


def test_channels_match_the_hand_computed_totals(azure, scan):
    result, doc = scan()
    assert not result.error, result.message()
    ch = channels(result)
    # Billed: NDasrA100_v4 + NCads A100 v4 + NVadsA10 v5 subcategories; Dsv5 and Storage are not GPU.
    assert ch["GPU Spend Month To Date"] == pytest.approx(19 * 360.0 + 460.0)   # 7300
    assert ch["GPU Spend Yesterday"] == pytest.approx(460.0)
    # Actual through Sept 20 + forecast $370 x 10 days (Sept 21..30).
    assert ch["GPU Spend Projected Month End"] == pytest.approx(7300.0 + 3700.0)
    assert ch["Projection Source"] == 1
    # The only monthly cost budget named *gpu*: its own current and forecast spend.
    assert ch["Budget Used"] == pytest.approx(round(100 * 7300 / 12000, 2))
    assert ch["Budget Projected Use"] == pytest.approx(round(100 * 11000 / 12000, 2))
    # Now: H100 (busy by GPU metric though CPU is 3 %), A100 idle (CPU 2 %), A10 spot idle (CPU 5 %),
    # T4 in westeurope without metrics (unknown); the deallocated T4 and the D4s are not counted.
    assert ch["Running GPU Instances"] == 4
    assert ch["Spot GPU Instances"] == 1
    assert ch["GPUs"] == pytest.approx(8 + 1 + 0.167 + 1, abs=1e-3)
    assert ch["AI Accelerators"] == 0
    assert ch["Burn Rate"] == pytest.approx(98.32 + 3.673 + 0.0908 + 0.526, abs=1e-4)
    assert ch["Idle GPU Instances"] == 2
    assert ch["Idle Burn Rate"] == pytest.approx(3.673 + 0.0908, abs=1e-4)
    assert ch["Unpriced GPU Instances"] == 0
    # Two query pages (50 rows a page, 80 Virtual Machines rows for Sept 1..20) and one forecast.
    assert azure.counts["costmanagement:Query"] == 2
    assert azure.counts["costmanagement:Forecast"] == 1
    assert ch["Cost API Requests Today"] == 3
    assert "Cost Explorer Requests Today" not in ch
    assert "gpu-monthly" in doc["prtg"]["text"]
    # The bearer token went to ARM only; the public price list got none.
    assert all(r["auth"] is None for r in azure.requests if r["op"] == "prices:RetailPrices")
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in azure.requests if r["op"].split(":")[0] in
               ("costmanagement", "consumption", "compute", "monitor"))
    assert TOKEN not in json.dumps(doc)


def test_the_query_asks_for_daily_vm_cost_grouped_by_subcategory(azure, scan):
    scan()
    first = next(r for r in azure.requests if r["op"] == "costmanagement:Query")
    assert first["path"] == f"/subscriptions/{SUB}/providers/Microsoft.CostManagement/query"
    body = first["body"]
    assert body["type"] == "ActualCost" and body["timeframe"] == "Custom"
    assert body["timePeriod"] == {"from": "2026-09-01T00:00:00+00:00", "to": "2026-09-21T23:59:59+00:00"}
    assert body["dataset"]["granularity"] == "Daily"
    assert body["dataset"]["grouping"] == [{"type": "Dimension", "name": "MeterSubCategory"}]
    # The second page is the same body POSTed to nextLink (rewritten to the overridden endpoint).
    second = [r for r in azure.requests if r["op"] == "costmanagement:Query"][1]
    assert second["body"] == body and second["query"]["$skiptoken"] == "50"
    forecast = next(r for r in azure.requests if r["op"] == "costmanagement:Forecast")["body"]
    subcats = forecast["dataset"]["filter"]["and"][1]["dimensions"]["values"]
    assert subcats == ["NCads A100 v4 Series", "NDasrA100_v4 Series", "NVadsA10 v5 Series"]


def test_a_fresh_cache_makes_no_call_and_the_refresh_requeries_two_days(azure, scan, clock):
    scan()
    before = dict(azure.counts)
    for _ in range(30):  # 30 min of 60 s scans
        clock.now += 60
        result, _ = scan()
        assert not result.error
    assert cost_calls(azure) == before["costmanagement:Query"] + before["costmanagement:Forecast"]
    clock.now = DAY.timestamp() + 6 * 3600 + 1
    result, _ = scan()
    queries = [r for r in azure.requests if r["op"] == "costmanagement:Query"]
    assert queries[-1]["body"]["timePeriod"]["from"] == "2026-09-19T00:00:00+00:00"  # today - 2
    assert azure.counts["costmanagement:Forecast"] == 1      # once a day
    assert channels(result)["GPU Spend Month To Date"] == pytest.approx(7300.0)
    assert channels(result)["Cost API Requests Today"] == 4


def test_throttling_is_honoured_for_as_long_as_cost_management_asks(azure, scan, clock):
    azure.faults["costmanagement:Query"].append(
        (429, {"x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after": "2400",
               "x-ms-ratelimit-microsoft.costmanagement-entity-retry-after": "60", "Retry-After": "60"},
         {"error": {"code": "429", "message": "Too many requests. Please retry."}}))
    result, doc = scan()
    ch = channels(result)
    assert not result.error and ch["Running GPU Instances"] == 4   # the fleet part still reports
    assert "GPU Spend Month To Date" not in ch
    assert "throttled" in doc["prtg"]["text"] and "2400" in doc["prtg"]["text"]
    assert azure.counts["costmanagement:Query"] == 1
    clock.now += 30 * 60      # past the 15 min back-off, inside the 40 min the service asked for
    scan()
    assert azure.counts["costmanagement:Query"] == 1
    clock.now += 11 * 60
    result, _ = scan()
    assert azure.counts["costmanagement:Query"] == 3
    assert channels(result)["GPU Spend Month To Date"] == pytest.approx(7300.0)


def test_data_lag_is_not_reported_as_zero_spend(azure, scan):
    azure.scenario["costs"] = [r for r in azure.scenario["costs"] if r["day"] <= "2026-09-19"]
    result, doc = scan()
    ch = channels(result)
    assert ch["GPU Spend Month To Date"] == pytest.approx(19 * 360.0)      # 6840
    assert "GPU Spend Yesterday" not in ch
    assert "covers days up to 2026-09-19" in doc["prtg"]["text"]
    # The forecast starts the day after the data ends: $370 x 11 days (Sept 20..30).
    forecast = next(r for r in azure.requests if r["op"] == "costmanagement:Forecast")["body"]
    assert forecast["timePeriod"]["from"] == "2026-09-20T00:00:00+00:00"
    assert ch["GPU Spend Projected Month End"] == pytest.approx(6840.0 + 11 * 370.0)


def test_own_projection_over_the_lag_without_a_forecast(azure, scan):
    azure.scenario["costs"] = [r for r in azure.scenario["costs"] if r["day"] <= "2026-09-19"]
    azure.scenario["forecast_per_day"] = None
    result, _ = scan("--budget", "10000")
    ch = channels(result)
    # Average of the last 7 covered days ($360) for each of the 11 days from Sept 20.
    assert ch["Projection Source"] == 2
    assert ch["GPU Spend Projected Month End"] == pytest.approx(6840.0 + 11 * 360.0)
    assert ch["Budget Used"] == pytest.approx(68.4)
    assert ch["Budget Projected Use"] == pytest.approx(108.0)


def test_no_credential_is_an_error_with_a_hint_and_no_secret(azure, scan):
    azure.msi_fail = True
    result, doc = scan()
    assert result.error
    text = doc["prtg"]["text"]
    assert "No Azure credential" in text and "managed identity" in text
    assert "fake-identity-header" not in json.dumps(doc)
    assert cost_calls(azure) == 0


def test_a_rejected_token_is_a_credentials_error(azure, scan, monkeypatch):
    azure.faults["compute:VirtualMachinesListAll"].append(
        (401, {}, {"error": {"code": "ExpiredAuthenticationToken", "message": "The access token expiry ..."}}))
    result, doc = scan()
    assert result.error and "rejected the credentials" in doc["prtg"]["text"]
    assert TOKEN not in json.dumps(doc)


def test_a_denied_query_names_the_rbac_action(azure, scan):
    azure.faults["costmanagement:Query"].append(
        (403, {}, {"error": {"code": "AuthorizationFailed", "message": "The client does not have authorization "
                                                                      "to perform action"}}))
    result, doc = scan()
    assert result.error
    assert "Microsoft.CostManagement/query/read" in doc["prtg"]["text"]
    assert "prtg-ai-gpu-spend-azure-role.json" in doc["prtg"]["text"]


def test_a_billing_currency_other_than_usd_is_refused(azure, scan):
    for row in azure.scenario["costs"]:
        row["currency"] = "EUR"
    result, doc = scan()
    assert "not USD" in doc["prtg"]["text"] and "GPU Spend Month To Date" not in channels(result)


@pytest.mark.parametrize("args, param", [
    (["--cloud", "azure"], "subscription"),
    (["--cloud", "azure", "--subscription", "../../x"], "subscription"),
    (["--cloud", "azure", "--subscription", SUB, "--resource-group", "a/b"], "resource-group"),
    (["--cloud", "azure", "--subscription", SUB, "--management-group", "mg?x=1"], "management-group"),
])
def test_parameters_are_allow_listed(tmp_path, clock, args, param):
    ctx = Context(state_dir=tmp_path / "s", clock=clock, env={})
    result = run_sensor("gpu_spend", args, ctx)
    assert result.error and f"--{param}" in result.message()


def test_resource_group_scope(azure, scan):
    result, _ = scan("--resource-group", "ml")
    paths = {r["path"] for r in azure.requests if r["op"] in ("costmanagement:Query", "compute:VirtualMachinesListAll")}
    assert paths == {f"/subscriptions/{SUB}/resourceGroups/ml/providers/Microsoft.CostManagement/query",
                     f"/subscriptions/{SUB}/resourceGroups/ml/providers/Microsoft.Compute/virtualMachines"}
    assert not result.error


def test_every_call_is_granted_by_the_shipped_role(azure, scan):
    cloud_http.CALLED.clear()
    scan("--budget-name", "gpu-monthly")
    from prtg_ai.backends import azure as backend

    role = json.loads((Path(__file__).resolve().parents[2] / backend.ROLE_FILE).read_text(encoding="utf-8"))
    granted = set(role["properties"]["permissions"][0]["actions"])
    # One scan with a budget makes every call of the backend's table (no unused entry), each granted.
    assert cloud_http.CALLED == set(backend.RBAC_ACTIONS)
    assert {backend.RBAC_ACTIONS[c] for c in cloud_http.CALLED} - {None} <= granted


def test_doctor_line_finds_the_managed_identity(azure):
    from prtg_ai.doctor import _cloud_credential_checks

    checks = {name: (ok, detail) for name, ok, detail in _cloud_credential_checks()}
    ok, detail = checks["Azure credentials (gpu_spend --cloud azure)"]
    assert ok and "token" in detail and TOKEN not in detail
    azure.msi_fail = True
    from prtg_ai.backends import azure as backend

    backend._CREDENTIALS.clear()
    ok, detail = backend.credential_status()
    assert not ok and "managed identity" in detail


def test_management_group_scope_reads_costs_there_and_vms_from_the_subscription(azure, scan):
    result, _ = scan("--management-group", "ai-platform")
    assert not result.error
    mg = "/providers/Microsoft.Management/managementGroups/ai-platform"
    ops = {r["op"]: r["path"] for r in azure.requests}
    assert ops["costmanagement:Query"] == f"{mg}/providers/Microsoft.CostManagement/query"
    assert ops["consumption:Budgets"] == f"{mg}/providers/Microsoft.Consumption/budgets"
    assert ops["compute:VirtualMachinesListAll"] == f"/subscriptions/{SUB}/providers/Microsoft.Compute/virtualMachines"


def test_the_daily_request_cap_stops_refreshes(azure, scan, clock, monkeypatch):
    from prtg_ai.gpu_spend import cloud_engine as engine

    monkeypatch.setattr(engine, "DAILY_REQUEST_CAP", 3)
    scan()
    assert cost_calls(azure) == 3
    clock.now += 6 * 3600 + 1
    result, doc = scan()
    assert cost_calls(azure) == 3                       # refused before asking
    assert "daily cap of 3 requests" in doc["prtg"]["text"]
    assert channels(result)["GPU Spend Month To Date"] == pytest.approx(7300.0)   # the cache still serves


def test_a_next_link_to_another_host_is_not_followed(azure, scan):
    azure.link_base = "https://attacker.example"
    result, doc = scan()
    assert azure.counts["costmanagement:Query"] == 1        # the first page only; nothing else was asked
    assert "next-page link to another host" in doc["prtg"]["text"]
    assert "GPU Spend Month To Date" not in channels(result)  # a cut listing is not cached as the month
