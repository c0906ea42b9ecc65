"""The pure rules of ``stop-idle-gpus``: maintenance windows, idle evidence, rule order, the cap,
and the audit files ``gpu_spend`` reads. Times are hand-picked UTC instants; expected values by hand."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from prtg_ai.gpu_spend import spend_model as sm
from prtg_ai.actions import audit
from prtg_ai.actions import idle_policy as ip


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


# 2026-12-04 is a Friday, 2026-12-05 a Saturday, 2026-12-07 a Monday.
@pytest.mark.parametrize("spec, when, active", [
    ("Mon-Fri@08:00-18:00", "2026-12-04T08:00", True),
    ("Mon-Fri@08:00-18:00", "2026-12-04T18:00", False),       # end is exclusive
    ("Mon-Fri@08:00-18:00", "2026-12-05T12:00", False),       # Saturday
    ("Fri@22:00-06:00", "2026-12-04T23:30", True),            # Friday evening
    ("Fri@22:00-06:00", "2026-12-05T05:59", True),            # ... into Saturday morning
    ("Fri@22:00-06:00", "2026-12-05T06:00", False),
    ("Fri@22:00-06:00", "2026-12-04T05:00", False),           # Friday early hours belong to Thursday
    ("Sat+Sun@00:00-00:00", "2026-12-05T13:00", True),        # whole day
    ("Sat+Sun@00:00-00:00", "2026-12-07T00:10", False),       # Monday
    ("Fri-Mon@10:00-11:00", "2026-12-07T10:30", True),        # range wraps over the weekend
    ("Fri-Mon@10:00-11:00", "2026-12-08T10:30", False),       # Tuesday
    ("02:00-04:00", "2026-12-08T03:00", True),                # no days: every day
    ("daily@02:00-04:00 Sat@12:00-13:00", "2026-12-05T12:30", True),
    ("12:00-24:00", "2026-12-08T23:59", True),
])
def test_maintenance_windows(spec, when, active):
    assert (ip.active_window(ip.parse_windows(spec), ts(when)) is not None) is active


@pytest.mark.parametrize("spec", ["Mon-Fri 08:00-18:00x", "Funday@01:00-02:00", "25:00-26:00", "08:00-18:61",
                                  "Mon,Tue@08:00-09:00", "x" * 300, " ".join(["01:00-02:00"] * 17)])
def test_bad_windows_are_refused(spec):
    with pytest.raises(ip.WindowError):
        ip.parse_windows(spec)


def test_an_empty_window_spec_is_no_window():
    assert ip.parse_windows("") == [] and ip.parse_windows(None) == []


# -- evidence ----------------------------------------------------------------------------------
START, END = 0.0, 3600.0
LIMITS = ip.Thresholds(gpu=5, cpu=10, net_kib_s=50)


def points(value: float, start: float = START, end: float = END, step: float = 300):
    out, t = [], start
    while t < end:
        out.append((t, value))
        t += step
    return out


def test_gpu_metrics_decide_when_they_cover_the_window():
    ev = ip.assess([points(1.0), points(4.9)], points(90.0), points(1e9), points(1e9), START, END, LIMITS)
    assert (ev.state, ev.source) == (ip.IDLE, "gpu")       # a busy CPU and network do not matter
    assert ev.detail["gpu_max_percent"] == 4.9 and ev.detail["gpu_series"] == 2


def test_one_busy_gpu_point_makes_it_busy():
    busy = points(0.0)
    busy[5] = (busy[5][0], 5.0)                             # at the threshold is not below it
    ev = ip.assess([points(0.0), busy], None, None, None, START, END, LIMITS)
    assert (ev.state, ev.source) == (ip.BUSY, "gpu")


def test_cpu_and_network_decide_without_gpu_metrics():
    net = points(300 * 49 * 1024.0)                        # 49 KiB/s per 5-minute Sum
    ev = ip.assess([], points(9.9), net, net, START, END, LIMITS)
    assert (ev.state, ev.source) == (ip.IDLE, "cpu+network")
    assert ev.detail["net_in_max_bytes_s"] == 49 * 1024.0
    assert "no GPU metrics" in ev.text
    ev = ip.assess([], points(9.9), points(300 * 50 * 1024.0), net, START, END, LIMITS)
    assert ev.state == ip.BUSY and "network in" in ev.text


def test_cpu_without_network_is_no_evidence():
    ev = ip.assess([], points(1.0), None, None, START, END, LIMITS)
    assert (ev.state, ev.source) == (ip.NO_EVIDENCE, "none")


def test_incomplete_gpu_data_falls_back_to_cpu_and_network():
    late_gpu = points(0.0, start=2400.0)                   # the agent started 40 minutes in
    ev = ip.assess([late_gpu], points(1.0), points(10.0), points(10.0), START, END, LIMITS)
    assert (ev.state, ev.source) == (ip.IDLE, "cpu+network")
    assert ev.detail["gpu_incomplete"] is True and "GPU data incomplete" in ev.text


@pytest.mark.parametrize("series, covered", [
    (points(0.0), True),
    (points(0.0, start=300.0), True),        # the first period may be missing
    (points(0.0, start=600.0), False),       # two missing: the window is not covered from its start
    (points(0.0, end=2600.0), False),        # nothing for the last 15+ minutes: data stopped flowing
    (points(0.0, step=900.0), False),        # 4 of 12 periods: too sparse
    ([], False),
])
def test_coverage(series, covered):
    assert ip.covers(series, START, END) is covered


def test_nan_points_are_ignored():
    series = points(0.0) + [(1800.0, float("nan"))]
    ev = ip.assess([series], None, None, None, START, END, LIMITS)
    assert ev.state == ip.IDLE


# -- rule order and the cap ----------------------------------------------------------------------
NOW = ts("2026-12-08T12:00")
P4D = sm.TypeInfo(8, 0, "A100")


def inst(**over):
    base = {"id": "i-1", "type": "p4d.24xlarge", "state": "running", "launch_time": NOW - 3 * 3600,
            "tags": {"prtg-ai:auto-stop": "true"}}
    base.update(over)
    return base


@pytest.mark.parametrize("over, info, code", [
    ({}, P4D, None),
    ({"type": "m5.large"}, sm.TypeInfo(0, 0), ip.NOT_GPU),
    ({"type": "g6e.xlarge"}, None, None),                   # a GPU family even without DescribeInstanceTypes data
    ({"tags": {}}, P4D, ip.NOT_OPTED_IN),
    ({"tags": {"prtg-ai:auto-stop": "false"}}, P4D, ip.NOT_OPTED_IN),
    ({"tags": {"prtg-ai:auto-stop": "True"}}, P4D, None),
    ({"tags": {"prtg-ai:auto-stop": "true", "prtg-ai:protect": ""}}, P4D, ip.PROTECTED),
    ({"tags": {"prtg-ai:auto-stop": "true", "prtg-ai:maintenance-window": "Tue@11:00-13:00"}}, P4D, ip.IN_WINDOW),
    ({"tags": {"prtg-ai:auto-stop": "true", "prtg-ai:maintenance-window": "Mon@11:00-13:00"}}, P4D, None),
    ({"tags": {"prtg-ai:auto-stop": "true", "prtg-ai:maintenance-window": "soon"}}, P4D, ip.IN_WINDOW),
    ({"launch_time": NOW - 3600}, P4D, ip.TOO_YOUNG),
    ({"launch_time": None}, P4D, ip.TOO_YOUNG),
])
def test_rules_before_evidence(over, info, code):
    failed = ip.precheck(inst(**over), info, ip.Rules(), NOW)
    assert (failed[0] if failed else None) == code


def test_option_window_and_custom_tags():
    rules = ip.Rules(opt_in_key="team:idle-stop", opt_in_value="yes", protect_key="keep",
                     windows=ip.parse_windows("Tue@00:00-00:00"))
    assert ip.precheck(inst(tags={"team:idle-stop": "YES"}), P4D, rules, NOW)[0] == ip.IN_WINDOW
    rules.windows = []
    assert ip.precheck(inst(tags={"team:idle-stop": "YES"}), P4D, rules, NOW) is None
    assert ip.precheck(inst(tags={"team:idle-stop": "yes", "keep": "1"}), P4D, rules, NOW)[0] == ip.PROTECTED


def test_the_cap_takes_the_dearest_first():
    cands = [{"id": "a", "usd_per_hour": 1.0, "launch_time": 5}, {"id": "b", "usd_per_hour": None, "launch_time": 1},
             {"id": "c", "usd_per_hour": 21.96, "launch_time": 9}, {"id": "d", "usd_per_hour": 21.96, "launch_time": 2}]
    chosen, rest = ip.pick(cands, 2)
    assert [c["id"] for c in chosen] == ["d", "c"] and [c["id"] for c in rest] == ["a", "b"]
    assert ip.pick(cands, 0) == ([], sorted(cands, key=lambda c: (-(c["usd_per_hour"] or 0), c["launch_time"])))


# -- today's totals ---------------------------------------------------------------------------------
def test_today_totals_roll_over_at_utc_midnight_and_survive_a_bad_file(tmp_path):
    folder = str(tmp_path)
    day = ts("2026-12-08T23:00")
    audit.record_stop(folder, day, "i-1", {"usd_per_hour": 21.96, "at": day})
    audit.record_stop(folder, day, "i-2", {"usd_per_hour": 1.006, "at": day})
    audit.record_stop(folder, day, "i-1", {"usd_per_hour": 21.96, "at": day})   # the same instance once
    assert audit.today_totals(folder, day + 1800) == (2, pytest.approx(22.966))
    assert audit.today_totals(folder, day + 3600) == (0, 0.0)                   # 2026-12-09 00:00 UTC
    (tmp_path / audit.TODAY_NAME).write_text("{not json")
    assert audit.today_totals(folder, day) == (0, 0.0)
    (tmp_path / audit.TODAY_NAME).write_text(json.dumps({"format": audit.FORMAT, "day": "2026-12-08", "stopped": {
        "i-1": {"usd_per_hour": "nan"}, "i-2": {"usd_per_hour": 5.0}, "i-3": "junk"}}))
    assert audit.today_totals(folder, day) == (2, 5.0)


def test_the_audit_log_is_scrubbed_and_rotated(tmp_path, monkeypatch):
    log = audit.AuditLog(str(tmp_path), scrub=lambda t: t.replace("s3cr3t-value", "***"))
    log.write({"kind": "decision", "reason": "contains s3cr3t-value"})
    assert "s3cr3t-value" not in (tmp_path / audit.LOG_NAME).read_text()
    monkeypatch.setattr(audit, "MAX_LOG_BYTES", 10)
    log.write({"kind": "run"})
    assert audit.read_log(str(tmp_path)) == [{"kind": "run"}]
    assert (tmp_path / (audit.LOG_NAME + ".1")).is_file()
