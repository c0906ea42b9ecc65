"""Fixtures for every test; the helpers themselves live in ``support.py``."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from prtg_ai.core.context import Context
from prtg_ai.core.runtime import run_sensor
from prtg_ai.prtg.model import SensorResult
from support import COLLECTED_FILES, FakeClock, catalogue_coverage, check_result, whole_suite_collected


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_ctx(tmp_path, clock):
    """Build a Context with a private state folder and the fake clock (overridable)."""

    def _make(**overrides) -> Context:
        kwargs = dict(state_dir=tmp_path / "state", clock=clock, env={})
        kwargs.update(overrides)
        return Context(**kwargs)

    return _make


@pytest.fixture
def sensor_run(make_ctx):
    """Run a sensor in-process; returns the SensorResult after checking it (PRTG's rules, the catalogue).

    ``limits``: catalogue key -> limit keys the arguments change on purpose (see ``support.check_channels``).
    """

    def _run(sensor_id: str, argv: list[str], ctx: Context | None = None,
             limits: dict[str, dict] | None = None) -> SensorResult:
        result = run_sensor(sensor_id, [str(a) for a in argv], ctx or make_ctx())
        check_result(sensor_id, result, limits)
        return result

    return _run


def pytest_collection_modifyitems(session, config, items):
    # Contract tests over everything the suite emitted must run after the rest.
    last = [i for i in items if i.get_closest_marker("after_all")]
    rest = [i for i in items if not i.get_closest_marker("after_all")]
    items[:] = rest + last


def pytest_collection_finish(session):
    # The files with a test left to run after -k / -m selection: coverage needs every one.
    COLLECTED_FILES.update(str(item.path) for item in session.items)


def pytest_terminal_summary(terminalreporter):
    """Which catalogued channels no checked result carried in this session (always shown when any ran)."""
    coverage = catalogue_coverage()
    if coverage is None:
        return
    terminalreporter.section("catalogue coverage")
    for sensor, (seen, missing) in coverage.items():
        if not seen:
            terminalreporter.write_line(f"{sensor}: no result checked in this session")
        elif missing:
            terminalreporter.write_line(f"{sensor}: {seen} of {seen + len(missing)} rows seen, "
                                        f"never: {', '.join(missing)}")
        else:
            terminalreporter.write_line(f"{sensor}: every row seen ({seen})")
    if not whole_suite_collected():
        terminalreporter.write_line("(a partial run: tests/contract/test_catalog.py enforces full coverage "
                                    "only when the whole suite runs)")


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate and key for 127.0.0.1 (openssl), for TLS servers in tests."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=30)
    return cert, key
