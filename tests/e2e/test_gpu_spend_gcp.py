"""``gpu_spend --cloud gcp`` end to end: google-auth (ADC: a service-account key) and requests to a local Google Cloud.

The fake (``tests/fakes/gcp_fake.py``) evaluates the billing query over a
partitioned export table and bills the bytes its partition filter keeps; the
scenario and the hand-computed numbers are in
``tests/testcases/gpu_spend/gcp_billing_export/SOURCE.md``.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

pytest.importorskip("google.auth")

from fakes.gcp_fake import TOKEN, FakeGcp  # noqa: E402
from support import channels, spend_scanner  # noqa: E402

from prtg_ai.backends import cloud_http  # noqa: E402
from prtg_ai.core.context import Context  # noqa: E402
from prtg_ai.core.runtime import run_sensor  # noqa: E402

CASE = Path(__file__).resolve().parents[1] / "testcases" / "gpu_spend" / "gcp_billing_export"
SCENARIO = json.loads((CASE / "scenario.json").read_text(encoding="utf-8"))
DAY = datetime(2026, 9, 21, 10, 0, tzinfo=timezone.utc)
TABLE = "ml-prod-1234.billing.gcp_billing_export_v1_01A2B3_C4D5E6_F7A8B9"
ARGS = ["--cloud", "gcp", "--billing-table", TABLE, "--billing-account", "01A2B3-C4D5E6-F7A8B9"]
MiB = 1024 * 1024


@pytest.fixture
def gcp(monkeypatch, tmp_path):
    """A local Google Cloud; ADC is a service-account key whose token_uri is the fake's OAuth endpoint."""
    fake = FakeGcp(json.loads(json.dumps(SCENARIO)))
    for key in [k for k in os.environ if k.startswith(("GOOGLE_", "GCE_", "CLOUDSDK_", "PRTG_AI_GCP"))]:
        monkeypatch.delenv(key)
    for k, v in fake.env(str(tmp_path)).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))  # never the host's gcloud login
    yield fake
    fake.close()


@pytest.fixture
def scan(tmp_path, clock):
    return spend_scanner(tmp_path, clock, ARGS, DAY)


def test_channels_match_the_hand_computed_totals(gcp, scan):
    result, doc = scan()
    assert not result.error, result.message()
    ch = channels(result)
    # GPU/TPU SKUs: H100, A3 cores, L4 (27 at rate 0.9 = $30), TPU v5e; N2 cores and storage are not GPU.
    assert ch["GPU Spend Month To Date"] == pytest.approx(19 * 990.0 + 1190.0 + 300.0)   # 20300
    assert ch["GPU Spend Yesterday"] == pytest.approx(1190.0)
    # No forecast API: actual before today + the last 7 complete days' average x 10 days.
    average = (6 * 990.0 + 1190.0) / 7
    assert ch["Projection Source"] == 2
    assert ch["GPU Spend Projected Month End"] == pytest.approx(round(20000.0 + 10 * average, 2))
    # The budget gives an amount only: this sensor's GPU spend against it.
    assert ch["Budget Used"] == pytest.approx(round(100 * 20300 / 40000, 2))
    assert ch["Budget Projected Use"] == pytest.approx(round(100 * (20000.0 + 10 * average) / 40000, 2), abs=0.01)
    # Now: a3 (8 x H100 guestAccelerators), a2-highgpu-1g (built-in A100), g2 spot (L4), n1 + 2 x T4,
    # and a v5e-8 TPU node; e2, the terminated a2 and the stopped v4 are not counted.
    assert ch["Running GPU Instances"] == 5
    assert ch["Spot GPU Instances"] == 1
    assert ch["GPUs"] == pytest.approx(12)
    assert ch["AI Accelerators"] == 8
    assert ch["Burn Rate"] == pytest.approx(8 * 11.06 + 2.933908 + 0.224 + 2 * 0.35 + 8 * 1.2, abs=1e-4)
    assert ch["Unpriced GPU Instances"] == 0
    assert "Idle GPU Instances" not in ch and "Idle Burn Rate" not in ch
    assert "not reported for Google Cloud" in doc["prtg"]["text"]
    # One query: partitions Aug 31 .. Sept 21 (22 x 20 MiB) billed, 3 result pages.
    assert gcp.counts["bigquery:jobs.query"] == 1
    assert gcp.counts["bigquery:jobs.getQueryResults"] == 2
    assert ch["Cost API Requests Today"] == 3
    assert ch["BigQuery MB Billed Today"] == pytest.approx(round(22 * 20 * MiB / 1e6, 3))
    assert TOKEN not in json.dumps(doc)


def test_the_query_reads_only_the_partitions_and_columns_it_needs(gcp, scan):
    scan()
    body = next(r for r in gcp.requests if r["op"] == "bigquery:jobs.query")["body"]
    sql = body["query"]
    assert f"FROM `{TABLE}`" in sql and "_PARTITIONTIME >= TIMESTAMP(DATE_SUB(@start, INTERVAL 1 DAY))" in sql
    assert "SELECT *" not in sql and "credits" not in sql
    assert int(body["maximumBytesBilled"]) == 10**9
    params = {p["name"]: p["parameterValue"]["value"] for p in body["queryParameters"]}
    assert params["start"] == "2026-09-01" and params["end"] == "2026-09-22"


def test_a_refresh_requeries_two_days_and_bills_four_partitions(gcp, scan, clock):
    scan()
    clock.now += 30 * 60
    scan()
    assert gcp.counts["bigquery:jobs.query"] == 1
    clock.now = DAY.timestamp() + 6 * 3600 + 1
    result, _ = scan()
    body = [r for r in gcp.requests if r["op"] == "bigquery:jobs.query"][-1]["body"]
    assert {p["name"]: p["parameterValue"]["value"] for p in body["queryParameters"]}["start"] == "2026-09-19"
    ch = channels(result)
    assert ch["GPU Spend Month To Date"] == pytest.approx(20300.0)
    # Sept 18 .. 21: 4 partitions x 20 MiB on top of the first query's 22.
    assert ch["BigQuery MB Billed Today"] == pytest.approx(round((22 + 4) * 20 * MiB / 1e6, 3))


def test_the_bytes_cap_refuses_an_expensive_query(gcp, scan):
    result, doc = scan("--max-billed-gb", "0.1")
    assert result.error
    assert "--max-billed-gb" in doc["prtg"]["text"] and "partitioned" in doc["prtg"]["text"]
    assert gcp.billed_total == 0


def test_an_unfinished_job_is_polled(gcp, scan):
    gcp.incomplete_first = True
    result, _ = scan()
    ch = channels(result)
    assert ch["GPU Spend Month To Date"] == pytest.approx(20300.0)
    assert gcp.counts["bigquery:jobs.getQueryResults"] == 3
    # getQueryResults reports bytes processed: billed as BigQuery bills them.
    assert ch["BigQuery MB Billed Today"] == pytest.approx(round(22 * 20 * MiB / 1e6, 3))


def test_data_lag_leaves_yesterday_out(gcp, scan):
    gcp.scenario["rows"] = [r for r in gcp.scenario["rows"] if r["day"] <= "2026-09-19"]
    result, doc = scan()
    ch = channels(result)
    assert ch["GPU Spend Month To Date"] == pytest.approx(19 * 990.0)
    assert "GPU Spend Yesterday" not in ch
    assert "covers days up to 2026-09-19" in doc["prtg"]["text"]
    # Projected from Sept 20: the last 7 covered days' average ($990) x 11 days.
    assert ch["GPU Spend Projected Month End"] == pytest.approx(19 * 990.0 + 11 * 990.0)


def test_throttled_query_backs_off(gcp, scan, clock):
    gcp.faults["bigquery:jobs.query"].append(
        (429, {"Retry-After": "1200"}, {"error": {"code": 429, "message": "Exceeded rate limits: too many api "
                                                  "requests per user per method", "status": "RESOURCE_EXHAUSTED"}}))
    result, doc = scan()
    assert not result.error and "throttled" in doc["prtg"]["text"]
    clock.now += 16 * 60
    scan()
    assert gcp.counts["bigquery:jobs.query"] == 1      # Retry-After 20 min outlasts the 15 min back-off
    clock.now += 5 * 60
    result, _ = scan()
    assert gcp.counts["bigquery:jobs.query"] == 2
    assert channels(result)["GPU Spend Month To Date"] == pytest.approx(20300.0)


def test_no_credentials_is_an_error_with_a_hint(gcp, scan):
    gcp.metadata_denied = True
    result, doc = scan()
    assert result.error and "refused to issue a token" in doc["prtg"]["text"]
    assert "PRIVATE KEY" not in json.dumps(doc) and "invalid_grant" not in json.dumps(doc)
    assert gcp.counts["bigquery:jobs.query"] == 0


def test_a_denied_query_names_the_permission(gcp, scan):
    gcp.faults["bigquery:jobs.query"].append(
        (403, {}, {"error": {"code": 403, "message": "Access Denied: User does not have bigquery.jobs.create "
                             "permission in project ml-prod-1234.", "status": "PERMISSION_DENIED"}}))
    result, doc = scan()
    assert result.error and "bigquery.jobs.create" in doc["prtg"]["text"]
    assert "prtg-ai-gpu-spend-gcp-role.yaml" in doc["prtg"]["text"]


@pytest.mark.parametrize("args, param", [
    (["--cloud", "gcp"], "billing-table"),
    (["--cloud", "gcp", "--billing-table", "p.d.t; DROP TABLE x"], "billing-table"),
    (["--cloud", "gcp", "--billing-table", "proj-123.ds.t`x"], "billing-table"),
    (["--cloud", "gcp", "--billing-table", TABLE, "--project", "UPPER_case"], "project"),
    (["--cloud", "gcp", "--billing-table", TABLE, "--billing-account", "../x"], "billing-account"),
])
def test_parameters_are_allow_listed(tmp_path, clock, args, param):
    result = run_sensor("gpu_spend", args, Context(state_dir=tmp_path / "s", clock=clock, env={}))
    assert result.error and f"--{param}" in result.message()


def test_every_call_is_granted_by_the_shipped_role(gcp, scan):
    import yaml

    from prtg_ai.backends import gcp as backend

    cloud_http.CALLED.clear()
    scan()
    role = yaml.safe_load((Path(__file__).resolve().parents[2] / backend.ROLE_FILE).read_text(encoding="utf-8"))
    granted = set(role["includedPermissions"])
    # One scan makes every call of the backend's table (no unused entry), each granted.
    assert cloud_http.CALLED == set(backend.IAM_PERMISSIONS)
    for call in cloud_http.CALLED:
        assert set(backend.IAM_PERMISSIONS[call]) <= granted, call


def test_doctor_line_reports_adc(gcp, monkeypatch, tmp_path):
    from prtg_ai.backends import gcp as backend

    ok, detail = backend.credential_status()
    assert ok and "Application Default Credentials found" in detail and TOKEN not in detail
    assert "BEGIN PRIVATE KEY" not in detail
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    ok, detail = backend.credential_status()
    assert not ok
