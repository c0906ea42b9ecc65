"""Least privilege for Azure and Google Cloud: the shipped roles grant exactly what the backends call.

Like ``test_gpu_spend_policy.py`` for AWS: the backends refuse any call their table does
not map to an RBAC action / IAM permission, so a new call cannot be added without one;
the e2e tests check that a scan makes exactly the table's calls. Also: parameters, retry
headers, and that a scan answered from the cache imports no cloud library.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prtg_ai.backends import azure, cloud_http, gcp

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("backend, cloud, table", [(azure, "Azure", azure.RBAC_ACTIONS),
                                                   (gcp, "Google Cloud", {k: "x" for k in gcp.IAM_PERMISSIONS})])
def test_a_call_outside_the_role_table_is_refused_before_any_request(backend, cloud, table):
    # What keeps the tables (and so the roles) complete: a new call without its permission fails
    # in every test that reaches it; the e2e tests check one scan makes exactly the table's calls.
    http = cloud_http.Http(cloud, table, backend.ROLE_FILE, {})
    called, sent = set(cloud_http.CALLED), dict(cloud_http.SENT)
    with pytest.raises(LookupError, match=f"{cloud} compute delete is not in the backend's table"):
        http.call("compute", "delete", "DELETE", "http://127.0.0.1:9/anything", token="t0ken")
    assert (set(cloud_http.CALLED), dict(cloud_http.SENT)) == (called, sent)  # nothing was sent


def test_azure_role_grants_exactly_the_needed_actions():
    role = json.loads((REPO / azure.ROLE_FILE).read_text(encoding="utf-8"))["properties"]
    assert len(role["permissions"]) == 1
    perm = role["permissions"][0]
    assert perm["notActions"] == [] and perm["dataActions"] == [] and perm["notDataActions"] == []
    granted = perm["actions"]
    assert len(granted) == len(set(granted)) and not any("*" in a for a in granted)
    assert set(granted) == {a for a in azure.RBAC_ACTIONS.values() if a}
    assert all(a.endswith("/read") for a in granted)  # a reader: nothing that writes or acts


def test_gcp_role_grants_exactly_the_needed_permissions():
    role = yaml.safe_load((REPO / gcp.ROLE_FILE).read_text(encoding="utf-8"))
    granted = role["includedPermissions"]
    assert len(granted) == len(set(granted)) and not any("*" in p for p in granted)
    assert set(granted) == {p for perms in gcp.IAM_PERMISSIONS.values() for p in perms}
    assert not any(p.endswith((".create", ".delete", ".update", ".setIamPolicy")) and p != "bigquery.jobs.create"
                   for p in granted)


@pytest.mark.parametrize("headers, wait", [
    ({"x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after": "1800", "Retry-After": "60"}, 1800.0),
    ({"x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after": "45"}, 45.0),
    ({"Retry-After": "7"}, 7.0),
    ({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, None),
    ({"x-ms-ratelimit-remaining-microsoft.costmanagement-entity-requests": "DefaultQuota:7"}, None),
    ({"Retry-After": "9999999"}, cloud_http.MAX_RETRY_AFTER_S),
])
def test_retry_headers(headers, wait):
    assert cloud_http.retry_after_s(headers) == wait


@pytest.mark.parametrize("status, kind", [(401, "credentials"), (403, "denied"), (429, "throttled"),
                                          (404, "denied"), (500, "failed"), (503, "failed"), (400, "failed")])
def test_http_statuses_are_classified(status, kind):
    http = cloud_http.Http("Azure", azure.RBAC_ACTIONS, azure.ROLE_FILE, {})
    err = http.translate("costmanagement", "Query", status, {"error": {"code": "X", "message": "m"}}, {})
    assert err.kind == kind
    assert err.transient == (kind in ("throttled", "failed"))


def test_a_cache_hit_imports_no_cloud_library(tmp_path):
    """Seed fresh caches by hand, then a scan in a new interpreter must not import requests, azure or google."""
    # The seeding goes through the sensor module's own cache identities: build them in-process here.
    import time

    from prtg_ai.gpu_spend import spend_model as sm
    from prtg_ai.gpu_spend.ce_cache import SharedCache
    from prtg_ai.core.context import Context
    from prtg_ai.gpu_spend import azure as az
    from prtg_ai.gpu_spend import gcp as gc

    now = time.time()
    env = {}

    class Fake:  # just what a Provider reads
        def __init__(self, values):
            self.ctx = Context(state_dir=tmp_path, env=env)
            self.values = values

    base = {"ce_refresh_hours": 6.0, "live_refresh": 300.0, "idle_gpu_percent": 5.0, "idle_cpu_percent": 10.0,
            "idle_window": 1800.0, "max_billed_gb": 1.0}
    providers = [az.Provider(Fake(dict(base, subscription="00000000-1111-2222-3333-444444444444"))),
                 gc.Provider(Fake(dict(base, billing_table="ml-prod-1234.billing.export")))]
    day = sm.utc_day(now).isoformat()
    for p in providers:
        for ident, data in ((p.cost_identity(), {"fetched_at": now, "daily": {day: {"usd": 5.0, "estimated": False}},
                                                 "through": day}),
                            (p.live_identity(), {"fetched_at": now, "burn": sm.Burn(instances=1, gpus=1.0).to_json()})):
            with SharedCache(tmp_path, ident).session() as state:
                state.data.update(data)
    probe = (
        "import sys\n"
        "from prtg_ai.core.context import Context\n"
        "from prtg_ai.core.runtime import run_sensor\n"
        f"ctx = Context(state_dir={str(tmp_path)!r}, env={{}})\n"
        "for args in (['--cloud','azure','--subscription','00000000-1111-2222-3333-444444444444'],"
        " ['--cloud','gcp','--billing-table','ml-prod-1234.billing.export']):\n"
        "    r = run_sensor('gpu_spend', args, ctx)\n"
        "    assert not r.error, r.message()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'requests','azure','google','msal','urllib3','boto3'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("cloud, args, fleet, billing", [
    ("azure", ["--subscription", "00000000-1111-2222-3333-444444444444"], "Azure fleet data", "Cost Management data"),
    ("gcp", ["--billing-table", "ml-prod-1234.billing.export"], "Google Cloud fleet data",
     "BigQuery billing export data"),
])
def test_failed_refreshes_serve_the_cache_with_its_age_or_warn(tmp_path, cloud, args, fleet, billing):
    """Both refreshes failed a minute ago (in back-off, so nothing is asked): the cost data,
    fetched 2 h ago, is served with its error and age; the fleet part never had data: a warning."""
    import time

    from prtg_ai.core.context import Context
    from prtg_ai.core.runtime import run_sensor
    from prtg_ai.gpu_spend import spend_model as sm
    from prtg_ai.gpu_spend.ce_cache import SharedCache
    from prtg_ai.gpu_spend import azure as az
    from prtg_ai.gpu_spend import gcp as gc

    now = time.time()
    ctx = Context(state_dir=tmp_path, env={})

    class Fake:  # just what a Provider reads
        def __init__(self, values):
            self.ctx, self.values = ctx, values

    values = {"ce_refresh_hours": 6.0, "live_refresh": 300.0, "idle_gpu_percent": 5.0, "idle_cpu_percent": 10.0,
              "idle_window": 1800.0, "max_billed_gb": 1.0, args[0].lstrip("-").replace("-", "_"): args[1]}
    provider = (az if cloud == "azure" else gc).Provider(Fake(values))
    day = sm.utc_day(now).isoformat()
    failure = {"at": now - 60, "count": 1, "kind": "throttled", "text": "The cloud throttled us (429)."}
    seeds = ((provider.cost_identity(), {"fetched_at": now - 7200, "through": day, "failure": failure,
                                         "daily": {day: {"usd": 5.0, "estimated": False}}}),
             (provider.live_identity(), {"failure": dict(failure, text="The fleet API timed out.")}))
    for ident, data in seeds:
        with SharedCache(tmp_path, ident).session() as state:
            state.data.update(data)
    result = run_sensor("gpu_spend", ["--cloud", cloud, *args], ctx)
    assert not result.error, result.message()
    assert result.warning
    message = result.message()
    assert f"The cloud throttled us (429). Serving {billing} fetched 2.0 h ago" in message
    assert f"{fleet} unavailable: The fleet API timed out." in message
