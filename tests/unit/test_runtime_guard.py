"""The guarded runtime: exceptions become clean PRTG errors, secrets never leave, results always validate."""

from __future__ import annotations

import logging

import pytest

from prtg_ai.core import registry
from prtg_ai.core.errors import SensorError
from prtg_ai.core.logsetup import configure
from prtg_ai.core.params import Param
from prtg_ai.core.runtime import execute, run_sensor
from prtg_ai.core.sensor import Sensor
from prtg_ai.prtg.model import Channel, SensorResult
from prtg_ai.prtg.validate import validate


class Exploding(Sensor):
    id = "checkpoint_volume"  # borrows a real catalogue for the execution-time channel
    params = (Param("mode", "str", default="crash"), Param("token", "str", secret=True))

    def run(self):
        mode = self.values["mode"]
        if mode == "crash":
            raise KeyError(f"boom with {self.values['token']}")
        if mode == "sensor":
            raise SensorError(f"AWS denied with token {self.values['token']}.", "Grant ce:GetCostAndUsage.")
        if mode == "invalid":
            return SensorResult(channels=[Channel("A", 1, v2_id=10), Channel("A", 2, v2_id=11)])
        return SensorResult(channels=[Channel(f"Leak {self.values['token']}", 1, unit="Count", v2_id=30)])


@pytest.fixture
def exploding(monkeypatch):
    real_get = registry.get
    monkeypatch.setattr(registry, "get", lambda sid: Exploding if sid == "exploding" else real_get(sid))


def test_a_crash_becomes_an_actionable_error_and_the_traceback_goes_to_the_log(exploding, make_ctx, tmp_path):
    ctx = make_ctx()
    log_file = configure(ctx.state_dir, {}, ctx.secrets)  # what the first log call does lazily
    out = execute("exploding", ["--token", "hunter2-secret"], ctx)
    assert validate(out.text) == []
    assert "Internal error in sensor exploding (KeyError" in out.text and "log" in out.text
    assert "Traceback" not in out.text and "hunter2-secret" not in out.text
    for h in logging.getLogger("prtg_ai").handlers:
        h.flush()
    log = log_file.read_text()
    assert "Traceback" in log and "KeyError" in log and "hunter2-secret" not in log and "***" in log


def test_sensor_error_keeps_its_hint_and_scrubs_secrets(exploding, make_ctx):
    result = run_sensor("exploding", ["--mode", "sensor", "--token", "AKIAEXAMPLESECRET"], make_ctx())
    assert result.error
    assert result.message() == "AWS denied with token ***. Grant ce:GetCostAndUsage."


def test_prtg_password_placeholders_are_scrubbed(exploding, make_ctx):
    ctx = make_ctx(env={"prtg_linuxpassword": "root-pass-123"})
    result = run_sensor("exploding", ["--mode", "sensor", "--token", "root-pass-123"], ctx)
    assert "root-pass-123" not in result.message()


def test_a_result_breaking_prtg_rules_never_leaves(exploding, make_ctx):
    out = execute("exploding", ["--mode", "invalid"], make_ctx())
    assert validate(out.text) == []
    assert "result PRTG would reject" in out.text and "duplicate channel name" in out.text


def test_channel_names_are_scrubbed(exploding, make_ctx):
    out = execute("exploding", ["--mode", "leak", "--token", "tok-998877"], make_ctx(), fmt="v2")
    assert "tok-998877" not in out.text and "Leak ***" in out.text
