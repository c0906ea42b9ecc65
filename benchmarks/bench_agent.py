"""The agent under load: throughput and p99 vs. Prometheus node_exporter, and memory over 100,000 requests.

Baseline in the same run: Debian's ``prometheus-node-exporter`` (installed with apt
when missing and this runs as root), started by this benchmark with
``--web.listen-address=127.0.0.1:<port>`` and default collectors (never the system
service), answering ``GET /metrics``. Both servers are driven by the same client
(``common.load``: 4 threads with keep-alive connections, a bounded request count)
on the same 2 cores, one after the other. With Debian's ``wrk`` installed (``.ci``
does not need it; the benchmark installs it as root when missing) the client is wrk with
16 connections for a fixed time, as in the issue's reference figures; otherwise the
Python client.

Agent rows (``prtg-ai serve``, default settings, INFO request log to /dev/null):

* ``/sensors/gpu_host`` and ``/sensors/east_west`` with the default 5 s result cache:
  what PRTG's HTTP Data Advanced sensors get when a dozen of them poll one node
  (8-GPU NVML scenario fake; 8-port NDR sysfs fixture). Targets (issue 6): at least
  10x node_exporter's throughput and at most 1/10 of its p99;
* ``/sensors/east_west`` with ``--cache-ttl 0``: every request runs the sensor in
  full (reported).

Memory: the agent's RSS (psutil) after a 1,000-request warm-up and after 100,000
more requests (10,000 in ``--quick``) cycling through sensors, bad parameters,
unknown sensors, failed authentication and ``/health``; growth in MB and the ratio
final/initial.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

import psutil

from common import CASES, Agent, bench_env, free_port, load, median, stop, wait_http, wrk_load

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"


def ensure_node_exporter() -> str | None:
    """The node_exporter binary, installing Debian's package when missing; None (with why) otherwise."""
    if os.path.exists(NODE_EXPORTER):
        return None
    if not shutil.which("apt-get") or os.geteuid() != 0:
        return "prometheus-node-exporter is not installed and this is not root on Debian"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "prometheus-node-exporter"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if proc.returncode != 0:
            return f"{' '.join(cmd)} failed: {proc.stderr.strip()[-200:]}"
    return None if os.path.exists(NODE_EXPORTER) else "the package installed no /usr/bin/prometheus-node-exporter"


def _node_exporter(total: int, repeats: int) -> list[dict]:
    port = free_port()
    proc = subprocess.Popen([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(port, "/metrics", proc=proc)
        load(port, ["/metrics"], 50)  # warm-up
        return [_drive(port, "/metrics", total, None) for _ in range(repeats)]
    finally:
        stop(proc)


def _has_wrk() -> bool:
    if shutil.which("wrk"):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], capture_output=True, timeout=300)
    return bool(shutil.which("wrk"))


def _drive(port: int, path: str, total: int, headers: dict | None) -> dict:
    """One measured round: wrk for a fixed time when present, else ``total`` Python requests."""
    if _has_wrk():
        return wrk_load(port, path, seconds=max(2, total // 1000), headers=headers)
    result = load(port, [path], total, headers=headers)
    result["client"] = "Python client, 4 keep-alive connections"
    return result


def _agent(env: dict, path: str, total: int, repeats: int, *args: str) -> list[dict]:
    with Agent(env, *args) as agent:
        headers = {"Authorization": f"Bearer {agent.TOKEN}"}
        load(agent.port, [path], 50, headers=headers)  # warm-up
        return [_drive(agent.port, path, total, headers) for _ in range(repeats)]


def _memory(env: dict, folder: Path, kmsg: Path, total: int) -> dict:
    paths = [
        "/health",
        f"/sensors/checkpoint_volume?path={quote(str(folder))}",
        f"/sensors/gpu_host?xid_log={quote(str(kmsg))}",
        "/sensors/east_west",
        "/sensors/checkpoint_volume?path=/nonexistent/ckpt",
        "/sensors/checkpoint_volume?nosuch=1",
        "/sensors/no_such_sensor",
        f"/sensors/gpu?gpu=0&xid_log={quote(str(kmsg))}&format=v2",
    ]
    with Agent(env) as agent:
        headers = {"Authorization": f"Bearer {agent.TOKEN}"}
        proc = psutil.Process(agent.pid)
        load(agent.port, paths, 1000, headers=headers)
        initial = proc.memory_info().rss
        result = load(agent.port, paths, total, headers=headers, deadline_s=600)
        # Unauthenticated requests too (401 path), a tenth of the volume.
        load(agent.port, ["/sensors/east_west"], total // 10)
        final = proc.memory_info().rss
    return {"initial_mb": initial / 2 ** 20, "final_mb": final / 2 ** 20, "requests": result["requests"] + total // 10,
            "rps": result["rps"], "errors": result["errors"], "cut_short": result["cut_short"]}


def run(repeats: int = 5) -> list[dict]:
    quick = repeats < 5
    total = 1000 if quick else 5000
    rounds = 1 if quick else 3
    memory_requests = 10_000 if quick else 100_000
    rows: list[dict] = []
    why_not = ensure_node_exporter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ckpt"
        folder.mkdir()
        (folder / "step-1.pt").write_bytes(b"\0" * 1024)
        kmsg = Path(tmp) / "kmsg"
        kmsg.write_text((CASES / "gpu" / "h100_sxm_load" / "kmsg.txt").read_text())
        env = bench_env(Path(tmp) / "state")
        baseline = None if why_not else _node_exporter(total, rounds)
        cases = [
            ("/sensors/gpu_host (default 5 s result cache)", f"/sensors/gpu_host?xid_log={quote(str(kmsg))}", ()),
            ("/sensors/east_west (default 5 s result cache)", "/sensors/east_west", ()),
            ("/sensors/east_west (cache off: a full scan per request)", "/sensors/east_west", ("--cache-ttl", "0")),
        ]
        for label, path, args in cases:
            targeted = "default" in label
            runs = _agent(env, path, total, rounds, *args, "--state-dir", str(Path(tmp) / "agent-state"))
            rps, p99 = median([r["rps"] for r in runs]), median([r["p99_ms"] for r in runs])
            errors = sum(r["errors"] for r in runs)
            if baseline:
                b_rps, b_p99 = median([r["rps"] for r in baseline]), median([r["p99_ms"] for r in baseline])
                rows.append({
                    "benchmark": f"agent throughput: {label}",
                    "baseline": "node_exporter 1.5 GET /metrics, same client",
                    "ratio": round(rps / b_rps, 3), "target": ">= 10" if targeted else "reported",
                    "ok": errors == 0 and (rps / b_rps >= 10 or not targeted),
                    "detail": f"{rps:,.0f} vs {b_rps:,.0f} req/s (median of {rounds} rounds, {runs[0]['client']}); "
                              f"errors {errors}",
                    "raw": {"agent": runs, "node_exporter": baseline},
                })
                rows.append({
                    "benchmark": f"agent p99 latency: {label}",
                    "baseline": "node_exporter 1.5 GET /metrics p99",
                    "ratio": round(p99 / b_p99, 3), "target": "<= 0.1" if targeted else "reported",
                    "ok": errors == 0 and (p99 / b_p99 <= 0.1 or not targeted),
                    "detail": f"p99 {p99:.2f} ms vs {b_p99:.2f} ms; p50 {median([r['p50_ms'] for r in runs]):.2f} ms "
                              f"vs {median([r['p50_ms'] for r in baseline]):.2f} ms",
                })
            else:
                rows.append({
                    "benchmark": f"agent throughput: {label}", "baseline": f"node_exporter: not run ({why_not})",
                    "ratio": "n/a", "target": "reported", "ok": errors == 0,
                    "detail": f"{rps:,.0f} req/s, p99 {p99:.2f} ms", "raw": {"agent": runs},
                })
        mem = _memory(env, folder, kmsg, memory_requests)
        rows.append({
            "benchmark": f"agent memory over {mem['requests']:,} requests (RSS final / initial)",
            "baseline": "RSS after a 1,000-request warm-up",
            "ratio": round(mem["final_mb"] / mem["initial_mb"], 3),
            "target": "<= 1.10", "ok": mem["final_mb"] / mem["initial_mb"] <= 1.10 and not mem["cut_short"],
            "detail": f"{mem['initial_mb']:.1f} MB -> {mem['final_mb']:.1f} MB "
                      f"({mem['final_mb'] - mem['initial_mb']:+.1f} MB) at {mem['rps']:,.0f} req/s; sensors, bad "
                      f"parameters, unknown sensors, 401s, /health",
        })
    return rows
