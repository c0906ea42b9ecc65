"""Azure and Google Cloud spend: what a day at a 60 s interval costs, and start-up from a fresh cache.

Measured, not computed, against the test suite's local clouds (``tests/fakes/azure_fake.py``,
``tests/fakes/gcp_fake.py``, both on 127.0.0.1):

* Azure: ``gpu_spend --cloud azure`` runs 1,440 times in-process with an injected clock
  advancing 60 s per scan; the fake counts every Cost Management ``query`` and
  ``forecast`` request (each is throttled per tenant). Baseline: a naive sensor that
  asks Cost Management once per scan (1,440 requests; it would page and forecast too).
* Google Cloud: the same day with ``--cloud gcp``; the fake bills each BigQuery query
  for the partitions its filter keeps (10 MB minimum). Baseline: a naive sensor
  running the same query without the partition filter on every scan (the fake bills
  one such query; x 1,440).

Start-up from a fresh cache is ``bench_cloud_spend_startup``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from common import TESTS

SCANS = 1440
START = datetime(2026, 9, 21, 0, 0, 30, tzinfo=timezone.utc)
AZURE_CASE = TESTS / "testcases" / "gpu_spend" / "azure_nseries" / "scenario.json"
GCP_CASE = TESTS / "testcases" / "gpu_spend" / "gcp_billing_export" / "scenario.json"
SUB = "00000000-1111-2222-3333-444444444444"
TABLE = "ml-prod-1234.billing.gcp_billing_export_v1_01A2B3_C4D5E6_F7A8B9"
AZURE_ARGS = ["--cloud", "azure", "--subscription", SUB]
GCP_ARGS = ["--cloud", "gcp", "--billing-table", TABLE]


def _fakes():
    from fakes.azure_fake import FakeAzure
    from fakes.gcp_fake import FakeGcp

    azure = FakeAzure(json.loads(AZURE_CASE.read_text(encoding="utf-8")))
    gcp = FakeGcp(json.loads(GCP_CASE.read_text(encoding="utf-8")))
    return azure, gcp


def _clean_env(*fakes) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AZURE_", "IDENTITY_", "MSI_", "GOOGLE_", "GCE_", "CLOUDSDK_", "PRTG_AI_", "AWS_"))}
    keys = tempfile.mkdtemp(prefix="prtg-ai-bench-")  # the fake service account's key (ADC)
    for fake in fakes:
        env.update(fake.env(keys) if hasattr(fake, "jobs") else fake.env())
    env["AZURE_CONFIG_DIR"] = os.devnull
    env["CLOUDSDK_CONFIG"] = os.path.join(tempfile.gettempdir(), "prtg-ai-bench-no-gcloud")
    return env


def _day(args: list[str], env: dict) -> tuple[int, float]:
    from prtg_ai.core.context import Context
    from prtg_ai.core.runtime import run_sensor

    class Clock:
        now = START.timestamp()

        def __call__(self):
            return self.now

    clock, errors = Clock(), 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(state_dir=Path(tmp) / "state", clock=clock, env=env)
        for _ in range(SCANS):
            errors += bool(run_sensor("gpu_spend", args, ctx).error)
            clock.now += 60
    return errors, time.perf_counter() - started


def _naive_gcp_bytes(env: dict) -> int:
    """What one uncached, unpartitioned query of the same columns bills (the fake evaluates it)."""
    from prtg_ai.backends.gcp import Gcp
    from prtg_ai.gpu_spend import gcp as provider

    sql = provider.QUERY.format(table=TABLE).replace(
        "_PARTITIONTIME >= TIMESTAMP(DATE_SUB(@start, INTERVAL 1 DAY))\n  AND ", "")
    params = [{"name": "start", "parameterType": {"type": "DATE"}, "parameterValue": {"value": "2026-09-01"}},
              {"name": "end", "parameterType": {"type": "DATE"}, "parameterValue": {"value": "2026-09-22"}},
              {"name": "sku_pattern", "parameterType": {"type": "STRING"},
               "parameterValue": {"value": provider.SKU_PATTERN}}]
    return Gcp(env).query("ml-prod-1234", sql, params, 10**12)["billed"]


def _saved_environ(env: dict):
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    return saved


def run(repeats: int = 1) -> list[dict]:  # noqa: ARG001 - one day is one measurement
    azure, gcp = _fakes()
    env = _clean_env(azure, gcp)
    saved = _saved_environ(env)  # azure-identity and google-auth read the process environment
    rows = []
    try:
        errors, secs = _day(AZURE_ARGS, env)
        calls = azure.counts["costmanagement:Query"] + azure.counts["costmanagement:Forecast"]
        rows.append({
            "benchmark": f"Azure Cost Management requests per day at 60 s ({SCANS:,} scans)",
            "baseline": f"naive uncached sensor: {SCANS:,}", "ratio": round(calls / SCANS, 5), "target": "<= 0.01",
            "ok": calls / SCANS <= 0.01 and errors == 0,
            "detail": f"measured against the local Azure: {azure.counts['costmanagement:Query']} query (pages) + "
                      f"{azure.counts['costmanagement:Forecast']} forecast = {calls}; Compute list "
                      f"{azure.counts['compute:VirtualMachinesListAll']}; {errors} error scans; {secs:.1f} s"})
        billed_before = gcp.billed_total
        errors, secs = _day(GCP_ARGS, env)
        ours = gcp.billed_total - billed_before
        naive_one = _naive_gcp_bytes(env)
        naive = naive_one * SCANS
        rows.append({
            "benchmark": f"BigQuery bytes billed per day at 60 s ({SCANS:,} scans)",
            "baseline": f"naive uncached, unpartitioned: {naive / 1e12:,.2f} TB", "ratio": round(ours / naive, 6),
            "target": "<= 0.01", "ok": ours / naive <= 0.01 and errors == 0,
            "detail": f"measured against the local BigQuery: {gcp.counts['bigquery:jobs.query']} queries billed "
                      f"{ours / 1e6:,.1f} MB (naive: {naive_one / 1e9:,.2f} GB a scan); at $6.25 per TiB on demand "
                      f"${ours / 2**40 * 6.25:.4f}/day vs ${naive / 2**40 * 6.25:,.2f}/day; {errors} error scans; "
                      f"{secs:.1f} s"})
    finally:
        os.environ.clear()
        os.environ.update(saved)
        azure.close()
        gcp.close()
    return rows

