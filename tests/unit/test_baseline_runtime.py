"""``--baseline CHANNEL``: the runtime-level opt-in every sensor accepts.

Each registered sensor runs for real (fixture trees, the NVML fake, seeded caches,
a fake model server) with ``--baseline "Execution Time"`` (the one channel every
sensor has), so the companion channels are emitted and validated for each of them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from fakes import nvml_fake
from fakes.inference_server import FakeModelServer
from support import channels, cli_env, run_cli

from prtg_ai.core import registry
from prtg_ai.core.params import resolve

TESTCASES = Path(__file__).resolve().parents[1] / "testcases"
MONDAY = 1_789_948_800.0


def _checkpoint_volume(tmp_path, monkeypatch, make_ctx):
    (tmp_path / "ckpt").mkdir()
    return make_ctx(), ["--path", tmp_path / "ckpt"]


def _gpu(tmp_path, monkeypatch, make_ctx, sensor="gpu", case="h100_sxm_load"):
    nvml_fake.install(monkeypatch, nvml_fake.load_scenario(TESTCASES / sensor / case / "nvml.json"))
    (tmp_path / "kmsg").touch()
    return make_ctx(proc_root=tmp_path / "proc"), ["--xid-log", tmp_path / "kmsg"]


def _gpu_host(tmp_path, monkeypatch, make_ctx):
    return _gpu(tmp_path, monkeypatch, make_ctx, "gpu_host", "h100x8_load")


def _east_west(tmp_path, monkeypatch, make_ctx):
    root = tmp_path / "host"
    shutil.copytree(TESTCASES / "east_west" / "ndr_8port", root, ignore=shutil.ignore_patterns("after"))
    return make_ctx(sys_root=root / "sys", proc_root=root / "proc"), []


def _gpu_spend(tmp_path, monkeypatch, make_ctx):
    """Fresh caches, as the sensor names them (the fast path of a scan; boto3 is never needed)."""
    from prtg_ai.gpu_spend.gpu_spend import GpuSpendSensor

    now = datetime(2026, 9, 21, 10, 0, tzinfo=timezone.utc).timestamp()
    ctx = make_ctx(env={"AWS_ACCESS_KEY_ID": "AKIAUNITTEST", "AWS_SECRET_ACCESS_KEY": "unit-secret-value",
                        "AWS_DEFAULT_REGION": "us-east-1"}, clock=lambda: now)
    sensor = GpuSpendSensor(ctx, resolve(GpuSpendSensor.params, [], ctx.env))
    identity, live = sensor.caches()
    with identity.session() as st:
        st.data.update({"account": "123456789012", "fetched_at": now - 10})
    with live.session() as st:
        st.data.update({"fetched_at": now - 60, "regions": ["us-east-1"], "notes": [], "burn": {
            "instances": 1, "spot": 0, "gpus": 8, "accelerators": 0, "burn": 98.32, "idle": 0, "idle_burn": 0.0,
            "unpriced": 0, "unpriced_types": [], "idle_ids": [], "unknown": 0}})
    with sensor.cost_cache_for("123456789012").session() as st:
        st.data.update({"fetched_at": now - 3600,
                        "daily": {f"2026-09-{d:02d}": {"usd": 100.0, "estimated": False} for d in range(1, 21)},
                        "forecast": {"day": "2026-09-21", "usd": 1000.0}, "budgets": [],
                        "requests": {"day": "2026-09-21", "count": 1, "total": 1}})
    return ctx, []


def _node_security(tmp_path, monkeypatch, make_ctx):
    """The GPU scenario's proc tree (no listeners) and its NVML answers; no probes, no logs."""
    case = TESTCASES / "node_security" / "gpu_miner"
    nvml_fake.install(monkeypatch, nvml_fake.load_scenario(case / "nvml.json"))
    return make_ctx(proc_root=case / "proc"), ["--auth-source", "off", "--probe", "no"]


SETUPS = {"checkpoint_volume": _checkpoint_volume, "gpu": _gpu, "gpu_host": _gpu_host,
          "east_west": _east_west, "gpu_spend": _gpu_spend, "node_security": _node_security}


@pytest.mark.parametrize("sensor", registry.sensor_ids())
def test_every_sensor_accepts_a_baseline(sensor, tmp_path, monkeypatch, make_ctx, sensor_run):
    if sensor == "inference":
        page = (TESTCASES / "inference" / "vllm" / "metrics.1.prom").read_text()
        with FakeModelServer(page=page) as srv:
            result = sensor_run(sensor, ["--url", srv.url, "--baseline", "Execution Time"], make_ctx())
    elif sensor == "k8s_gpu":
        import json

        from fakes.kube_api import FakeKubeApi

        cluster = json.loads((TESTCASES / "k8s_gpu" / "cluster.json").read_text())
        (tmp_path / "token").write_text("t0ken-for-tests")
        with FakeKubeApi(cluster["nodes"], cluster["pods"], token="t0ken-for-tests") as srv:
            result = sensor_run(sensor, ["--node", "gpu-node-1", "--api-url", srv.url, "--token-file",
                                         tmp_path / "token", "--baseline", "Execution Time"], make_ctx())
    else:
        assert sensor in SETUPS, f"add a minimal real setup for {sensor!r} here"
        ctx, args = SETUPS[sensor](tmp_path, monkeypatch, make_ctx)
        result = sensor_run(sensor, [*args, "--baseline", "Execution Time"], ctx)
    assert not result.error, result.message()
    ch = channels(result)
    assert ch["Execution Time Deviation"] == 0.0 and ch["Execution Time Baseline State"] == 0  # learning
    dev = result.channel("Execution Time Deviation")
    assert (dev.limitmaxwarning, dev.limitmaxerror, dev.limitminwarning, dev.limitminerror) == (4, 6, -4, -6)
    assert dev.v2_id == 900 and result.channel("Execution Time Baseline State").v2_id == 910


def run_scans(sensor_run, ctx, clock, ckpt: Path, values, *names):
    """One checkpoint_volume scan per value (the file count), 5 minutes apart."""
    results = []
    for v in values:
        existing = sorted(ckpt.iterdir())
        for extra in existing[v:]:
            extra.unlink()
        for i in range(len(existing), v):
            (ckpt / f"ckpt-{i:04d}.pt").write_bytes(b"x")
        args = ["--path", ckpt]
        for n in names:
            args += ["--baseline", n]
        results.append(sensor_run("checkpoint_volume", args, ctx))
        clock.advance(300)
    return results


def test_the_baseline_learns_across_scans_and_flags_an_anomaly(tmp_path, make_ctx, sensor_run, clock):
    """A real sensor's channel: 'Checkpoints' steady at 10 +/- 1 for 8 days, then 40."""
    clock.now = MONDAY
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    ctx = make_ctx()
    # one scan per 15 minutes (the baseline keeps one value per slot and 15 minutes):
    # 8 days are 768 real scans of the real sensor
    results = []
    for i in range(8 * 96):
        results += run_scans(sensor_run, ctx, clock, ckpt, [10 + (i % 3) - 1], "Checkpoints")
        clock.advance(600)
    states = [channels(r)["Checkpoints Baseline State"] for r in results]
    assert states[0] == 0 and states[7 * 96 - 1] == 0  # a week of learning
    assert set(states[7 * 96:]) == {1}  # the steady series is normal afterwards
    spike = run_scans(sensor_run, ctx, clock, ckpt, [40], "Checkpoints")[0]
    ch = channels(spike)
    assert ch["Checkpoints Baseline State"] == 3 and ch["Checkpoints Deviation"] > 6
    assert spike.channel("Checkpoints Deviation").limit_state() == "error"
    assert "Checkpoints is anomalous for this hour of the week" in spike.message()


def test_index_follows_the_order_of_the_options(tmp_path, make_ctx, sensor_run):
    (tmp_path / "c").mkdir()
    result = sensor_run("checkpoint_volume", ["--path", tmp_path / "c", "--baseline", "Used Space",
                                              "--baseline", "Checkpoints"], make_ctx())
    assert result.channel("Used Space Deviation").v2_id == 900
    assert result.channel("Checkpoints Deviation").v2_id == 901
    assert result.channel("Checkpoints Baseline State").v2_id == 911


def test_unknown_lookup_and_too_many_channels(tmp_path, make_ctx, sensor_run):
    (tmp_path / "c").mkdir()
    base = ["--path", tmp_path / "c"]
    missing = sensor_run("checkpoint_volume", [*base, "--baseline", "No Such Channel"], make_ctx())
    assert not missing.error and "--baseline 'No Such Channel': no such channel" in missing.message()
    lookup = sensor_run("checkpoint_volume", [*base, "--baseline", "Writable"], make_ctx())
    assert lookup.error and lookup.message().startswith("Parameter --baseline:")
    many = [a for i in range(9) for a in ("--baseline", f"Channel {i}")]
    too_many = sensor_run("checkpoint_volume", [*base, *many], make_ctx())
    assert too_many.error and "at most 8" in too_many.message()


def test_the_baseline_has_its_own_state_file_and_drops_unused_channels(tmp_path, make_ctx, sensor_run, clock):
    (tmp_path / "c").mkdir()
    ctx = make_ctx()
    sensor_run("checkpoint_volume", ["--path", tmp_path / "c", "--baseline", "Used Space",
                                     "--baseline", "Checkpoints"], ctx)
    clock.advance(60)
    sensor_run("checkpoint_volume", ["--path", tmp_path / "c", "--baseline", "Checkpoints"], ctx)
    files = sorted((tmp_path / "state").glob("checkpoint_volume-*.json"))
    assert len(files) == 2  # the sensor's own and the baseline's
    docs = [json.loads(f.read_text()) for f in files]
    baseline_doc = next(d for d in docs if d["instance"].get("_baseline") == "1")
    assert set(baseline_doc["data"]) == {"Checkpoints"}
    sensor_doc = next(d for d in docs if "_baseline" not in d["instance"])
    assert "Checkpoints" not in sensor_doc["data"]


def test_python_script_advanced_json_carries_the_option(tmp_path):
    (tmp_path / "c").mkdir()
    env = cli_env(tmp_path / "state")
    doc, _ = run_cli(["run", "checkpoint_volume",
                      json.dumps({"params": f"--path {tmp_path / 'c'} --baseline 'Used Space'"})], env)
    names = [c["channel"] for c in doc["prtg"]["result"]]
    assert "Used Space Deviation" in names and "Used Space Baseline State" in names


def test_sensors_without_baselines_never_import_the_baseline_module(tmp_path):
    (tmp_path / "c").mkdir()
    code = ("import sys, prtg_ai.cli as c; c.main(['run', 'checkpoint_volume', '--path', sys.argv[1]]);"
            "print('LOADED' if 'prtg_ai.maths.baseline' in sys.modules else 'LAZY', file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "c")], capture_output=True, text=True,
                          env=cli_env(tmp_path / "state"), timeout=60)
    assert proc.stderr.strip().endswith("LAZY"), proc.stderr
    assert '"error"' not in proc.stdout
