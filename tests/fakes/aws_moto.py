"""AWS for tests and benchmarks: moto's server on 127.0.0.1 behind a counting front.

Topology (everything on 127.0.0.1, ports chosen by the OS):

    sensor -- boto3 --> Front (AWS_ENDPOINT_URL) --proxy--> moto's ThreadedMotoServer
                          |  counts every request per operation (the Cost Explorer bill)
                          |  answers Pricing GetProducts and CE GetCostForecast (moto lacks them)
                          '- injects faults: throttling, IAM denial, per operation

moto supplies EC2 (instances of GPU types, DescribeInstanceTypes GpuInfo/NeuronInfo,
spot price history at its constant 0.00001), CloudWatch (metrics put by the test),
Budgets and Cost Explorer results queued through its ``/moto-api`` (FIFO per distinct
request body). Used by the gpu_spend and stop-idle-gpus e2e tests, the AWS fault tests
of the reliability suite, the Cost Explorer attack of the security suite and the
Cost Explorer benchmarks.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import urllib.request
from collections import Counter
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

REGION = "us-east-1"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzz9SECRETzz"
# 2026-09-21 10:00 UTC: day 21 of a 30-day month.
DAY = datetime(2026, 9, 21, 10, 0, tzinfo=timezone.utc)
ON_DEMAND = {  # $/h the pricing fake answers (us-east-1 list prices of late 2025, rounded)
    "p5.48xlarge": 55.04, "p4d.24xlarge": 21.96, "g5.xlarge": 1.006, "g6f.large": 0.2,
    "inf2.48xlarge": 12.98, "trn1.32xlarge": 21.50, "g6.xlarge": 0.805, "m5.large": 0.096,
}
MOTO_SPOT = 0.00001  # moto's constant spot price


# -- the front: counting proxy, Pricing / forecast fake, fault injection ---------------
class Front:
    def __init__(self, moto_port: int):
        self.moto_port = moto_port
        self.counts: Counter = Counter()
        self.faults: dict[str, str] = {}
        self.forecast: float | None = 1000.0
        self.prices = dict(ON_DEMAND)
        self.lock = threading.Lock()
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                front.handle(self)

            def do_POST(self):
                front.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def reset(self):
        with self.lock:
            self.counts.clear()
            self.faults.clear()
            self.forecast = 1000.0
            self.prices = dict(ON_DEMAND)

    @staticmethod
    def operation(handler, body: bytes) -> str:
        auth = handler.headers.get("Authorization", "")
        service = ""
        if "Credential=" in auth:
            scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
            service = scope[3] if len(scope) > 3 else ""
        service = {"monitoring": "cloudwatch", "api.pricing": "pricing"}.get(service, service)
        target = handler.headers.get("X-Amz-Target", "")
        if target:
            return f"{service}:{target.split('.')[-1]}"
        if "/operation/" in handler.path:
            return f"{service}:{handler.path.rsplit('/', 1)[-1]}"
        for pair in body.decode("utf-8", "replace").split("&"):
            if pair.startswith("Action="):
                return f"{service}:{pair[7:]}"
        return f"{service}:?"

    def handle(self, handler):
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        op = self.operation(handler, body)
        with self.lock:
            self.counts[op] += 1
            fault = self.faults.get(op)
        if fault:
            return self.fault(handler, op, fault)
        if op == "ce:GetCostForecast":
            if self.forecast is None:
                return self.json(handler, 400, {"__type": "DataUnavailableException", "Message": "not enough data"})
            return self.json(handler, 200, {"Total": {"Amount": str(self.forecast), "Unit": "USD"},
                                            "ForecastResultsByTime": []})
        if op == "pricing:GetProducts":
            return self.json(handler, 200, self.price_list(json.loads(body or b"{}")))
        self.proxy(handler, body)

    def price_list(self, request: dict) -> dict:
        filters = {f["Field"]: f["Value"] for f in request.get("Filters", [])}
        usd = self.prices.get(filters.get("instanceType"))
        if usd is None or filters.get("regionCode") != REGION:
            return {"FormatVersion": "aws_v1", "PriceList": []}

        def sku(price, market):
            return json.dumps({
                "product": {"attributes": {"instanceType": filters["instanceType"], "regionCode": REGION,
                                           "operation": "RunInstances", "marketoption": market}},
                "terms": {"OnDemand": {"SKU1.T1": {"priceDimensions": {"SKU1.T1.R1": {
                    "unit": "Hrs", "pricePerUnit": {"USD": f"{price:.10f}"}}}}}}})
        # A capacity-block SKU that the selector must ignore.
        return {"FormatVersion": "aws_v1", "PriceList": [sku(usd * 3, "CapacityBlock"), sku(usd, "OnDemand")]}

    @staticmethod
    def json(handler, status: int, doc: dict):
        data = json.dumps(doc).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/x-amz-json-1.1")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("x-amzn-RequestId", "fake-0001")
        handler.end_headers()
        handler.wfile.write(data)

    def fault(self, handler, op: str, fault: str):
        service, name = op.split(":", 1)
        action = {"budgets": "budgets:ViewBudget"}.get(service, op)
        denied_msg = (f"User: arn:aws:iam::123456789012:user/prtg is not authorized to perform: {action} "
                      f"because no identity-based policy allows the {action} action")
        if service == "ec2":
            code, status = {"throttle": ("RequestLimitExceeded", 503),
                            "deny": ("UnauthorizedOperation", 403)}[fault]
            data = (f"<?xml version='1.0' encoding='UTF-8'?><Response><Errors><Error><Code>{code}</Code>"
                    f"<Message>{denied_msg if fault == 'deny' else 'Request limit exceeded.'}</Message></Error>"
                    f"</Errors><RequestID>fake</RequestID></Response>").encode()
            handler.send_response(status)
            handler.send_header("Content-Type", "text/xml")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        if fault == "throttle":
            return self.json(handler, 400, {"__type": "LimitExceededException",
                                            "Message": "You have exceeded the rate limit."})
        return self.json(handler, 400, {"__type": "AccessDeniedException", "Message": denied_msg})

    def proxy(self, handler, body: bytes):
        conn = http.client.HTTPConnection("127.0.0.1", self.moto_port, timeout=30)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
        headers["Host"] = f"127.0.0.1:{self.moto_port}"
        try:
            conn.request(handler.command, handler.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError:
            # The backend is gone: drop the client's connection without an answer, as a dying server does.
            handler.close_connection = True
            return
        finally:
            conn.close()
        handler.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def ce_requests(self) -> int:
        return self.counts["ce:GetCostAndUsage"] + self.counts["ce:GetCostForecast"]


def aws_env(endpoint: str, key_id: str = "AKIAIOSFODNN7EXAMPLE") -> dict:
    """Fake credentials, every endpoint explicit, no shared files, no instance metadata."""
    return {
        "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_RETRY_MODE": "standard",
    }


def boto(service: str, endpoint: str):
    import boto3

    return boto3.client(service, region_name=REGION, endpoint_url=endpoint, aws_access_key_id="AKIASEED",
                        aws_secret_access_key="seed")


def seed_fleet(moto_url: str, at: datetime) -> dict[str, str]:
    """Launch GPU instances (and one CPU instance) and put CloudWatch metrics around ``at``.

    p5 busy (GPU 80 %), p4d idle (GPU 2 %), g5 idle by CPU (no GPU metrics), g6 spot busy
    by CPU, g6f (1/8 GPU) without metrics, inf2 busy by CPU, trn1 idle by CPU, m5 not a GPU.
    """
    ec2 = boto("ec2", moto_url)
    cw = boto("cloudwatch", moto_url)
    ids = {}
    for itype, spot in [("p5.48xlarge", False), ("p4d.24xlarge", False), ("g5.xlarge", False),
                        ("g6.xlarge", True), ("g6f.large", False), ("inf2.48xlarge", False),
                        ("trn1.32xlarge", False), ("m5.large", False)]:
        extra = {"InstanceMarketOptions": {"MarketType": "spot"}} if spot else {}
        inst = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType=itype,
                                 **extra)["Instances"][0]
        ids[itype] = inst["InstanceId"]
    stamps = [at - timedelta(minutes=m) for m in range(1, 30, 2)]

    def put(namespace, metric, dims, value):
        cw.put_metric_data(Namespace=namespace, MetricData=[
            {"MetricName": metric, "Dimensions": dims, "Timestamp": t, "Value": value} for t in stamps])

    for itype, values in (("p5.48xlarge", (80.0, 70.0)), ("p4d.24xlarge", (2.0, 1.0))):
        for index, value in enumerate(values):
            put("CWAgent", "nvidia_smi_utilization_gpu",
                [{"Name": "InstanceId", "Value": ids[itype]}, {"Name": "index", "Value": str(index)}], value)
    # The busy p5 has an idle-looking CPU: GPU metrics must win.
    for itype, value in (("p5.48xlarge", 1.0), ("g5.xlarge", 3.0), ("g6.xlarge", 50.0),
                         ("inf2.48xlarge", 40.0), ("trn1.32xlarge", 1.0)):
        put("AWS/EC2", "CPUUtilization", [{"Name": "InstanceId", "Value": ids[itype]}], value)
    return ids


def days_of(start: str, end: str):
    day = datetime.fromisoformat(start)
    while day < datetime.fromisoformat(end):
        yield day.date().isoformat()
        day += timedelta(days=1)


def queue_costs(moto_url: str, *results: dict[str, float]) -> None:
    """Queue Cost Explorer answers (one per distinct request, FIFO): each maps day -> USD."""
    docs = []
    for amounts in results:
        docs.append({"ResultsByTime": [
            {"TimePeriod": {"Start": d, "End": (datetime.fromisoformat(d) + timedelta(days=1)).date().isoformat()},
             "Total": {"UnblendedCost": {"Amount": f"{usd}", "Unit": "USD"}}, "Groups": [],
             "Estimated": d >= "2026-09-20"}
            for d, usd in amounts.items()]})
    req = urllib.request.Request(moto_url + "/moto-api/static/ce/cost-and-usage-results",
                                 data=json.dumps({"results": docs}).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    assert urllib.request.urlopen(req, timeout=10).status == 201


def september(override: dict[str, float] | None = None) -> dict[str, float]:
    """Sept 1..21: $100 a day, yesterday $150, today (estimated so far) $40."""
    amounts = {d: 100.0 for d in days_of("2026-09-01", "2026-09-22")}
    amounts.update({"2026-09-20": 150.0, "2026-09-21": 40.0})
    amounts.update(override or {})
    return amounts


def create_budget(moto_url: str, name: str, limit: float, actual: float, forecast: float) -> None:
    sts = boto("sts", moto_url)
    account = sts.get_caller_identity()["Account"]
    boto("budgets", moto_url).create_budget(AccountId=account, Budget={
        "BudgetName": name, "BudgetLimit": {"Amount": str(limit), "Unit": "USD"}, "TimeUnit": "MONTHLY",
        "BudgetType": "COST", "CalculatedSpend": {"ActualSpend": {"Amount": str(actual), "Unit": "USD"},
                                                  "ForecastedSpend": {"Amount": str(forecast), "Unit": "USD"}}})


# -- pytest fixtures: import them into a test module (``from fakes.aws_moto import aws, front, moto_server``) --
@pytest.fixture(scope="module")
def moto_server():
    """moto's server on 127.0.0.1 (an OS-chosen port) for one test module: yields (URL, port)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    yield f"http://{host}:{port}", port
    server.stop()


def running_front(front_class, moto_port: int):
    """Start a counting front (``Front`` or a subclass) before moto's port; yield it, stop it after."""
    fr = front_class(moto_port)
    fr.thread.start()
    try:
        yield fr
    finally:
        fr.server.shutdown()
        fr.server.server_close()


@pytest.fixture(scope="module")
def front(moto_server):
    """The counting front in front of ``moto_server``, for one test module."""
    yield from running_front(Front, moto_server[1])


@pytest.fixture
def aws(moto_server, front, monkeypatch):
    """A clean moto and front, and boto3's environment pointing at the front."""
    url = moto_server[0]
    urllib.request.urlopen(urllib.request.Request(url + "/moto-api/reset", method="POST"), timeout=10).read()
    front.reset()
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    env = aws_env(front.url)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return {"moto": url, "front": front, "env": env}
