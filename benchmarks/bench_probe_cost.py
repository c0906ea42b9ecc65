"""Probe cost model: CPU-seconds per 1,000 scans, script per scan vs. agent per request.

Script path (EXE/Script Advanced, SSH Script Advanced): PRTG starts ``prtg-ai run
<sensor>`` for every scan; its CPU time (user + system, from ``os.wait4``'s rusage
of that child) is what one scan costs. Agent path (HTTP Data Advanced): one
``prtg-ai serve`` answers ``GET /sensors/<sensor>``; its CPU time per request is
the server process's ``psutil`` CPU times (user + system) around a batch of
requests, with the result cache off (``--cache-ttl 0``) so every request runs the
sensor in full. Both paths read the same fakes: the 8-GPU H100 NVML scenario (through
the pynvml shim), the 8-port NDR InfiniBand sysfs fixture, a 10-entry checkpoint folder.

Fleet model (stated in the rows): a PRTG probe watching 1,000 GPU nodes, each with
11 sensors at a 60 s interval (8 x ``gpu``, 1 x ``gpu_host``, 1 x ``east_west``,
1 x ``checkpoint_volume``): the CPU-seconds the fleet spends per minute on
monitoring, and what that is in cores. With script sensors over SSH this CPU is spent
on the nodes (plus an SSH session per scan on the probe, not measured here); with the
agent it is spent on the nodes and the probe only sends HTTP requests.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import psutil

from common import CASES, Agent, bench_env, median, prtg_ai_script

FLEET_NODES = 1000
INTERVAL_S = 60
SENSORS_PER_NODE = {"gpu": 8, "gpu_host": 1, "east_west": 1, "checkpoint_volume": 1}


def _argv(folder: Path, kmsg: Path) -> dict[str, list[tuple[str, str]]]:
    """Sensor -> parameters (the same for the command line and the query string)."""
    return {
        "checkpoint_volume": [("path", str(folder))],
        "gpu": [("gpu", "0"), ("xid_log", str(kmsg))],
        "gpu_host": [("xid_log", str(kmsg))],
        "east_west": [],
    }


def script_cpu(sensor: str, params: list[tuple[str, str]], env: dict, repeats: int) -> list[float]:
    """CPU seconds (user + system) of each whole ``prtg-ai run`` process."""
    cmd = [prtg_ai_script(), "run", sensor]
    for name, value in params:
        cmd += ["--" + name.replace("_", "-"), value]
    out = []
    for i in range(repeats + 1):  # the first run warms the page cache and is dropped
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"prtg-ai run {sensor} exited with {proc.returncode}")
        if i:
            out.append(usage.ru_utime + usage.ru_stime)
    return out


def agent_cpu(agent: Agent, path: str, batch: int, batches: int) -> list[float]:
    """CPU seconds of the agent process per request, one figure per batch."""
    import http.client

    proc = psutil.Process(agent.pid)
    conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=60)
    headers = {"Authorization": f"Bearer {agent.TOKEN}"}

    def one() -> None:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200 or b'"error"' in body:
            raise RuntimeError(f"agent answered {resp.status}: {body[:200]!r}")

    for _ in range(20):  # warm-up: imports, NVML session, state files
        one()
    out = []
    for _ in range(batches):
        before = proc.cpu_times()
        for _ in range(batch):
            one()
        after = proc.cpu_times()
        out.append(((after.user - before.user) + (after.system - before.system)) / batch)
    conn.close()
    return out


def run(repeats: int = 30) -> list[dict]:
    from urllib.parse import urlencode

    quick = repeats < 10
    batch, batches = (50, 3) if quick else (500, 5)
    rows = []
    per_scan: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ckpt"
        folder.mkdir()
        for i in range(10):
            (folder / f"step-{i}.pt").write_bytes(b"\0" * 1024)
        kmsg = Path(tmp) / "kmsg"
        kmsg.write_text((CASES / "gpu" / "h100_sxm_load" / "kmsg.txt").read_text())
        params = _argv(folder, kmsg)
        env = bench_env(Path(tmp) / "script-state")
        scripts = {s: script_cpu(s, p, env, repeats) for s, p in params.items()}
        with Agent(bench_env(Path(tmp) / "agent-state", {"PRTG_AI_LOG_LEVEL": "WARNING"}),
                   "--cache-ttl", "0", "--state-dir", str(Path(tmp) / "agent-state")) as agent:
            agents = {s: agent_cpu(agent, f"/sensors/{s}" + (f"?{urlencode(p)}" if p else ""), batch, batches)
                      for s, p in params.items()}
        for sensor in params:
            script, served = median(scripts[sensor]), median(agents[sensor])
            per_scan[sensor] = (script, served)
            rows.append({
                "benchmark": f"probe cost: {sensor}, CPU-s per 1,000 scans (agent per request)",
                "baseline": "script: one prtg-ai run process per scan",
                "ratio": round(served / script, 4),
                "target": "reported",
                "ok": True,
                "detail": f"agent {served * 1000:.2f} CPU-s vs script {script * 1000:.1f} CPU-s per 1,000 "
                          f"(medians: {len(scripts[sensor])} processes; {batches} batches of {batch} requests, "
                          f"cache off)",
                "raw": {"script_cpu_s": [round(x, 5) for x in scripts[sensor]],
                        "agent_cpu_s_per_request": [round(x, 6) for x in agents[sensor]]},
            })
    scans_per_min = {s: n * FLEET_NODES * 60 / INTERVAL_S for s, n in SENSORS_PER_NODE.items()}
    script_min = sum(per_scan[s][0] * n for s, n in scans_per_min.items())
    agent_min = sum(per_scan[s][1] * n for s, n in scans_per_min.items())
    total_scans = int(sum(scans_per_min.values()))
    rows.append({
        "benchmark": f"probe cost: fleet of {FLEET_NODES:,} GPU nodes, CPU-s per minute (agent)",
        "baseline": "the same fleet with script sensors",
        "ratio": round(agent_min / script_min, 4),
        "target": "reported",
        "ok": True,
        "detail": f"agent {agent_min:,.1f} CPU-s/min ({agent_min / 60:.2f} cores) vs script {script_min:,.0f} "
                  f"CPU-s/min ({script_min / 60:.1f} cores); assumes {sum(SENSORS_PER_NODE.values())} sensors "
                  f"per node (8 gpu, gpu_host, east_west, checkpoint_volume) at {INTERVAL_S} s = "
                  f"{total_scans:,} scans/min, every request uncached",
    })
    return rows
