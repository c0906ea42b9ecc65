"""A local Google Cloud for ``gpu_spend --cloud gcp``: metadata server, BigQuery, Compute, TPU, Billing.

One ``ThreadingHTTPServer`` on 127.0.0.1 (port 0), in the request and response shapes
of the public references (``tests/testcases/gpu_spend/gcp_billing_export/SOURCE.md``):

* Google's OAuth token endpoint for a service-account key (ADC, ``token_uri`` in the key file)
  and the GCE metadata server (what ``GCE_METADATA_HOST`` / ``GCE_METADATA_IP`` point
  google-auth's Application Default Credentials at): ping, service account, token;
* BigQuery ``jobs.query`` (POST ``/bigquery/v2/projects/{p}/queries``) and
  ``jobs.getQueryResults`` (GET ``.../queries/{jobId}``): a billing export table with
  daily partitions; the query is *evaluated* for the one query shape the sensor sends
  (grouped by day, GPU SKUs by the ``@sku_pattern`` regex, USD by the conversion
  rate), the bytes it would scan are computed from the partitions its
  ``_PARTITIONTIME`` filter keeps (all of them without one), billed with BigQuery's
  10 MB minimum and refused above ``maximumBytesBilled``; results paged by ``pageToken``;
* Compute ``instances.aggregatedList``, TPU ``nodes.list``, Cloud Billing Catalog
  ``services.skus.list`` and Billing Budget ``budgets.list`` (paged by ``nextPageToken``).

Faults are queued per operation: ``(status, headers, body)``.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from datetime import date, timedelta

from fakes.loopback import ApiFake

TOKEN = "ya29.fake-gcp-token-51c2"
MB = 1024 * 1024
MIN_BILLED = 10 * MB


class FakeGcp(ApiFake):
    def __init__(self, scenario: dict):
        self.lock = threading.Lock()
        self.reset(scenario)
        self._serve()

    def reset(self, scenario: dict) -> None:
        """A new scenario and clean counters (the server and its port stay)."""
        with self.lock:
            self.scenario = scenario
            self._new_log()
            self.jobs: dict[str, dict] = {}
            self.page_rows = 8
            self.zone_page = 2
            self.sku_page = 3
            self.incomplete_first = False
            self.metadata_denied = False
            self.billed_total = 0

    def env(self, key_dir: str | None = None) -> dict:
        """Endpoint overrides, and ADC: a service-account key whose ``token_uri`` is this server
        (with ``key_dir``), else the metadata server (``GCE_METADATA_HOST``, read once per process)."""
        env = {f"PRTG_AI_GCP_{k}_ENDPOINT": self.url for k in ("BIGQUERY", "COMPUTE", "TPU", "BILLING", "BUDGETS")}
        if key_dir is None:
            return dict(env, GCE_METADATA_HOST=self.hostport, GCE_METADATA_IP=self.hostport)
        path = os.path.join(key_dir, "prtg-ai-sa.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({"type": "service_account", "project_id": "ml-prod-1234", "private_key_id": "0123456789abcdef",
                       "private_key": _private_key_pem(), "client_email": "prtg-ai@ml-prod-1234.iam.gserviceaccount.com",
                       "client_id": "100000000000000000001", "token_uri": f"{self.url}/token"}, fh)
        return dict(env, GOOGLE_APPLICATION_CREDENTIALS=path)

    # -- plumbing ------------------------------------------------------------------------
    @classmethod
    def send(cls, handler, status: int, doc, headers: dict | None = None, text: str | None = None):
        data = text.encode() if text is not None else json.dumps(doc).encode()
        ctype = "application/text" if text is not None else "application/json; charset=UTF-8"
        cls.send_bytes(handler, status, data, ctype, {"Metadata-Flavor": "Google", **(headers or {})})

    @staticmethod
    def operation(method: str, path: str) -> str:
        if path == "/" or path.startswith("/computeMetadata/"):
            return "metadata"
        if path == "/token" and method == "POST":
            return "oauth:token"
        if re.fullmatch(r"/bigquery/v2/projects/[^/]+/queries", path) and method == "POST":
            return "bigquery:jobs.query"
        if re.fullmatch(r"/bigquery/v2/projects/[^/]+/queries/[^/]+", path):
            return "bigquery:jobs.getQueryResults"
        if path.endswith("/aggregated/instances"):
            return "compute:instances.aggregatedList"
        if path.endswith("/locations/-/nodes"):
            return "tpu:nodes.list"
        if re.fullmatch(r"/v1/services/[^/]+/skus", path):
            return "billing:services.skus.list"
        if re.fullmatch(r"/v1/billingAccounts/[^/]+/budgets", path):
            return "budgets:budgets.list"
        return f"?:{method} {path}"

    def handle(self, handler, method: str):
        path, query, raw = self.read_request(handler)
        op = self.operation(method, path)
        body = json.loads(raw) if raw and op != "oauth:token" else None
        fault = self.log_request(handler, op, method, path, query, body)
        if fault:
            return self.send(handler, fault[0], fault[2], fault[1])
        if op == "metadata":
            return self.metadata(handler, path)
        if op == "oauth:token":
            return self.oauth(handler)
        if handler.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.send(handler, 401, {"error": {"code": 401, "message": "Request had invalid authentication "
                                                      "credentials.", "status": "UNAUTHENTICATED"}})
        if op == "bigquery:jobs.query":
            return self.query(handler, path, body)
        if op == "bigquery:jobs.getQueryResults":
            return self.results(handler, path.rsplit("/", 1)[-1], query)
        if op == "compute:instances.aggregatedList":
            return self.instances(handler, query)
        if op == "tpu:nodes.list":
            return self.send(handler, 200, {"nodes": self.scenario.get("tpu_nodes", [])})
        if op == "billing:services.skus.list":
            service = path.split("/")[3]
            return self.paged(handler, self.scenario["skus"].get(service, []), "skus", query, self.sku_page)
        if op == "budgets:budgets.list":
            return self.paged(handler, self.scenario.get("budgets", []), "budgets", query, 100)
        return self.send(handler, 404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})

    def paged(self, handler, items, key, query, size):
        start = int(query.get("pageToken") or 0)
        doc = {key: items[start:start + size]}
        if start + size < len(items):
            doc["nextPageToken"] = str(start + size)
        return self.send(handler, 200, doc)

    def oauth(self, handler):
        """Google's OAuth token endpoint for a service account's signed JWT (the body is form-encoded)."""
        if self.metadata_denied:
            return self.send(handler, 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        return self.send(handler, 200, {"access_token": TOKEN, "expires_in": 3599, "token_type": "Bearer"})

    def metadata(self, handler, path):
        if path == "/":
            return self.send(handler, 200, None, text="")
        if self.metadata_denied and "/token" in path:
            return self.send(handler, 403, None, text="The service account is disabled.")
        if path.endswith("/token"):
            return self.send(handler, 200, {"access_token": TOKEN, "expires_in": 3599, "token_type": "Bearer"})
        if path.rstrip("/").endswith("service-accounts/default"):
            return self.send(handler, 200, {"aliases": ["default"], "email": "prtg-ai@ml-prod-1234.iam.gserviceaccount.com",
                                            "scopes": ["https://www.googleapis.com/auth/cloud-platform"]})
        if path.endswith("project/project-id"):
            return self.send(handler, 200, None, text="ml-prod-1234")
        if path.endswith("universe/universe-domain"):
            return self.send(handler, 200, None, text="googleapis.com")
        return self.send(handler, 404, None, text="not found")

    # -- BigQuery -----------------------------------------------------------------------
    def scanned_bytes(self, sql: str, start: date) -> int:
        first, last = (date.fromisoformat(d) for d in self.scenario["partitions"])
        if "_PARTITIONTIME >= TIMESTAMP(DATE_SUB(@start, INTERVAL 1 DAY))" in sql:
            first = max(first, start - timedelta(days=1))
        days = (last - first).days + 1
        return max(0, days) * self.scenario["partition_bytes"]

    def query(self, handler, path, body):
        assert body["useLegacySql"] is False and body["parameterMode"] == "NAMED"
        params = {p["name"]: p["parameterValue"]["value"] for p in body["queryParameters"]}
        start, end = date.fromisoformat(params["start"]), date.fromisoformat(params["end"])
        pattern = re.compile(params["sku_pattern"].replace("(?i)", ""), re.IGNORECASE)
        scanned = self.scanned_bytes(body["query"], start)
        billed = max(MIN_BILLED, math.ceil(scanned / MB) * MB)
        if "maximumBytesBilled" in body and billed > int(body["maximumBytesBilled"]):
            msg = f"Query exceeded limit for bytes billed: {body['maximumBytesBilled']}. {billed} or higher required."
            return self.send(handler, 400, {"error": {"code": 400, "message": msg, "status": "INVALID_ARGUMENT",
                                                      "errors": [{"message": msg, "domain": "global",
                                                                  "reason": "bytesBilledLimitExceeded"}]}})
        self.billed_total += billed
        days: dict[str, list] = {}
        for r in self.scenario["rows"]:
            if start.isoformat() <= r["day"] < end.isoformat():
                entry = days.setdefault(r["day"], [0.0, 0])
                entry[1] += 1
                if pattern.search(r["sku"]):
                    entry[0] += r["cost"] / r.get("rate", 1.0)
        rows = [{"f": [{"v": d}, {"v": repr(v[0])}, {"v": str(v[1])}]} for d, v in sorted(days.items())]
        project = path.split("/")[4]
        job = {"projectId": project, "jobId": f"job_{len(self.jobs) + 1:04d}", "location": "US"}
        schema = {"fields": [{"name": "day", "type": "STRING", "mode": "NULLABLE"},
                             {"name": "gpu_usd", "type": "FLOAT", "mode": "NULLABLE"},
                             {"name": "billing_rows", "type": "INTEGER", "mode": "NULLABLE"}]}
        self.jobs[job["jobId"]] = {"rows": rows, "schema": schema, "scanned": scanned, "ref": job}
        if self.incomplete_first:
            return self.send(handler, 200, {"kind": "bigquery#queryResponse", "jobReference": job, "jobComplete": False})
        doc = {"kind": "bigquery#queryResponse", "schema": schema, "jobReference": job,
               "totalRows": str(len(rows)), "rows": rows[:self.page_rows], "totalBytesProcessed": str(scanned),
               "totalBytesBilled": str(billed), "jobComplete": True, "cacheHit": False}
        if len(rows) > self.page_rows:
            doc["pageToken"] = str(self.page_rows)
        return self.send(handler, 200, doc)

    def results(self, handler, job_id, query):
        job = self.jobs[job_id]
        start = int(query.get("pageToken") or 0)
        rows = job["rows"]
        doc = {"kind": "bigquery#getQueryResultsResponse", "etag": "e1", "schema": job["schema"],
               "jobReference": job["ref"], "totalRows": str(len(rows)), "rows": rows[start:start + self.page_rows],
               "totalBytesProcessed": str(job["scanned"]), "jobComplete": True, "cacheHit": False}
        if start + self.page_rows < len(rows):
            doc["pageToken"] = str(start + self.page_rows)
        return self.send(handler, 200, doc)

    # -- Compute ----------------------------------------------------------------------------
    def instances(self, handler, query):
        assert query.get("filter") == 'status = "RUNNING"'
        zones = sorted(self.scenario["zones"])
        start = int(query.get("pageToken") or 0)
        items = {}
        for zone in zones[start:start + self.zone_page]:
            running = [i for i in self.scenario["zones"][zone] if i["status"] == "RUNNING"]
            items[f"zones/{zone}"] = {"instances": running} if running else {"warning": {
                "code": "NO_RESULTS_ON_PAGE", "message": f"There are no results for scope 'zones/{zone}' on this page.",
                "data": [{"key": "scope", "value": f"zones/{zone}"}]}}
        doc = {"kind": "compute#instanceAggregatedList", "id": "projects/ml-prod-1234/aggregated/instances",
               "items": items, "selfLink": "https://www.googleapis.com/compute/v1/projects/ml-prod-1234/aggregated/instances"}
        if start + self.zone_page < len(zones):
            doc["nextPageToken"] = str(start + self.zone_page)
        return self.send(handler, 200, doc)



_KEY: list[str] = []


def _private_key_pem() -> str:
    """A throw-away RSA key for the fake service account (made once per process; google-auth signs with it)."""
    if not _KEY:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _KEY.append(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode())
    return _KEY[0]
