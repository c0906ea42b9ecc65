"""The AWS endpoint dying mid-request, for ``gpu_spend``: a clean error, or the cached value with its age.

Topology, all on 127.0.0.1:

    sensor -- boto3 --> Breaker (AWS_ENDPOINT_URL) --> Front (tests/fakes/aws_moto.py:
                        |                               counting proxy, Pricing / forecast fake)
                        |                               --> moto's ThreadedMotoServer
                        '- per operation: pass, or die mid-request

How the Breaker kills a request (after reading it in full):

* ``half``: forwards it, then sends the status line, the headers (with the real
  Content-Length) and half of the body, and closes: the connection dies mid-response;
* ``reset``: closes with SO_LINGER 0 (a TCP RST) without a byte of answer;
* ``garbage``: answers bytes that are not HTTP, then closes;
* ``stall``: sends nothing and holds the connection past boto3's read timeout. In the
  quick run the backend's read timeout is lowered to 0.5 s in-process; the full run
  (``PRTG_AI_RELIABILITY=full``) also runs whole processes with the shipped timeouts
  and reports how long such a scan takes.

Without a cache every mode must give a clean PRTG error (valid JSON, no traceback, no
secret, an actionable text, bounded time); with a cache filled by an earlier scan, the
sensor must serve the cached figures with their age instead of an outage.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("moto.server")
from moto.server import ThreadedMotoServer  # noqa: E402

from fakes import aws_moto  # noqa: E402
from prtg_ai.backends import aws as aws_backend  # noqa: E402
from prtg_ai.core.context import Context  # noqa: E402
from prtg_ai.core.runtime import run_sensor  # noqa: E402
from reliability.rel_support import clean_env  # noqa: E402
from support import FakeClock, channels, check_result  # noqa: E402

pytestmark = pytest.mark.reliability("faults: AWS endpoint dying")


MODES = ("half", "reset", "garbage", "stall")
# The operations a scan without a cache makes first, one of each service family.
TARGETS = ("sts:GetCallerIdentity", "ec2:DescribeInstances", "ce:GetCostAndUsage")
STALL_S = 40.0  # longer than any read timeout the sensor uses (15 s)


class Breaker:
    """A proxy in front of ``Front`` that kills chosen operations mid-request."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.faults: dict[str, str] = {}  # operation (or "*") -> mode
        self.killed = 0
        self.release = threading.Event()
        self.lock = threading.Lock()
        breaker = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                breaker.handle(self)

            def do_POST(self):
                breaker.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def handle(self, handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        op = aws_moto.Front.operation(handler, body)
        with self.lock:
            mode = self.faults.get(op) or self.faults.get("*")
            if mode:
                self.killed += 1
        if mode == "reset":
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.close_connection = True
            return
        if mode == "garbage":
            handler.wfile.write(b"\x00\xffSSH-2.0-not-http\r\n\r\n\x16\x03\x01")
            handler.close_connection = True
            return
        if mode == "stall":
            self.release.wait(STALL_S)
            handler.close_connection = True
            return
        status, headers, data = self.forward(handler, body)
        handler.send_response(status)
        for k, v in headers:
            if k.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if mode == "half":
            handler.wfile.write(data[: len(data) // 2])
            handler.wfile.flush()
            handler.connection.shutdown(socket.SHUT_RDWR)
            handler.close_connection = True
            return
        handler.wfile.write(data)

    def forward(self, handler, body: bytes):
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
        headers["Host"] = f"127.0.0.1:{self.upstream_port}"
        try:
            conn.request(handler.command, handler.path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def aws_stack():
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    front = aws_moto.Front(port)
    front.thread.start()
    breaker = Breaker(front.port)
    yield {"moto": f"http://{host}:{port}", "front": front, "breaker": breaker}
    breaker.close()
    front.server.shutdown()
    front.server.server_close()
    moto.stop()


@pytest.fixture
def stack(aws_stack, monkeypatch):
    """A clean moto, no faults, boto3 pointed at the Breaker, a 0.5 s read timeout."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(aws_stack["moto"] + "/moto-api/reset", method="POST"),
                           timeout=10).read()
    aws_stack["front"].reset()
    aws_stack["breaker"].faults.clear()
    aws_stack["breaker"].killed = 0
    monkeypatch.setattr(aws_backend, "READ_TIMEOUT_S", 0.5)
    monkeypatch.setattr(aws_backend, "CONNECT_TIMEOUT_S", 0.5)
    return aws_stack


def spend_ctx(tmp_path: Path, url: str, clock: FakeClock, state: str = "state") -> Context:
    env = aws_moto.aws_env(url)
    return Context(state_dir=tmp_path / state, clock=clock, env=env)


def assert_clean(result, started: float, limit: float = 60.0) -> dict:
    doc = check_result("gpu_spend", result)
    text = json.dumps(doc)
    assert "Traceback" not in text
    assert aws_moto.SECRET not in text
    assert "Internal error" not in result.message(), result.message()
    assert time.monotonic() - started < limit, f"scan took {time.monotonic() - started:.1f} s"
    return doc


# A response cut off mid-body: in the XML/query protocols (STS, EC2) botocore raises
# ResponseParserError; in the JSON protocol (Cost Explorer) it returns {"message": <body>}.
# Both must reach the transient tier (cached value + age, or a clean error), never a
# wrong $0.00 or an internal error.
QUICK_CASES = {("half", "ce:GetCostAndUsage"), ("reset", "ec2:DescribeInstances"),
               ("garbage", "sts:GetCallerIdentity"), ("stall", "ce:GetCostAndUsage")}


def _cases():
    for mode in MODES:
        for target in TARGETS:
            marks = []
            if (mode, target) not in QUICK_CASES:
                marks.append(pytest.mark.reliability_slow)
            yield pytest.param(mode, target, marks=marks, id=f"{mode}-{target}")


@pytest.mark.parametrize("mode, target", list(_cases()))
def test_endpoint_dying_mid_request_without_a_cache_is_a_clean_error(stack, mode, target, tmp_path, tally):
    aws_moto.seed_fleet(stack["moto"], aws_moto.DAY)
    aws_moto.queue_costs(stack["moto"], aws_moto.september())
    stack["breaker"].faults[target] = mode
    clock = FakeClock(aws_moto.DAY.timestamp())
    started = time.monotonic()
    result = run_sensor("gpu_spend", [], spend_ctx(tmp_path, stack["breaker"].url, clock))
    tally.case()
    doc = assert_clean(result, started)
    assert stack["breaker"].killed >= 1, f"{target} was never requested"
    tally.fault(stack["breaker"].killed)
    text = doc["prtg"]["text"]
    if result.error:
        assert len(text) > 40 and ("AWS" in text or "Cost Explorer" in text), text
    else:
        # One part of the data failed (Cost Explorer, or the live instance view): the rest
        # still reports and the message says which part is missing and why.
        assert target != "sts:GetCallerIdentity", f"no identity, yet a result: {doc}"
        assert any(w in text for w in ("could not be reached", "timed out", "unavailable", "failed")), text
        if target.startswith("ce:"):
            assert "GPU Spend Month To Date" not in channels(result), "a spend figure without Cost Explorer data"


@pytest.mark.parametrize("mode", MODES)
def test_endpoint_dying_after_a_good_scan_serves_the_cache_with_its_age(stack, mode, tmp_path, tally):
    aws_moto.seed_fleet(stack["moto"], aws_moto.DAY)
    aws_moto.queue_costs(stack["moto"], aws_moto.september())
    clock = FakeClock(aws_moto.DAY.timestamp())
    ctx = spend_ctx(tmp_path, stack["breaker"].url, clock)
    first = run_sensor("gpu_spend", [], ctx)
    assert not first.error, first.message()
    stack["breaker"].faults["*"] = mode  # every service dies now
    clock.advance(7 * 3600)  # past the Cost Explorer (6 h) and live (5 min) refresh
    started = time.monotonic()
    result = run_sensor("gpu_spend", [], ctx)
    tally.case()
    doc = assert_clean(result, started)
    assert stack["breaker"].killed >= 1
    tally.fault(stack["breaker"].killed)
    assert not result.error, doc
    ch, before = channels(result), channels(first)
    assert ch["GPU Spend Month To Date"] == before["GPU Spend Month To Date"]
    assert ch["Burn Rate"] == before["Burn Rate"]
    assert ch["Cost Data Age"] == pytest.approx(7.0)
    assert ch["Instance Data Age"] == 7 * 3600
    assert "ago" in doc["prtg"]["text"]


# -- whole processes with the shipped timeouts (full run) -----------------------------------
@pytest.mark.reliability_slow
@pytest.mark.parametrize("mode", MODES)
def test_a_real_process_against_a_dying_endpoint_exits_0_with_prtg_json(aws_stack, mode, tmp_path, tally):
    aws_stack["breaker"].faults.clear()
    aws_stack["breaker"].killed = 0
    aws_stack["breaker"].faults["*"] = mode
    env = clean_env(tmp_path / "state", aws_moto.aws_env(aws_stack["breaker"].url))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "prtg_ai.cli", "run", "gpu_spend"], capture_output=True,
                          text=True, env=env, timeout=300)
    elapsed = time.monotonic() - started
    tally.case()
    tally.fault(max(1, aws_stack["breaker"].killed))
    aws_stack["breaker"].faults.clear()
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    from prtg_ai.prtg.validate import validate

    assert validate(proc.stdout) == [], proc.stdout
    doc = json.loads(proc.stdout)
    assert doc["prtg"]["error"] == 1 and aws_moto.SECRET not in proc.stdout
    print(f"\n{mode}: a scan against a dying endpoint took {elapsed:.1f} s "
          f"({aws_stack['breaker'].killed} requests killed)")
    # PRTG's EXE/Script sensors time out at 60 s by default (900 s at most).
    assert elapsed < 60, f"{mode}: {elapsed:.1f} s exceeds PRTG's default 60 s script timeout"


def test_the_breaker_is_not_vacuous(stack, tmp_path, tally):
    """With no fault the same path succeeds, so the failures above come from the faults."""
    aws_moto.seed_fleet(stack["moto"], aws_moto.DAY)
    aws_moto.queue_costs(stack["moto"], aws_moto.september())
    result = run_sensor("gpu_spend", [], spend_ctx(tmp_path, stack["breaker"].url,
                                                   FakeClock(aws_moto.DAY.timestamp())))
    tally.case()
    assert not result.error, result.message()
    assert channels(result)["Running GPU Instances"] == 7
    assert stack["breaker"].killed == 0
    assert os.environ.get("AWS_ENDPOINT_URL") != stack["breaker"].url  # the context, not the process, points there
