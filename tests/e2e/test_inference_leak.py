"""Memory-leak trend of ``inference`` against real child processes that leak at a known rate.

Each child allocates (and touches) 20 MiB whenever the test asks, at most
``MAX_STEPS`` times and for at most 60 s, so a test costs at most 160 MiB and a
minute even if it fails. Between allocations the fake clock moves 300 s: 20 MiB
per 5 min is 240 MB/h (MB as PRTG's MByte, 2^20 bytes).
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from fakes.inference_server import FakeModelServer
from support import channels, cli_env, run_cli

MAX_STEPS = 8
LEAKER = r"""
import sys, time
marker, limit, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held, deadline = [], time.monotonic() + 60
sys.stdout.write("ready\n"); sys.stdout.flush()
for line in sys.stdin:
    if time.monotonic() > deadline or len(held) >= limit:
        break
    if line.strip() == "leak":
        held.append(bytearray(b"\x01") * step)  # filled, so every page is resident
    sys.stdout.write("ok\n"); sys.stdout.flush()
"""


class Leaker:
    """A child process whose command line carries a unique marker for --process."""

    def __init__(self, step_mib: int = 20):
        self.marker = f"prtgai-leaker-{uuid.uuid4().hex[:12]}"
        self.proc = subprocess.Popen([sys.executable, "-c", LEAKER, self.marker, str(MAX_STEPS),
                                      str(step_mib * 1024 * 1024)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def step(self, leak: bool = True) -> None:
        self.proc.stdin.write("leak\n" if leak else "idle\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            stream.close()


@pytest.fixture(scope="module")
def vllm_url():
    """The sensor also reads a (steady) vLLM metrics page, as it would beside the server."""
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "testcases" / "inference" / "vllm" / "metrics.1.prom").read_text()
    with FakeModelServer(page=page) as srv:
        yield srv.url


@pytest.fixture
def leaker():
    made = []

    def _make(step_mib: int = 20) -> Leaker:
        made.append(Leaker(step_mib))
        return made[-1]

    yield _make
    for child in made:
        child.stop()


def scan_while(url: str, child: Leaker, leak: bool, scans: int, sensor_run, ctx, clock, *extra, limits=None):
    """Scan, then (allocate, advance 300 s, scan) ``scans - 1`` times; return every result."""
    args = ["--url", url, "--process", child.marker,
            "--leak-window", "1h", "--leak-warmup", "0", *extra]
    results = [sensor_run("inference", args, ctx, limits=limits)]
    for _ in range(scans - 1):
        child.step(leak)
        clock.advance(300)
        results.append(sensor_run("inference", args, ctx, limits=limits))
    return results


def test_a_leak_of_20_mib_per_5_min_reads_240_mb_per_hour(vllm_url, leaker, sensor_run, make_ctx, clock):
    child = leaker(20)
    results = scan_while(vllm_url, child, True, 7, sensor_run, make_ctx(), clock)
    slopes = [channels(r).get("Memory Growth") for r in results]
    # the trend needs 3 samples over 10 minutes (10 % of the 1 h window, at least 10 min)
    assert slopes[:2] == [None, None] and "collecting a baseline" in results[1].message()
    assert all(s is not None for s in slopes[2:])
    assert slopes[-1] == pytest.approx(240.0, rel=0.05)
    last = results[-1]
    ch = channels(last)
    assert ch["Server Processes"] == 1
    assert ch["Server Memory"] - channels(results[0])["Server Memory"] == pytest.approx(6 * 20 * 2 ** 20, rel=0.05)
    growth = last.channel("Memory Growth")
    assert growth.limitmaxerror == 200 and growth.limitmaxwarning == 50
    assert growth.limit_state() == "error"
    print(f"\nleak 240 MB/h measured as {slopes[-1]:.1f} MB/h after {len(slopes)} scans")


def test_a_steady_process_reads_flat(vllm_url, leaker, sensor_run, make_ctx, clock):
    child = leaker(20)
    # --leak-warning moves the limit: every result must carry 20 MB/h (checked against the catalogue row).
    results = scan_while(vllm_url, child, False, 5, sensor_run, make_ctx(), clock, "--leak-warning", "20",
                         limits={"memory_growth": {"limitmaxwarning": 20}})
    growth = results[-1].channel("Memory Growth")
    assert abs(growth.value) < 5.0 and growth.limit_state() == "ok"


def test_warm_up_and_restart_restart_the_trend(vllm_url, leaker, sensor_run, make_ctx, clock):
    ctx = make_ctx()
    first = leaker(20)
    args = ["--url", vllm_url, "--process", first.marker, "--leak-window", "1h", "--leak-warmup", "10m"]
    r0 = sensor_run("inference", args, ctx)
    assert "started recently" in r0.message() and "Memory Growth" not in channels(r0)
    for _ in range(5):  # 10 min of warm-up, then 3 samples over 10 min
        first.step(True)
        clock.advance(300)
        result = sensor_run("inference", args, ctx)
    assert channels(result)["Memory Growth"] == pytest.approx(240.0, rel=0.05)
    first.stop()
    second = leaker(20)
    args[args.index(first.marker)] = second.marker
    restarted = sensor_run("inference", args, ctx)
    # another identity (new --process) or new processes: never a slope across the two
    assert "Memory Growth" not in channels(restarted)


def test_no_matching_process_trips_the_process_count_limit(vllm_url, sensor_run, make_ctx):
    result = sensor_run("inference", ["--url", vllm_url, "--process", f"no-such-process-{uuid.uuid4().hex}"], make_ctx())
    ch = channels(result)
    assert ch["Server Processes"] == 0 and "Server Memory" not in ch
    assert result.channel("Server Processes").limit_state() == "error"


def test_pid_and_process_are_exclusive(sensor_run, make_ctx):
    result = sensor_run("inference", ["--url", "http://127.0.0.1:9", "--process", "x", "--pid", "1"], make_ctx())
    assert result.error and "--process or --pid" in result.message()


def test_cli_matches_the_server_not_itself(leaker, tmp_path):
    child = leaker(20)
    env = cli_env(tmp_path / "state")
    # the sensor's own command line (and PRTG's wrapper's) contains the marker too
    doc, _ = run_cli(["run", "inference", "--url", "http://127.0.0.1:9", "--kind", "openai", "--model", "m",
                      "--process", child.marker], env)
    chans = {c["channel"]: c["value"] for c in doc["prtg"]["result"]}
    assert chans["Server Processes"] == 1
    assert chans["Probe Outcome"] == 3  # nothing listens on port 9 of 127.0.0.1
    doc, _ = run_cli(["run", "inference", "--url", "http://127.0.0.1:9", "--kind", "openai", "--model", "m",
                      "--pid", str(child.proc.pid)], env)
    chans = {c["channel"]: c["value"] for c in doc["prtg"]["result"]}
    assert chans["Server Processes"] == 1 and chans["Server Memory"] > 5 * 2 ** 20
