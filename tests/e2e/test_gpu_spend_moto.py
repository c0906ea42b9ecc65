"""``gpu_spend`` end to end: boto3 over HTTP to moto's server on 127.0.0.1, never to AWS.

The sensor talks to the counting, fault-injecting front of ``tests/fakes/aws_moto.py``
(moto's ThreadedMotoServer behind it); the fixtures here start one per module.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

pytest.importorskip("moto.server")
from fakes.aws_moto import (  # noqa: E402
    DAY, MOTO_SPOT, ON_DEMAND, SECRET, aws, aws_env, create_budget, days_of, front, moto_server, queue_costs,
    seed_fleet, september,
)
from prtg_ai.backends import aws as aws_backend  # noqa: E402
from prtg_ai.core.context import Context  # noqa: E402
from prtg_ai.core.runtime import run_sensor  # noqa: E402
from support import channels, check_result, cli_env, run_cli  # noqa: E402

POLICY = Path(__file__).resolve().parents[2] / "installer" / "assets" / "iam" / "prtg-ai-gpu-spend-policy.json"


@pytest.fixture
def spend_clock(clock):
    clock.now = DAY.timestamp()
    return clock


@pytest.fixture
def ctx_for(tmp_path, spend_clock):
    def _make(state: str = "state", **env_overrides) -> Context:
        env = dict(os.environ)
        env.update(env_overrides)
        return Context(state_dir=tmp_path / state, clock=spend_clock, env=env)
    return _make


def run(ctx: Context, *argv) -> tuple:
    result = run_sensor("gpu_spend", [str(a) for a in argv], ctx)
    doc = check_result("gpu_spend", result)
    return result, doc


BUSY_BURN = ON_DEMAND["p5.48xlarge"] + ON_DEMAND["inf2.48xlarge"] + ON_DEMAND["g6f.large"] + MOTO_SPOT
IDLE_BURN = ON_DEMAND["p4d.24xlarge"] + ON_DEMAND["g5.xlarge"] + ON_DEMAND["trn1.32xlarge"]


# -- the numbers ---------------------------------------------------------------------------
def test_burn_gpus_idle_and_billed_spend_match_what_was_seeded(aws, ctx_for):
    seed_fleet(aws["moto"], DAY)
    queue_costs(aws["moto"], september())
    create_budget(aws["moto"], "gpu-monthly", limit=5000, actual=2090, forecast=3050)
    result, doc = run(ctx_for())
    assert not result.error, result.message()
    ch = channels(result)
    assert ch["Running GPU Instances"] == 7                      # m5.large is not counted
    assert ch["Spot GPU Instances"] == 1
    assert ch["GPUs"] == pytest.approx(8 + 8 + 1 + 1 + 0.125)    # p5, p4d, g5, g6, g6f (1/8 L4)
    assert ch["AI Accelerators"] == 12 + 16                      # inf2 Inferentia2, trn1 Trainium
    assert ch["Burn Rate"] == pytest.approx(BUSY_BURN + IDLE_BURN, abs=1e-4)
    assert ch["Idle GPU Instances"] == 3                         # p4d (GPU 2 %), g5 and trn1 (CPU)
    assert ch["Idle Burn Rate"] == pytest.approx(IDLE_BURN, abs=1e-4)
    assert ch["Unpriced GPU Instances"] == 0
    assert ch["Instance Data Age"] == 0
    # Cost Explorer: 19 days x $100 + $150 yesterday + $40 today so far.
    assert ch["GPU Spend Month To Date"] == pytest.approx(2090.0)
    assert ch["GPU Spend Yesterday"] == pytest.approx(150.0)
    # Forecast (fake: $1000 for today..month end) + actual before today ($2050).
    assert ch["GPU Spend Projected Month End"] == pytest.approx(3050.0)
    assert ch["Projection Source"] == 1
    assert ch["Budget Used"] == pytest.approx(100 * 2090 / 5000)
    assert ch["Budget Projected Use"] == pytest.approx(100 * 3050 / 5000)
    assert ch["Cost Data Age"] == 0
    assert ch["Cost Explorer Requests Today"] == 2
    assert aws["front"].counts["ce:GetCostAndUsage"] == 1
    assert aws["front"].counts["ce:GetCostForecast"] == 1
    assert "7 GPU instances" in doc["prtg"]["text"] and "gpu-monthly" in doc["prtg"]["text"]


def test_explicit_budget_and_own_projection_when_no_forecast(aws, ctx_for):
    seed_fleet(aws["moto"], DAY)
    queue_costs(aws["moto"], september())
    aws["front"].forecast = None  # DataUnavailableException: too little history
    result, _ = run(ctx_for(), "--budget", "4000")
    ch = channels(result)
    # Sensor projection: actual before today ($2050) + last 7 complete days' average x 10 days left.
    average = (5 * 100.0 + 100.0 + 150.0) / 7
    assert ch["Projection Source"] == 2
    assert ch["GPU Spend Projected Month End"] == pytest.approx(round(2050.0 + average * 10, 2))
    assert ch["Budget Used"] == pytest.approx(100 * 2090 / 4000)
    assert ch["Budget Projected Use"] == pytest.approx(round(100 * (2050.0 + average * 10) / 4000, 2), abs=0.01)


def test_burn_rate_projection_on_the_first_day_without_history(aws, ctx_for, spend_clock):
    spend_clock.now = datetime(2026, 9, 1, 6, 0, tzinfo=timezone.utc).timestamp()
    seed_fleet(aws["moto"], datetime(2026, 9, 1, 6, 0, tzinfo=timezone.utc))
    queue_costs(aws["moto"], {"2026-09-01": 12.0})  # no complete day yet
    aws["front"].forecast = None
    result, _ = run(ctx_for())
    ch = channels(result)
    assert ch["Projection Source"] == 3
    hours_left = 30 * 24 - 6
    assert ch["GPU Spend Projected Month End"] == pytest.approx(12.0 + ch["Burn Rate"] * hours_left, abs=0.05)
    assert "GPU Spend Yesterday" not in ch  # nothing for Aug 31 in the answer


def test_more_regions_add_up(aws, ctx_for):
    seed_fleet(aws["moto"], DAY)
    import boto3

    ec2_eu = boto3.client("ec2", region_name="eu-west-1", endpoint_url=aws["moto"],
                                       aws_access_key_id="AKIASEED", aws_secret_access_key="seed")
    ec2_eu.run_instances(ImageId="ami-12c6146b", MinCount=2, MaxCount=2, InstanceType="g5.xlarge")
    queue_costs(aws["moto"], september())
    result, _ = run(ctx_for(), "--region", "us-east-1,eu-west-1")
    ch = channels(result)
    assert ch["Running GPU Instances"] == 9
    # The pricing fake knows us-east-1 only: the two eu-west-1 g5 are reported unpriced, not guessed.
    assert ch["Unpriced GPU Instances"] == 2
    assert ch["Burn Rate"] == pytest.approx(BUSY_BURN + IDLE_BURN, abs=1e-4)
    assert "No price found for g5.xlarge" in result.message()


# -- the cost cap --------------------------------------------------------------------------
def test_a_day_of_60s_scans_buys_five_cost_explorer_requests_not_2880(aws, ctx_for, spend_clock):
    start = datetime(2026, 9, 21, 0, 0, 30, tzinfo=timezone.utc)
    spend_clock.now = start.timestamp()
    seed_fleet(aws["moto"], start)
    queue_costs(aws["moto"], september())
    ctx = ctx_for()
    scans = 1440
    seen_requests = []
    for i in range(scans):
        result = run_sensor("gpu_spend", ["--live-refresh", "1h"], ctx)
        assert not result.error, result.message()
        if i in (0, scans - 1):
            check_result("gpu_spend", result)
        seen_requests.append(channels(result)["Cost Explorer Requests Today"])
        spend_clock.advance(60)
    front = aws["front"]
    # Refreshes at 00:00, 06:00, 12:00 and 18:00 re-query the last days; the forecast once a day.
    assert front.counts["ce:GetCostAndUsage"] == 4
    assert front.counts["ce:GetCostForecast"] == 1
    assert seen_requests[-1] == front.ce_requests() == 5
    assert seen_requests[0] == 2 and max(seen_requests) == 5
    naive = scans * 2  # a sensor asking CostAndUsage + forecast every scan
    ratio = naive / front.ce_requests()
    print(f"\nCost Explorer requests over {scans} scans at 60 s: pack {front.ce_requests()}, naive {naive}, "
          f"ratio {ratio:.0f}x; EC2 DescribeInstances calls {front.counts['ec2:DescribeInstances']}")
    assert ratio >= 500
    # The live view refreshed hourly, not per scan.
    assert front.counts["ec2:DescribeInstances"] == 24
    # Pricing once a day per type (6 on-demand GPU types), types once.
    assert front.counts["pricing:GetProducts"] == 6
    assert front.counts["ec2:DescribeInstanceTypes"] == 1


def test_two_sensors_share_one_cost_cache_across_credentials_of_the_same_account(aws, ctx_for):
    seed_fleet(aws["moto"], DAY)
    queue_costs(aws["moto"], september())
    first, _ = run(ctx_for(), "--budget", "5000")
    # A second sensor: other parameters, other access key (same moto account 123456789012).
    second, _ = run(ctx_for(AWS_ACCESS_KEY_ID="AKIAOTHERKEY0000000"), "--idle-cpu-percent", "60")
    assert aws["front"].counts["ce:GetCostAndUsage"] == 1
    assert aws["front"].counts["sts:GetCallerIdentity"] == 2  # each credential learns its account once
    assert channels(first)["GPU Spend Month To Date"] == channels(second)["GPU Spend Month To Date"] == 2090.0
    assert channels(second)["Cost Explorer Requests Today"] == 2
    # Different idle threshold: its own live view (the g6 spot at 50 % CPU is idle below 60 %).
    assert channels(second)["Idle GPU Instances"] == channels(first)["Idle GPU Instances"] + 2  # g6 and inf2


def test_late_corrections_are_picked_up_by_requerying_the_last_two_days(aws, ctx_for, spend_clock):
    seed_fleet(aws["moto"], DAY)
    # First refresh asks for Sept 1..21; the next one (6 h later) for Sept 19..21 only.
    queue_costs(aws["moto"], september(), {"2026-09-19": 100.0, "2026-09-20": 180.0, "2026-09-21": 95.0})
    ctx = ctx_for()
    run(ctx)
    spend_clock.advance(6 * 3600 + 1)
    result, _ = run(ctx)
    ch = channels(result)
    assert ch["GPU Spend Yesterday"] == 180.0
    assert ch["GPU Spend Month To Date"] == pytest.approx(18 * 100.0 + 100.0 + 180.0 + 95.0)
    assert aws["front"].counts["ce:GetCostAndUsage"] == 2


# -- faults ----------------------------------------------------------------------------------
def test_throttling_serves_the_cached_value_with_its_age_and_backs_off(aws, ctx_for, spend_clock):
    seed_fleet(aws["moto"], DAY)
    queue_costs(aws["moto"], september())
    ctx = ctx_for()
    run(ctx)
    aws["front"].faults["ce:GetCostAndUsage"] = "throttle"
    spend_clock.advance(7 * 3600)
    result, doc = run(ctx)
    assert not result.error
    ch = channels(result)
    assert ch["GPU Spend Month To Date"] == 2090.0
    assert ch["Cost Data Age"] == pytest.approx(7.0)
    assert "throttled" in doc["prtg"]["text"] and "7.0 h ago" in doc["prtg"]["text"]
    assert "LimitExceededException" in doc["prtg"]["text"]
    assert aws["front"].counts["ce:GetCostAndUsage"] == 2
    # No retry storm: the next 14 scans (1 min apart) are inside the 15 min back-off.
    for _ in range(14):
        spend_clock.advance(60)
        result, _ = run(ctx)
        assert not result.error
    assert aws["front"].counts["ce:GetCostAndUsage"] == 2
    spend_clock.advance(120)
    result, _ = run(ctx)
    assert aws["front"].counts["ce:GetCostAndUsage"] == 3          # one retry after the back-off
    assert channels(result)["Cost Explorer Requests Today"] == 4  # 2 + two throttled attempts
    # Throttling ends: the next attempt (after a 30 min back-off now) succeeds.
    del aws["front"].faults["ce:GetCostAndUsage"]
    spend_clock.advance(31 * 60)
    result, doc = run(ctx)
    assert channels(result)["Cost Data Age"] == 0
    assert "throttled" not in doc["prtg"]["text"]


def test_ec2_throttling_serves_the_cached_fleet(aws, ctx_for, spend_clock):
    seed_fleet(aws["moto"], DAY)
    queue_costs(aws["moto"], september())
    ctx = ctx_for()
    first, _ = run(ctx)
    aws["front"].faults["ec2:DescribeInstances"] = "throttle"
    spend_clock.advance(600)
    result, doc = run(ctx)
    assert not result.error
    assert channels(result)["Burn Rate"] == channels(first)["Burn Rate"]
    assert channels(result)["Instance Data Age"] == 600
    assert "RequestLimitExceeded" in doc["prtg"]["text"] and "10 min ago" in doc["prtg"]["text"]
    # botocore's own retry is limited to one: two attempts at the server, not a storm.
    assert aws["front"].counts["ec2:DescribeInstances"] == 1 + 2


@pytest.mark.parametrize("operation, action", [
    ("ce:GetCostAndUsage", "ce:GetCostAndUsage"),
    ("ce:GetCostForecast", "ce:GetCostForecast"),
    ("ec2:DescribeInstances", "ec2:DescribeInstances"),
    ("pricing:GetProducts", "pricing:GetProducts"),
])
def test_access_denied_names_the_missing_iam_action(aws, ctx_for, operation, action):
    seed_fleet(aws["moto"], DAY)
    queue_costs(aws["moto"], september())
    aws["front"].faults[operation] = "deny"
    result, doc = run(ctx_for())
    assert result.error
    text = doc["prtg"]["text"]
    assert f"lack IAM permission {action}" in text
    assert "prtg-ai-gpu-spend-policy.json" in text
    assert "Traceback" not in text and SECRET not in text


def test_denied_budgets_only_matter_when_a_budget_is_asked_for(aws, ctx_for):
    seed_fleet(aws["moto"], DAY)
    queue_costs(aws["moto"], september())
    aws["front"].faults["budgets:DescribeBudgets"] = "deny"
    result, doc = run(ctx_for(), "--budget-name", "gpu-monthly")
    assert not result.error
    assert "budgets:ViewBudget" in doc["prtg"]["text"]
    assert "Budget Used" not in channels(result)


def test_no_credentials(aws, ctx_for, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result, doc = run(ctx_for())
    assert result.error
    assert "No AWS credentials found" in doc["prtg"]["text"]
    assert "--profile" in doc["prtg"]["text"]
    assert sum(aws["front"].counts.values()) == 0


def test_unknown_profile(aws, ctx_for):
    result, doc = run(ctx_for(), "--profile", "nosuchprofile")
    assert result.error
    assert "profile" in doc["prtg"]["text"] and "not found" in doc["prtg"]["text"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_endpoint_without_a_cache_is_a_clear_error(aws, ctx_for, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    started = time.monotonic()
    result, doc = run(ctx_for())
    assert result.error
    assert "could not be reached" in doc["prtg"]["text"] and "127.0.0.1" in doc["prtg"]["text"]
    assert time.monotonic() - started < 20


def test_server_stopping_mid_run_serves_the_cache(aws, ctx_for, spend_clock, monkeypatch):
    seed_fleet(aws["moto"], DAY)
    queue_costs(aws["moto"], september())
    ctx = ctx_for()
    first, _ = run(ctx)
    # The server behind the endpoint goes away: the front now drops every connection unanswered
    # (the endpoint URL itself stays the same, as it would in production).
    port = aws["front"].moto_port
    aws["front"].moto_port = _closed_port()
    try:
        spend_clock.advance(7 * 3600)
        result, doc = run(ctx)
    finally:
        aws["front"].moto_port = port
    assert not result.error, doc
    ch = channels(result)
    assert ch["Burn Rate"] == channels(first)["Burn Rate"]
    assert ch["Cost Data Age"] == pytest.approx(7.0)
    assert ch["Instance Data Age"] == 7 * 3600
    assert "ago" in doc["prtg"]["text"]


def test_corrupt_cache_is_set_aside_and_refetched(aws, ctx_for, spend_clock):
    seed_fleet(aws["moto"], DAY)
    queue_costs(aws["moto"], september())
    ctx = ctx_for()
    run(ctx)
    for path in ctx.state_dir.glob("gpu_spend-*.json"):
        path.write_bytes(b'{"format": "prtg-ai-state", "vers')  # truncated write
    result, doc = run(ctx)
    assert not result.error
    assert "set it aside" in doc["prtg"]["text"]
    assert list(ctx.state_dir.glob("gpu_spend-*.corrupt"))
    ch = channels(result)
    assert ch["Running GPU Instances"] == 7
    # The cost cache was lost: it is refetched (same request body -> moto's same answer).
    assert ch["GPU Spend Month To Date"] == 2090.0
    assert aws["front"].counts["ce:GetCostAndUsage"] == 2


def test_unwritable_state_folder_never_queries_cost_explorer(aws, ctx_for, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    ctx = Context(state_dir=blocker / "state", clock=ctx_for().clock, env=dict(os.environ))
    seed_fleet(aws["moto"], DAY)
    for _ in range(3):
        result, doc = run(ctx)
    assert aws["front"].counts["ce:GetCostAndUsage"] == 0
    assert "without a cache every scan would cost" in doc["prtg"]["text"]
    assert channels(result)["Running GPU Instances"] == 7  # the free live view still works


# -- whole process -----------------------------------------------------------------------------
def _cli(tmp_path, front_url, extra=None):
    return cli_env(tmp_path / "cli-state", {**aws_env(front_url), **(extra or {})})


def test_cli_runs_reuse_the_cache_and_fresh_runs_never_import_boto3(aws, tmp_path):
    seed_fleet(aws["moto"], datetime.now(timezone.utc))
    today = datetime.now(timezone.utc).date()
    queue_costs(aws["moto"], {d: 10.0 for d in days_of(min(today.replace(day=1), today - timedelta(days=2)).isoformat(),
                                                       (today + timedelta(days=1)).isoformat())})
    env = _cli(tmp_path, aws["front"].url)
    doc, _ = run_cli(["run", "gpu_spend"], env)
    assert "error" not in doc["prtg"], doc
    assert channels(doc)["Running GPU Instances"] == 7
    for _ in range(3):
        doc, _ = run_cli(["run", "gpu_spend"], env)
    assert aws["front"].ce_requests() == 2
    assert aws["front"].counts["ec2:DescribeInstances"] == 1
    probe = ("import sys; from prtg_ai.cli import main; main(['run', 'gpu_spend']); "
             "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 's3transfer')); "
             "print('LOADED=' + ','.join(loaded), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED=\n" in proc.stderr or proc.stderr.strip().endswith("LOADED="), proc.stderr
    assert json.loads(proc.stdout)["prtg"]["result"]
    # Whereas a run that must refresh does load it (the probe is not vacuous).
    env_stale = dict(env, PRTG_AI_STATE_DIR=str(tmp_path / "other-state"))
    proc = subprocess.run([sys.executable, "-c", probe], env=env_stale, capture_output=True, text=True, timeout=60)
    assert "botocore" in proc.stderr and "boto3" in proc.stderr


def test_secret_key_never_reaches_stdout_or_the_log(aws, tmp_path):
    env = _cli(tmp_path, aws["front"].url, {"PRTG_AI_LOG_LEVEL": "DEBUG"})
    aws["front"].faults["ce:GetCostAndUsage"] = "deny"
    outputs = []
    doc, proc = run_cli(["run", "gpu_spend"], env)
    outputs.append(proc.stdout + proc.stderr)
    assert doc["prtg"]["error"] == 1
    env_down = dict(env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{_closed_port()}",
                    PRTG_AI_STATE_DIR=str(tmp_path / "down"))
    doc, proc = run_cli(["run", "gpu_spend"], env_down)
    outputs.append(proc.stdout + proc.stderr)
    assert doc["prtg"]["error"] == 1 and "could not be reached" in doc["prtg"]["text"]
    # A secret that is also used as a bogus profile name must be scrubbed where it is echoed.
    doc, proc = run_cli(["run", "gpu_spend", "--profile", SECRET], env)
    outputs.append(proc.stdout + proc.stderr)
    assert doc["prtg"]["error"] == 1
    logs = [p.read_text() for base in (tmp_path / "cli-state", tmp_path / "down") for p in base.glob("*.log*")]
    assert logs, "the runs should have logged something at DEBUG"
    for text in outputs + logs:
        assert SECRET not in text
        assert "Traceback" not in text or text in logs


# -- least privilege ------------------------------------------------------------------------------
def test_every_call_the_backend_makes_is_in_the_iam_policy_and_nothing_more(aws, ctx_for):
    seed_fleet(aws["moto"], DAY)
    queue_costs(aws["moto"], september())
    create_budget(aws["moto"], "gpu-monthly", limit=5000, actual=2090, forecast=3050)
    aws_backend.CALLED.clear()
    run(ctx_for())
    called = set(aws_backend.CALLED)
    # A full refresh exercises every operation the backend knows.
    assert called == set(aws_backend.IAM_ACTIONS)
    needed = {a for a in (aws_backend.IAM_ACTIONS[c] for c in called) if a}
    policy = json.loads(POLICY.read_text())
    granted = {a for st in policy["Statement"] if st["Effect"] == "Allow" for a in st["Action"]}
    assert granted == needed
    # And what reached the server matches (no call bypassed the table).
    served = {op for op in aws["front"].counts}
    assert served == {f"{s}:{o}" for s, o in called}


def test_cache_files_are_named_by_hashes_not_keys(aws, ctx_for):
    seed_fleet(aws["moto"], DAY)
    queue_costs(aws["moto"], september())
    ctx = ctx_for()
    run(ctx)
    names = [p.name for p in ctx.state_dir.iterdir()]
    assert any(n.startswith("gpu_spend-") for n in names)
    for p in ctx.state_dir.iterdir():
        if p.is_file():
            text = p.read_text(errors="replace")
            assert SECRET not in text and "AKIAIOSFODNN7EXAMPLE" not in text


# -- injected environment ---------------------------------------------------------------------
def test_an_injected_environment_drives_boto3_not_the_process_environment(aws, spend_clock, tmp_path, monkeypatch):
    seed_fleet(aws["moto"], DAY)
    queue_costs(aws["moto"], september())
    # The process points somewhere dead; the sensor's context points at the front.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    ctx = Context(state_dir=tmp_path / "state", clock=spend_clock, env=aws_env(aws["front"].url))
    result, _ = run(ctx)
    assert not result.error, result.message()
    assert channels(result)["Running GPU Instances"] == 7
    assert aws["front"].counts["ce:GetCostAndUsage"] == 1


def test_an_empty_injected_environment_never_falls_back_to_the_host_credentials(aws, spend_clock, tmp_path):
    # The process has working credentials and endpoint (the aws fixture); the context has none.
    ctx = Context(state_dir=tmp_path / "state", clock=spend_clock, env={})
    result, doc = run(ctx)
    assert result.error
    assert "No AWS credentials found" in doc["prtg"]["text"]
    assert sum(aws["front"].counts.values()) == 0


def test_per_service_endpoint_variables_are_honoured(aws, ctx_for, monkeypatch):
    seed_fleet(aws["moto"], DAY)
    queue_costs(aws["moto"], september())
    # Everything at a dead port except the services named per service: they reach the front.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    for name in ("COST_EXPLORER", "PRICING", "EC2", "CLOUDWATCH", "BUDGETS", "STS"):
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{name}", aws["front"].url)
    result, _ = run(ctx_for())
    assert not result.error, result.message()
    assert channels(result)["GPU Spend Month To Date"] == 2090.0
    assert aws["front"].counts["ce:GetCostAndUsage"] == 1


def test_simultaneous_first_scans_buy_cost_explorer_once(aws, tmp_path):
    """Four PRTG processes start together on an empty cache: the lock makes one refresh, the rest read it."""
    seed_fleet(aws["moto"], datetime.now(timezone.utc))
    today = datetime.now(timezone.utc).date()
    queue_costs(aws["moto"], {d: 10.0 for d in days_of(min(today.replace(day=1), today - timedelta(days=2)).isoformat(),
                                                       (today + timedelta(days=1)).isoformat())})
    env = _cli(tmp_path, aws["front"].url)
    procs = [subprocess.Popen([sys.executable, "-m", "prtg_ai.cli", "run", "gpu_spend"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    docs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "Traceback" not in out + err, err
        docs.append(json.loads(out))
    for doc in docs:
        assert "error" not in doc["prtg"], doc
        assert channels(doc)["Running GPU Instances"] == 7
        assert channels(doc)["GPU Spend Month To Date"] > 0
    assert aws["front"].counts["ce:GetCostAndUsage"] == 1
    assert aws["front"].counts["ce:GetCostForecast"] == 1
    assert aws["front"].counts["ec2:DescribeInstances"] == 1
