"""Google Cloud access for ``gpu_spend --cloud gcp``: the only module that imports ``google.auth``.

REST over ``requests`` (``backends/cloud_http.py``) with an OAuth token from
Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's ADC
file, workload identity, the GCE metadata server): the BigQuery, Compute, TPU and
Billing client libraries would add grpc and protobuf stacks for a few calls.
Nothing is imported before the first call.

Endpoints (each overridable for tests and private endpoints, from the process
environment only, never from a sensor parameter): BigQuery
``https://bigquery.googleapis.com`` (``PRTG_AI_GCP_BIGQUERY_ENDPOINT``), Compute
Engine ``https://compute.googleapis.com`` (``..._COMPUTE_ENDPOINT``), Cloud TPU
``https://tpu.googleapis.com`` (``..._TPU_ENDPOINT``), Cloud Billing Catalog
``https://cloudbilling.googleapis.com`` (``..._BILLING_ENDPOINT``), Billing Budget
``https://billingbudgets.googleapis.com`` (``..._BUDGETS_ENDPOINT``).

What it calls, and the IAM permission each needs (``IAM_PERMISSIONS``; the role
``installer/assets/iam/prtg-ai-gpu-spend-gcp-role.yaml`` grants exactly these):

* BigQuery ``jobs.query`` / ``jobs.getQueryResults`` on the billing export, always
  with ``maximumBytesBilled`` (the answer's ``totalBytesBilled`` is counted);
* Billing Budget ``budgets.list`` on the billing account;
* Compute ``instances.aggregatedList`` (``status = RUNNING``), TPU ``nodes.list``;
* Cloud Billing Catalog ``services.skus.list`` (public list prices; any token).
"""

from __future__ import annotations

from urllib.parse import quote

from prtg_ai.backends.cloud_http import MAX_PAGES, CloudClient, CloudError, Http

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
ROLE_FILE = "installer/assets/iam/prtg-ai-gpu-spend-gcp-role.yaml"
DEFAULTS = {"bigquery": "https://bigquery.googleapis.com", "compute": "https://compute.googleapis.com",
            "tpu": "https://tpu.googleapis.com", "billing": "https://cloudbilling.googleapis.com",
            "budgets": "https://billingbudgets.googleapis.com"}
MIN_BILLED_BYTES = 10 * 1024 * 1024   # BigQuery bills at least 10 MB per query (on-demand pricing)
QUERY_TIMEOUT_MS = 20000

IAM_PERMISSIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("bigquery", "jobs.query"): ("bigquery.jobs.create", "bigquery.tables.getData"),
    ("bigquery", "jobs.getQueryResults"): ("bigquery.jobs.get",),
    ("budgets", "budgets.list"): ("billing.budgets.list",),
    ("compute", "instances.aggregatedList"): ("compute.instances.list",),
    ("tpu", "nodes.list"): ("tpu.nodes.list",),
    ("billing", "services.skus.list"): (),  # the public catalogue: any authenticated caller
}
_NAMES = {"bigquery": "BigQuery", "budgets": "Billing Budget API", "compute": "Compute Engine",
          "tpu": "Cloud TPU", "billing": "Cloud Billing Catalog"}


def credential_status() -> tuple[bool, str]:
    """Whether Application Default Credentials are found, for ``prtg-ai doctor`` (no token is fetched)."""
    try:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError
    except ImportError:
        return False, "google-auth is not installed (pip install 'prtg-ai[gcp]')"
    try:
        credentials, project = google.auth.default(scopes=[SCOPE])
    except DefaultCredentialsError:
        return False, "no Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, " \
                      "gcloud auth application-default login, or a service account on GCE/GKE)"
    except Exception as exc:
        return False, f"ADC lookup failed ({type(exc).__name__})"
    return True, f"Application Default Credentials found ({type(credentials).__name__}" + \
        (f", project {project})" if project else ")")


class Gcp(CloudClient):
    """The calls ``gpu_spend --cloud gcp`` makes, with Application Default Credentials."""

    def __init__(self, env):
        self.env = dict(env)
        self.url = {k: (self.env.get(f"PRTG_AI_GCP_{k.upper()}_ENDPOINT") or v).rstrip("/")
                    for k, v in DEFAULTS.items()}
        self.http = Http("Google Cloud", {k: ", ".join(v) or None for k, v in IAM_PERMISSIONS.items()},
                         ROLE_FILE, _NAMES)
        self.bytes_billed = 0

    @staticmethod
    def _fetch_token() -> str:
        try:
            import google.auth
            import google.auth.transport.requests
            from google.auth import exceptions as gx
        except ImportError:
            raise CloudError("credentials", "google-auth is not installed on this probe.",
                             "pip install 'prtg-ai[gcp]' in the pack's Python environment.") from None
        try:
            credentials, _ = google.auth.default(scopes=[SCOPE])
            credentials.refresh(google.auth.transport.requests.Request())
        except gx.DefaultCredentialsError:
            raise CloudError("credentials", "No Google Cloud Application Default Credentials found.",
                             "Set GOOGLE_APPLICATION_CREDENTIALS to a service account's key or workload "
                             "identity configuration, run gcloud auth application-default login as the "
                             "probe's account, or run the probe on GCE/GKE with a service account.") from None
        except gx.RefreshError as exc:
            raise CloudError("credentials", f"Google Cloud refused to issue a token ({type(exc).__name__}).",
                             "Check the service account exists, is enabled, and its key is valid.") from None
        except gx.TransportError:
            raise CloudError("unreachable", "The Google token endpoint could not be reached.",
                             "Check the probe's network path / proxy.") from None
        return credentials.token

    def _get(self, service: str, op: str, path: str, params: dict | None = None) -> dict:
        doc, _ = self.http.call(service, op, "GET", f"{self.url[service]}{path}", token=self.token(), params=params)
        return doc

    # -- BigQuery ----------------------------------------------------------------------
    def query(self, project: str, sql: str, parameters: list[dict], max_bytes: int) -> dict:
        """Run ``sql`` (standard SQL, named parameters) and return ``{"fields", "rows", "billed"}``.

        ``maximumBytesBilled`` makes BigQuery refuse a query that would bill more,
        before it runs; ``totalBytesBilled`` of the answer is what it cost. Result pages
        (``pageToken``) and an unfinished job (``jobComplete: false``) are read with
        ``jobs.getQueryResults``.
        """
        body = {"query": sql, "useLegacySql": False, "parameterMode": "NAMED", "queryParameters": parameters,
                "maximumBytesBilled": str(int(max_bytes)), "timeoutMs": QUERY_TIMEOUT_MS, "useQueryCache": True}
        try:
            doc, _ = self.http.call("bigquery", "jobs.query", "POST",
                                    f"{self.url['bigquery']}/bigquery/v2/projects/{project}/queries",
                                    token=self.token(), body=body)
        except CloudError as exc:
            if exc.code == "INVALID_ARGUMENT" and "bytes billed" in exc.problem.lower():
                raise CloudError("denied", "BigQuery refused the billing query: it would bill more than "
                                 f"--max-billed-gb ({max_bytes / 1e9:g} GB).",
                                 "Is the export table partitioned (_PARTITIONTIME)? Raise --max-billed-gb only "
                                 "after checking the table.") from None
            raise
        billed = int(doc.get("totalBytesBilled") or 0)
        fields = [f.get("name") for f in (doc.get("schema") or {}).get("fields") or []]
        rows = list(doc.get("rows") or [])
        job = doc.get("jobReference") or {}
        complete = bool(doc.get("jobComplete"))
        token = doc.get("pageToken")
        for _ in range(MAX_PAGES):
            if complete and not token:
                break
            params = {"timeoutMs": str(QUERY_TIMEOUT_MS), "maxResults": "10000"}
            if job.get("location"):
                params["location"] = job["location"]
            if token:
                params["pageToken"] = token
            page = self._get("bigquery", "jobs.getQueryResults",
                             f"/bigquery/v2/projects/{quote(job.get('projectId', project))}/queries/"
                             f"{quote(str(job.get('jobId', '')), safe='')}", params)
            if not complete and page.get("jobComplete"):
                complete = True
                fields = [f.get("name") for f in (page.get("schema") or {}).get("fields") or []]
                # getQueryResults reports bytes processed, not billed: bill as BigQuery does (10 MB minimum).
                billed = max(MIN_BILLED_BYTES, int(page.get("totalBytesProcessed") or 0))
            if page.get("jobComplete"):
                rows.extend(page.get("rows") or [])
                token = page.get("pageToken")
        self.bytes_billed += billed
        return {"fields": fields, "rows": [[c.get("v") for c in r.get("f") or []] for r in rows], "billed": billed}

    # -- budgets, fleet, prices -----------------------------------------------------------
    def budgets(self, billing_account: str) -> list[dict]:
        return self._listed("budgets", "budgets.list", f"/v1/billingAccounts/{billing_account}/budgets",
                            {"pageSize": "100"}, "budgets")

    def instances(self, project: str) -> list[dict]:
        """Running instances of every zone (``aggregatedList``; zones with only a warning are skipped)."""
        out, params = [], {"filter": 'status = "RUNNING"', "maxResults": "500", "returnPartialSuccess": "true"}
        for _ in range(MAX_PAGES):
            doc = self._get("compute", "instances.aggregatedList", f"/compute/v1/projects/{project}/aggregated/instances",
                            params)
            for scope in (doc.get("items") or {}).values():
                out.extend(scope.get("instances") or [])
            if not doc.get("nextPageToken"):
                break
            params = dict(params, pageToken=doc["nextPageToken"])
        return out

    def tpu_nodes(self, project: str) -> list[dict]:
        return self._listed("tpu", "nodes.list", f"/v2/projects/{project}/locations/-/nodes", {"pageSize": "100"},
                            "nodes")

    def skus(self, service_id: str) -> list[dict]:
        return self._listed("billing", "services.skus.list", f"/v1/services/{service_id}/skus",
                            {"currencyCode": "USD", "pageSize": "5000"}, "skus")

    def _listed(self, service: str, op: str, path: str, params: dict, key: str) -> list[dict]:
        out = []
        for _ in range(MAX_PAGES):
            doc = self._get(service, op, path, params)
            out.extend(doc.get(key) or [])
            if not doc.get("nextPageToken"):
                break
            params = dict(params, pageToken=doc["nextPageToken"])
        return out
