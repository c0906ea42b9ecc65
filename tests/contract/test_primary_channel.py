"""A fixed primary channel: for every test case of every sensor, scan 1 and scan 2 start with the same channel.

PRTG makes a sensor's first channel its primary channel when it creates the channels
(on the first scan) and keeps it. A first scan that starts with another channel than
later scans (a rate that needs two samples, a page with fewer metrics) would pin the
wrong primary channel for good. The Script v2 status of each scan is checked against
the legacy result by ``support.check_result`` (called by ``sensor_run``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fakes.gpu_cases import case_dirs, run_two_scans
from fakes.inference_server import FakeModelServer
from prtg_ai.catalog import load

TESTCASES = Path(__file__).resolve().parents[1] / "testcases"


def first(result) -> str | None:
    return result.channels[0].name if result.channels and not result.error else None


def primary_row(sensor: str) -> str:
    common = ("execution_time", "baseline_deviation", "baseline_state")
    return next(s for s in load(sensor) if s.key not in common).name


@pytest.mark.parametrize("sensor,case", [(s, c) for s in ("gpu", "gpu_host") for c in case_dirs(s)],
                         ids=lambda v: v if isinstance(v, str) else v.name)
def test_gpu_cases_keep_their_first_channel(sensor, case, tmp_path, monkeypatch, sensor_run, make_ctx, clock):
    _, one, two = run_two_scans(sensor, case, tmp_path, monkeypatch, sensor_run, make_ctx, clock)
    assert one.error == two.error
    assert first(one) == first(two)


EW_CASES = sorted(p.name for p in (TESTCASES / "east_west").iterdir() if (p / "sys").is_dir())


@pytest.mark.parametrize("case", EW_CASES)
def test_east_west_cases_keep_their_first_channel(case, tmp_path, sensor_run, make_ctx, clock):
    root = tmp_path / "host"
    shutil.copytree(TESTCASES / "east_west" / case, root, ignore=shutil.ignore_patterns("after"))
    ctx = make_ctx(sys_root=root / "sys", proc_root=root / "proc")
    one = sensor_run("east_west", [], ctx)
    if (TESTCASES / "east_west" / case / "after").is_dir():
        shutil.copytree(TESTCASES / "east_west" / case / "after", root, dirs_exist_ok=True)
    clock.advance(60)
    two = sensor_run("east_west", [], ctx)
    assert not one.error and not two.error, (one.message(), two.message())
    assert first(one) == first(two)
    # Fabric RX leads wherever there is fabric; a host whose ports are all front-end
    # (a container host, a plain server) leads with Front-end RX on every scan.
    has_fabric = any(c.name == "Fabric TX" or c.name == "Fabric RX" for c in two.channels)
    assert first(one) == (primary_row("east_west") if has_fabric else "Front-end RX")


INF_CASES = sorted(p.name for p in (TESTCASES / "inference").iterdir() if (p / "metrics.1.prom").is_file())


@pytest.mark.parametrize("case", INF_CASES)
def test_inference_cases_keep_their_first_channel(case, sensor_run, make_ctx, clock):
    ctx = make_ctx()
    pages = [(TESTCASES / "inference" / case / f"metrics.{n}.prom").read_text(encoding="utf-8") for n in (1, 2)]
    with FakeModelServer(page=pages[0]) as srv:
        one = sensor_run("inference", ["--url", srv.url], ctx)
        clock.advance(60)
        srv.page = pages[1]
        two = sensor_run("inference", ["--url", srv.url], ctx)
    assert not one.error and not two.error, (one.message(), two.message())
    assert first(one) == first(two) == primary_row("inference")


def test_checkpoint_volume_keeps_its_first_channel(tmp_path, sensor_run, make_ctx, clock):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "step-1.pt").write_bytes(b"x" * 4096)
    ctx = make_ctx()
    one = sensor_run("checkpoint_volume", ["--path", str(folder)], ctx)
    clock.advance(600)
    (folder / "step-2.pt").write_bytes(b"x" * 8192)
    two = sensor_run("checkpoint_volume", ["--path", str(folder)], ctx)
    assert first(one) == first(two) == primary_row("checkpoint_volume")
