"""``prtg-ai act stop-idle-gpus`` end to end: real processes, boto3 over HTTP to moto on 127.0.0.1.

Topology (everything on 127.0.0.1, ports chosen by the OS):

    prtg-ai act (a process) -- boto3 --> StopFront (AWS_ENDPOINT_URL) --> moto's ThreadedMotoServer
                                          |  the gpu_spend e2e's Front: counts operations, fakes Pricing
                                          '- fails chosen operations, or StopInstances of chosen instances

moto supplies EC2 (instances, tags, hibernation options, DescribeInstanceTypes, StopInstances)
and CloudWatch (metrics put here with real timestamps). Instances are launched "hours ago"
by moving moto's own launch clock while they are created (moto sets LaunchTime from it);
the action itself runs on the real clock, as it does under PRTG.
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

pytest.importorskip("moto.server")

from fakes import aws_moto  # noqa: E402
from prtg_ai.actions import audit  # noqa: E402
from prtg_ai.core.context import Context  # noqa: E402
from prtg_ai.core.runtime import run_sensor  # noqa: E402
from support import channels, check_result, cli_env  # noqa: E402


SECRET = aws_moto.SECRET
PRICE = aws_moto.ON_DEMAND
OPT_IN = {"Key": "prtg-ai:auto-stop", "Value": "true"}
TRIGGER = ["--prtg-sensorid", "2345", "--prtg-sensor", "AWS GPU spend", "--prtg-device", "AWS GPU account",
           "--prtg-status", "Warning", "--prtg-message", "Idle Burn Rate above 20 USD/h"]


class StopFront(aws_moto.Front):
    """The gpu_spend Front, plus: StopInstances of chosen instances fails; StopInstances bodies kept."""

    def __init__(self, moto_port: int):
        super().__init__(moto_port)
        self.fail_stop: dict[str, str] = {}   # instance id -> error code
        self.stop_bodies: list[str] = []
        self.before: dict[str, object] = {}   # operation -> a callable run once before it is answered

    def reset(self):
        super().reset()
        self.fail_stop.clear()
        self.stop_bodies.clear()
        self.before.clear()

    def fault(self, handler, op: str, fault: str):
        if handler.headers.get("smithy-protocol") != "rpc-v2-cbor":
            return super().fault(handler, op, fault)
        # CloudWatch speaks Smithy RPC v2 CBOR in current botocore: answer the error in it.
        code = {"throttle": "ThrottlingException", "deny": "AccessDeniedException"}[fault]
        data = cbor_text_map({"__type": code, "message": "Rate exceeded" if fault == "throttle" else
                              f"User is not authorized to perform: {op}"})
        handler.send_response(400)
        handler.send_header("Content-Type", "application/cbor")
        handler.send_header("smithy-protocol", "rpc-v2-cbor")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def handle(self, handler):
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        op = self.operation(handler, body)
        with self.lock:
            hook = self.before.pop(op, None)
        if hook is not None:
            hook()
        if op == "ec2:StopInstances":
            text = body.decode("utf-8", "replace")
            with self.lock:
                self.stop_bodies.append(text)
            for iid, code in self.fail_stop.items():
                if f"={iid}" in text:
                    with self.lock:
                        self.counts[op] += 1
                    data = (f"<?xml version='1.0' encoding='UTF-8'?><Response><Errors><Error><Code>{code}</Code>"
                            f"<Message>The instance '{iid}' cannot be stopped now.</Message></Error></Errors>"
                            "<RequestID>fake</RequestID></Response>").encode()
                    handler.send_response(400)
                    handler.send_header("Content-Type", "text/xml")
                    handler.send_header("Content-Length", str(len(data)))
                    handler.end_headers()
                    handler.wfile.write(data)
                    return
        handler.rfile = io.BytesIO(body)  # the parent reads the body again
        super().handle(handler)


def cbor_text_map(doc: dict[str, str]) -> bytes:
    """A CBOR map of short text strings (RFC 8949: major type 5 map, major type 3 text)."""
    def text(value: str) -> bytes:
        raw = value.encode("utf-8")
        assert len(raw) < 256
        return (bytes([0x60 + len(raw)]) if len(raw) < 24 else bytes([0x78, len(raw)])) + raw
    assert len(doc) < 24
    return bytes([0xA0 + len(doc)]) + b"".join(text(k) + text(v) for k, v in doc.items())


moto_server = aws_moto.moto_server  # the shared module-scoped moto (tests/fakes/aws_moto.py)


@pytest.fixture(scope="module")
def front(moto_server):
    yield from aws_moto.running_front(StopFront, moto_server[1])


@pytest.fixture
def aws(moto_server, front, tmp_path):
    url = moto_server[0]
    urllib.request.urlopen(urllib.request.Request(url + "/moto-api/reset", method="POST"), timeout=10).read()
    front.reset()
    state = tmp_path / "state"
    env = cli_env(state, aws_moto.aws_env(front.url))
    env = {k: v for k, v in env.items() if not (k.startswith("AWS_") and k not in aws_moto.aws_env(front.url))}
    return {"moto": url, "front": front, "env": env, "state": state}


# -- the fleet --------------------------------------------------------------------------------
def launch(moto: str, itype: str, tags: dict[str, str] | None = None, hours_ago: float = 5.0,
           hibernation: bool = False) -> str:
    """One instance whose LaunchTime is ``hours_ago`` in the past (moto's launch clock moved meanwhile)."""
    import moto.ec2.models.instances as moto_instances

    ec2 = aws_moto.boto("ec2", moto)
    extra = {}
    if tags:
        extra["TagSpecifications"] = [{"ResourceType": "instance",
                                       "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    if hibernation:
        extra["HibernationOptions"] = {"Configured": True}
    real = moto_instances.utcnow
    moto_instances.utcnow = lambda: real() - timedelta(hours=hours_ago)
    try:
        inst = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType=itype,
                                 **extra)["Instances"][0]
    finally:
        moto_instances.utcnow = real
    return inst["InstanceId"]


def put_metrics(moto: str, iid: str, gpu: list[float] | None = None, cpu: float | None = None,
                net_bytes_per_5min: float | None = None, minutes: int = 75) -> None:
    """Five-minutely points over the last ``minutes`` (real timestamps), as CloudWatch would hold them."""
    cw = aws_moto.boto("cloudwatch", moto)
    now = datetime.now(timezone.utc)
    stamps = [now - timedelta(minutes=m) for m in range(1, minutes, 5)]

    def put(namespace, metric, dims, value):
        cw.put_metric_data(Namespace=namespace, MetricData=[
            {"MetricName": metric, "Dimensions": dims, "Timestamp": t, "Value": value} for t in stamps])

    for index, value in enumerate(gpu or []):
        put("CWAgent", "nvidia_smi_utilization_gpu",
            [{"Name": "InstanceId", "Value": iid}, {"Name": "index", "Value": str(index)}], value)
    dims = [{"Name": "InstanceId", "Value": iid}]
    if cpu is not None:
        put("AWS/EC2", "CPUUtilization", dims, cpu)
    if net_bytes_per_5min is not None:
        put("AWS/EC2", "NetworkIn", dims, net_bytes_per_5min)
        put("AWS/EC2", "NetworkOut", dims, net_bytes_per_5min)


def seed(moto: str) -> dict[str, str]:
    """Every kind of instance the rules tell apart; only three may be stopped.

    Stoppable (tagged, idle, old enough, GPU): p4d by GPU metrics ($21.96/h), trn1 by
    CPU+network ($21.50/h), g5 by CPU+network ($1.006/h). With --max-instances 2 the two
    dearest are stopped and g5 is over the cap.
    """
    tag = {OPT_IN["Key"]: OPT_IN["Value"]}
    ids = {
        "idle_gpu": launch(moto, "p4d.24xlarge", tag),
        "idle_trn": launch(moto, "trn1.32xlarge", {OPT_IN["Key"]: "TRUE"}),  # value case-insensitive
        "idle_cpu": launch(moto, "g5.xlarge", tag),
        "untagged": launch(moto, "p4d.24xlarge"),
        "protected": launch(moto, "g5.xlarge", {**tag, "prtg-ai:protect": "yes"}),
        "window": launch(moto, "g5.xlarge", {**tag, "prtg-ai:maintenance-window": "daily@00:00-00:00"}),
        "busy_gpu": launch(moto, "p5.48xlarge", tag),
        "busy_net": launch(moto, "g6.xlarge", tag),
        "young": launch(moto, "g5.xlarge", tag, hours_ago=0.5),
        "not_gpu": launch(moto, "m5.large", tag),
        "no_data": launch(moto, "g6f.large", tag),
    }
    put_metrics(moto, ids["idle_gpu"], gpu=[1.0, 0.5], cpu=30.0, net_bytes_per_5min=9e8)  # GPU evidence wins
    for key in ("idle_trn", "idle_cpu", "untagged", "protected", "window", "young", "not_gpu"):
        put_metrics(moto, ids[key], cpu=2.0, net_bytes_per_5min=3000.0)
    put_metrics(moto, ids["untagged"], gpu=[0.0])
    put_metrics(moto, ids["busy_gpu"], gpu=[0.0, 85.0], cpu=1.0, net_bytes_per_5min=100.0)
    put_metrics(moto, ids["busy_net"], cpu=3.0, net_bytes_per_5min=300 * 1024 * 1024.0)  # 1 MiB/s
    return ids


def states(moto: str) -> dict[str, str]:
    ec2 = aws_moto.boto("ec2", moto)
    out = {}
    for res in ec2.describe_instances()["Reservations"]:
        for inst in res["Instances"]:
            out[inst["InstanceId"]] = inst["State"]["Name"]
    return out


def act(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prtg_ai.cli", "act", "stop-idle-gpus", *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


class Done:
    """What an in-process run left: exit code and stdout, as ``subprocess.CompletedProcess`` names them."""

    def __init__(self, returncode: int, lines: list[str]):
        self.returncode, self.stdout, self.stderr = returncode, "\n".join(lines) + "\n", ""


def act_here(aws, execute: bool = False, max_instances: int = 3, hibernate: bool = False, state: Path | None = None):
    """The action in this process (no interpreter start-up): same code below the click command."""
    from prtg_ai.actions import idle_policy as ip
    from prtg_ai.actions import stop_idle_gpus as action

    lines: list[str] = []
    ctx = Context(env=dict(aws["env"]), state_dir=state or aws["state"])
    opts = action.Options(ip.Rules(max_instances=max_instances), execute=execute, hibernate=hibernate)
    return Done(action.run(ctx, opts, out=lines.append), lines)


def decisions(state: Path) -> dict[str, dict]:
    return {r["instance"]: r for r in audit.read_log(str(state)) if r["kind"] == "decision"}


def assert_clean(proc: subprocess.CompletedProcess, state: Path) -> None:
    """No secret and no traceback anywhere the action writes."""
    texts = [proc.stdout, proc.stderr]
    for p in state.iterdir():
        if p.is_file():
            texts.append(p.read_text(encoding="utf-8", errors="replace"))
    for text in texts:
        assert SECRET not in text
        assert "Traceback" not in text


# -- the decisions -------------------------------------------------------------------------------
def test_execute_stops_exactly_the_tagged_idle_gpu_instances_within_the_cap(aws):
    ids = seed(aws["moto"])
    proc = act(aws["env"], "--execute", "--max-instances", "2", *TRIGGER)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    now = states(aws["moto"])
    stopped = {k for k, iid in ids.items() if now[iid] == "stopped"}
    assert stopped == {"idle_gpu", "idle_trn"}
    assert aws["front"].counts["ec2:StopInstances"] == 2
    log = decisions(aws["state"])
    expect = {"idle_gpu": ("stop", "stopped", "idle"), "idle_trn": ("stop", "stopped", "idle"),
              "idle_cpu": ("skip", "none", "over-cap"), "untagged": ("skip", "none", "not-opted-in"),
              "protected": ("skip", "none", "protected"), "window": ("skip", "none", "in-window"),
              "busy_gpu": ("skip", "none", "busy"), "busy_net": ("skip", "none", "busy"),
              "young": ("skip", "none", "too-young"), "not_gpu": ("skip", "none", "not-gpu"),
              "no_data": ("skip", "none", "no-evidence")}
    assert {k: (log[ids[k]]["decision"], log[ids[k]]["action"], log[ids[k]]["reason_code"]) for k in expect} == expect
    # Which evidence decided, per instance.
    assert log[ids["idle_gpu"]]["evidence"]["source"] == "gpu"
    assert log[ids["idle_gpu"]]["evidence"]["gpu_max_percent"] == 1.0
    assert log[ids["idle_trn"]]["evidence"]["source"] == "cpu+network"
    assert log[ids["idle_trn"]]["evidence"]["cpu_max_percent"] == 2.0
    assert log[ids["idle_trn"]]["evidence"]["net_in_max_bytes_s"] == 10.0    # 3000 B per 300 s
    assert log[ids["busy_gpu"]]["evidence"]["gpu_max_percent"] == 85.0
    assert "network in reached 1024 KiB/s" in log[ids["busy_net"]]["reason"]
    assert log[ids["idle_gpu"]]["usd_per_hour"] == pytest.approx(PRICE["p4d.24xlarge"])
    assert log[ids["idle_trn"]]["usd_per_hour"] == pytest.approx(PRICE["trn1.32xlarge"])
    record = log[ids["idle_gpu"]]
    assert record["trigger"] == {"by": "prtg-notification", "sensorid": "2345", "sensor": "AWS GPU spend",
                                 "device": "AWS GPU account", "status": "Warning",
                                 "message": "Idle Burn Rate above 20 USD/h"}
    assert record["mode"] == "execute" and record["time"].endswith("Z")
    # The summary: one line per decision, totals last.
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 12
    assert lines[0].startswith(f"STOPPED {ids['idle_gpu']} p4d.24xlarge us-east-1 $21.96/h: idle ")
    assert lines[1].startswith(f"STOPPED {ids['idle_trn']} trn1.32xlarge")
    avoided = PRICE["p4d.24xlarge"] + PRICE["trn1.32xlarge"]
    assert lines[-1].startswith(f"stop-idle-gpus: 2 stopped (${avoided:,.2f}/h avoided), 9 skipped, 0 failed.")
    assert all(len(line) < 400 for line in lines)
    run = [r for r in audit.read_log(str(aws["state"])) if r["kind"] == "run"]
    assert len(run) == 1 and run[0]["exit"] == 0 and run[0]["totals"]["stop"] == 2
    assert audit.today_totals(str(aws["state"]), time.time()) == (2, pytest.approx(avoided))
    assert_clean(proc, aws["state"])
    # What reached AWS is the action's table (its policy is checked against the table in
    # tests/unit/test_stop_idle_gpus_policy.py), all of it but spot prices: no idle spot instance to price.
    from prtg_ai.backends import aws as backend

    called = {tuple(op.split(":")) for op in aws["front"].counts}
    assert called == set(backend.ACT_IAM_ACTIONS) - {("ec2", "DescribeSpotPriceHistory")}


def test_a_second_run_finds_nothing_more_to_stop_and_gpu_spend_shows_the_totals(aws):
    ids = seed(aws["moto"])
    first = act(aws["env"], "--execute", "--max-instances", "2")
    assert first.returncode == 0, first.stdout
    again = act(aws["env"], "--execute", "--max-instances", "2")
    assert again.returncode == 0, again.stdout
    # The cap is per run: the g5 left over by the first run goes now; nothing is stopped twice.
    assert [line.split()[1] for line in again.stdout.splitlines() if line.startswith("STOPPED")] == [ids["idle_cpu"]]
    assert aws["front"].counts["ec2:StopInstances"] == 3
    env = dict(aws["env"])
    ctx = Context(state_dir=aws["state"], env=env)
    result = run_sensor("gpu_spend", [], ctx)
    doc = check_result("gpu_spend", result)
    ch = channels(result)
    assert ch["Auto-Stopped Today"] == 3, doc
    assert ch["Burn Avoided"] == pytest.approx(PRICE["p4d.24xlarge"] + PRICE["trn1.32xlarge"] + PRICE["g5.xlarge"],
                                               abs=1e-4)


def test_dry_run_changes_nothing_and_says_what_it_would_do(aws):
    ids = seed(aws["moto"])
    before = states(aws["moto"])
    # A secret that reaches the action (here inside PRTG's message) is scrubbed from the log too.
    trigger = TRIGGER[:-1] + [f"{TRIGGER[-1]} {SECRET}"]
    proc = act(aws["env"], "--max-instances", "2", *trigger)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert states(aws["moto"]) == before
    assert aws["front"].counts["ec2:StopInstances"] == 0
    log = decisions(aws["state"])
    assert {k for k, iid in ids.items() if log[iid]["action"] == "would-stop"} == {"idle_gpu", "idle_trn"}
    assert all(r["mode"] == "dry-run" for r in log.values())
    assert all(r["trigger"]["message"] == "Idle Burn Rate above 20 USD/h ***" for r in log.values())
    assert proc.stdout.splitlines()[-1].startswith("stop-idle-gpus DRY RUN (add --execute to act): 2 would stop")
    assert audit.today_totals(str(aws["state"]), time.time()) == (0, 0.0)
    assert_clean(proc, aws["state"])


def test_hibernate_where_configured_and_a_plain_stop_elsewhere(aws):
    tag = {OPT_IN["Key"]: "true"}
    hib = launch(aws["moto"], "g5.xlarge", tag, hibernation=True)
    plain = launch(aws["moto"], "g6.xlarge", tag)
    for iid in (hib, plain):
        put_metrics(aws["moto"], iid, cpu=1.0, net_bytes_per_5min=10.0)
    proc = act_here(aws, execute=True, hibernate=True)
    assert proc.returncode == 0, proc.stdout
    log = decisions(aws["state"])
    assert log[hib]["action"] == "hibernated" and log[plain]["action"] == "stopped"
    assert "hibernation not configured" in log[plain]["reason"]
    bodies = {b.split("InstanceId.1=")[1].split("&")[0]: b for b in aws["front"].stop_bodies}
    assert "Hibernate=true" in bodies[hib] and "Hibernate" not in bodies[plain]
    assert set(states(aws["moto"]).values()) == {"stopped"}


# -- concurrency ------------------------------------------------------------------------------------
def test_two_simultaneous_runs_stop_each_instance_once(aws):
    tag = {OPT_IN["Key"]: "true"}
    ids = [launch(aws["moto"], t, tag) for t in ("p4d.24xlarge", "trn1.32xlarge", "g5.xlarge")]
    for iid in ids:
        put_metrics(aws["moto"], iid, cpu=1.0, net_bytes_per_5min=10.0)
    cmd = [sys.executable, "-m", "prtg_ai.cli", "act", "stop-idle-gpus", "--execute"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=aws["env"])
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    stopped_lines = [line for out, _ in outs for line in out.splitlines() if line.startswith("STOPPED")]
    assert sorted(line.split()[1] for line in stopped_lines) == sorted(ids)   # each once, by one run or the other
    assert aws["front"].counts["ec2:StopInstances"] == 3
    records = [r for r in audit.read_log(str(aws["state"])) if r["kind"] == "decision" and r["action"] == "stopped"]
    assert sorted(r["instance"] for r in records) == sorted(ids)
    assert len({r["run"] for r in audit.read_log(str(aws["state"])) if r["kind"] == "run"}) == 2
    assert audit.today_totals(str(aws["state"]), time.time())[0] == 3


def test_the_state_and_tags_are_read_again_right_before_stopping(aws):
    """Someone stops one candidate and un-tags another while the action reads CloudWatch."""
    ids = seed(aws["moto"])
    ec2 = aws_moto.boto("ec2", aws["moto"])

    def meanwhile():
        ec2.stop_instances(InstanceIds=[ids["idle_gpu"]])
        ec2.delete_tags(Resources=[ids["idle_trn"]], Tags=[{"Key": OPT_IN["Key"]}])
    aws["front"].before["cloudwatch:GetMetricData"] = meanwhile
    proc = act_here(aws, execute=True)
    assert proc.returncode == 0, proc.stdout
    log = decisions(aws["state"])
    assert (log[ids["idle_gpu"]]["action"], log[ids["idle_gpu"]]["reason_code"]) == ("already-stopped", "not-running")
    assert log[ids["idle_trn"]]["reason_code"] == "tags-changed"
    assert log[ids["idle_cpu"]]["action"] == "stopped"
    assert aws["front"].counts["ec2:StopInstances"] == 1               # only the g5: nothing twice, nothing un-tagged
    assert states(aws["moto"])[ids["idle_trn"]] == "running"
    assert audit.today_totals(str(aws["state"]), time.time()) == (1, pytest.approx(PRICE["g5.xlarge"]))


# -- AWS failures mid-run -------------------------------------------------------------------------------
def test_a_stop_that_fails_is_recorded_and_the_others_still_happen(aws):
    ids = seed(aws["moto"])
    aws["front"].fail_stop[ids["idle_gpu"]] = "IncorrectInstanceState"
    proc = act_here(aws, execute=True, max_instances=2)
    assert proc.returncode == 1, proc.stdout
    now = states(aws["moto"])
    assert now[ids["idle_gpu"]] == "running" and now[ids["idle_trn"]] == "stopped"
    log = decisions(aws["state"])
    assert (log[ids["idle_gpu"]]["decision"], log[ids["idle_gpu"]]["action"]) == ("fail", "stop-failed")
    assert "IncorrectInstanceState" in log[ids["idle_gpu"]]["reason"]
    assert log[ids["idle_trn"]]["action"] == "stopped"
    assert any(line.startswith(f"FAILED {ids['idle_gpu']}") and "stop failed" in line
               for line in proc.stdout.splitlines())
    assert proc.stdout.splitlines()[-1].startswith(
        f"stop-idle-gpus: 1 stopped (${PRICE['trn1.32xlarge']:,.2f}/h avoided), 9 skipped, 1 failed; "
        "1 AWS error(s), exit 1.")
    errors = [r for r in audit.read_log(str(aws["state"])) if r["kind"] == "error"]
    assert [(e["step"], e["instance"]) for e in errors] == [("stop", ids["idle_gpu"])]
    # Only what was really stopped counts as avoided burn.
    assert audit.today_totals(str(aws["state"]), time.time()) == (1, pytest.approx(PRICE["trn1.32xlarge"]))
    assert_clean(proc, aws["state"])


def test_throttled_stop_is_retried_once_then_reported_and_nothing_is_stopped(aws):
    ids = seed(aws["moto"])
    aws["front"].faults["ec2:StopInstances"] = "throttle"
    proc = act_here(aws, execute=True, max_instances=2)
    assert proc.returncode == 1
    assert aws["front"].counts["ec2:StopInstances"] == 4  # two instances, one retry each
    assert "stopped" not in set(states(aws["moto"]).values())
    log = decisions(aws["state"])
    failed = sorted(k for k, iid in ids.items() if log[iid]["decision"] == "fail")
    assert failed == ["idle_gpu", "idle_trn"]
    assert all("throttled EC2 StopInstances (RequestLimitExceeded)" in log[ids[k]]["reason"] for k in failed)
    assert "0 stopped ($0.00/h avoided), 9 skipped, 2 failed; 2 AWS error(s), exit 1." in proc.stdout
    assert audit.today_totals(str(aws["state"]), time.time()) == (0, 0.0)
    assert_clean(proc, aws["state"])


def test_throttled_describe_decides_nothing_and_says_so(aws):
    seed(aws["moto"])
    aws["front"].faults["ec2:DescribeInstances"] = "throttle"
    proc = act_here(aws, execute=True)
    assert proc.returncode == 1
    assert "stopped" not in set(states(aws["moto"]).values())
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("ERROR us-east-1: AWS throttled EC2 DescribeInstances (RequestLimitExceeded).")
    assert lines[-1].startswith("stop-idle-gpus: 0 stopped ($0.00/h avoided), 0 skipped, 0 failed; 1 AWS error(s)")
    log = audit.read_log(str(aws["state"]))
    assert [r["kind"] for r in log] == ["error", "run"]
    assert log[0]["error_kind"] == "throttled" and log[1]["exit"] == 1
    assert_clean(proc, aws["state"])


def test_throttled_cloudwatch_means_no_evidence_and_nothing_stopped(aws):
    ids = seed(aws["moto"])
    aws["front"].faults["cloudwatch:GetMetricData"] = "throttle"
    proc = act_here(aws, execute=True)
    assert proc.returncode == 1
    assert "stopped" not in set(states(aws["moto"]).values())
    log = decisions(aws["state"])
    # Every instance that needed evidence is a logged skip, the others keep their own reasons.
    needing = {"idle_gpu", "idle_trn", "idle_cpu", "busy_gpu", "busy_net", "no_data"}
    assert {k for k, iid in ids.items() if log[iid]["reason_code"] == "no-evidence"} == needing
    assert all("AWS throttled CloudWatch GetMetricData" in log[ids[k]]["reason"] for k in needing)
    assert log[ids["untagged"]]["reason_code"] == "not-opted-in"
    errors = [r for r in audit.read_log(str(aws["state"])) if r["kind"] == "error"]
    assert [(e["step"], e["error_kind"]) for e in errors] == [("metrics", "throttled")]
    assert proc.stdout.splitlines()[-1].startswith("stop-idle-gpus: 0 stopped ($0.00/h avoided), 11 skipped, "
                                                   "0 failed; 1 AWS error(s), exit 1.")
    assert_clean(proc, aws["state"])


def test_denied_stop_names_the_action_policy(aws):
    ids = seed(aws["moto"])
    aws["front"].faults["ec2:StopInstances"] = "deny"
    proc = act_here(aws, execute=True, max_instances=1)
    assert proc.returncode == 1
    log = decisions(aws["state"])
    assert log[ids["idle_gpu"]]["action"] == "stop-failed"
    assert "lack IAM permission ec2:StopInstances" in log[ids["idle_gpu"]]["reason"]
    assert "prtg-ai-stop-idle-gpus-policy.json" in log[ids["idle_gpu"]]["reason"]
    assert_clean(proc, aws["state"])


def test_without_a_writable_state_folder_nothing_is_done(aws, tmp_path):
    ids = {"idle_gpu": launch(aws["moto"], "p4d.24xlarge", {OPT_IN["Key"]: "true"})}
    put_metrics(aws["moto"], ids["idle_gpu"], gpu=[0.0])
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    proc = act_here(aws, execute=True, state=blocker / "state")
    assert proc.returncode == 3
    assert "nothing was done" in proc.stdout
    assert aws["front"].counts == {} or sum(aws["front"].counts.values()) == 0
    assert states(aws["moto"])[ids["idle_gpu"]] == "running"


# -- the PRTG notification ---------------------------------------------------------------------------
# What PRTG puts into an "Execute Program" notification's Parameters field for the .bat wrapper,
# after substituting its placeholders (%sensorid, %device, %sensor, %status) for a real alert.
PRTG_PARAMETERS = '"2345" "AWS GPU account (prod & research)" "AWS GPU spend" "Warning"'


def cmd_args(line: str) -> list[str]:
    """Split a command line as cmd.exe hands arguments to a batch file: quoted parts stay one, quotes kept."""
    out, cur, quoted = [], "", False
    for ch in line:
        if ch == '"':
            quoted = not quoted
            cur += ch
        elif ch in " \t" and not quoted:
            if cur:
                out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return out


def run_bat_text(text: str, parameters: str, env: dict) -> subprocess.CompletedProcess:
    """Carry out the wrapper's lines the way cmd.exe would for the constructs it uses.

    ``@echo off`` and ``rem`` do nothing; on the command line ``%~N`` is argument N without
    its quotes, ``%N`` as given (missing ones are empty), ``%%`` a percent sign; the program and
    its arguments are then split by the Windows rules (double quotes group; quotes dropped).
    """
    import re

    args = [""] + cmd_args(parameters)
    lines = [ln for ln in text.split("\r\n") if ln and not ln.lower().startswith(("@echo off", "rem"))]
    assert lines[-1] == "exit /b %ERRORLEVEL%"
    assert len(lines) == 2, lines  # one command, then the exit code handed back to PRTG
    command = lines[0]

    def expand(m):
        token = m.group(0)
        if token == "%%":
            return "%"
        n = int(token[-1])
        value = args[n] if n < len(args) else ""
        return value.strip('"') if token.startswith("%~") else value
    expanded = re.sub(r"%%|%~?[0-9]", expand, command)
    argv = [a.replace('"', "") for a in cmd_args(expanded)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def installed(tmp_path):
    """``prtg-ai install --role core`` into a PRTG program folder; the wrappers run this interpreter."""
    prtg = tmp_path / "PRTG Network Monitor"
    prtg.mkdir()
    proc = subprocess.run([sys.executable, "-m", "prtg_ai.cli", "install", "--role", "core", "--prtg-dir", str(prtg),
                           "--python", sys.executable], capture_output=True, text=True, timeout=120,
                          env=cli_env(tmp_path / "unused"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return prtg / "Notifications" / "EXE"


def test_the_notification_wrapper_runs_the_action_as_a_dry_run_and_prints_its_summary(aws, installed):
    ids = seed(aws["moto"])
    bat = (installed / "prtgai_stop_idle_gpus.bat").read_bytes().decode("utf-8")
    proc = run_bat_text(bat, PRTG_PARAMETERS, aws["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "stopped" not in set(states(aws["moto"]).values())
    last = proc.stdout.splitlines()[-1]
    assert last.startswith("stop-idle-gpus DRY RUN (add --execute to act): 3 would stop")
    assert f"WOULD STOP {ids['idle_gpu']} p4d.24xlarge us-east-1 $21.96/h: idle" in proc.stdout
    record = decisions(aws["state"])[ids["idle_gpu"]]
    assert record["trigger"] == {"by": "prtg-notification", "sensorid": "2345",
                                 "device": "AWS GPU account (prod & research)", "sensor": "AWS GPU spend",
                                 "status": "Warning"}
    assert record["mode"] == "dry-run"
    assert_clean(proc, aws["state"])


def test_the_notification_wrapper_acts_only_when_the_admin_adds_execute(aws, installed):
    ids = seed(aws["moto"])
    bat = (installed / "prtgai_stop_idle_gpus.bat").read_bytes().decode("utf-8")
    proc = run_bat_text(bat, PRTG_PARAMETERS + " --execute --max-instances 1", aws["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [k for k, iid in ids.items() if states(aws["moto"])[iid] == "stopped"] == ["idle_gpu"]
    assert proc.stdout.splitlines()[-1].startswith("stop-idle-gpus: 1 stopped ($21.96/h avoided)")


def test_the_powershell_wrapper(aws, installed):
    """With pwsh: run it as PRTG would. Without: check the rendered script's parameters and command."""
    import shutil

    ps1 = (installed / "prtgai_stop_idle_gpus.ps1").read_bytes().decode("utf-8")
    assert "\r\n" in ps1 and "\n" not in ps1.replace("\r\n", "")
    pwsh = shutil.which("pwsh")
    if pwsh:
        seed(aws["moto"])
        script = str(installed / "prtgai_stop_idle_gpus.ps1")
        proc = subprocess.run([pwsh, "-NoProfile", "-NonInteractive", "-File", script,
                               "-SensorId", "2345", "-Device", 'AWS "GPU" account', "-Sensor", "AWS GPU spend",
                               "-Status", "Warning", "-Message", "Idle Burn Rate above 20 USD/h"],
                              capture_output=True, text=True, env=aws["env"], timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.splitlines()[-1].startswith("stop-idle-gpus DRY RUN")
        return
    # The Parameters line the wrapper documents uses exactly the parameters it declares.
    documented = [w for w in ps1.split("Parameters field of the notification")[1].split("\r\n")[1].split()
                  if w.startswith("-")]
    declared = ps1.split("param(")[1].split(")\r\n")[0]
    assert documented == ["-SensorId", "-Device", "-Sensor", "-Status", "-Message"]
    assert all(f"${name[1:]}" in declared for name in documented + ["-Execute", "-Region", "-MaxInstances"])
    # The interpreter is this one; --execute only behind the -Execute switch; nothing terminates.
    assert f"$python = '{sys.executable}'" in ps1
    assert "if ($Execute) { $arguments += '--execute' }" in ps1
    assert ps1.count("--execute") == 1 and "terminate" not in ps1.lower()
    assert "& $python @arguments" in ps1 and "exit $LASTEXITCODE" in ps1
