"""Pure GPU decoding: throttle reduction, XID severity, idle-but-held, health roll-up."""

import pytest

from prtg_ai.gpu import health as gh


@pytest.mark.parametrize("mask, before, expected", [
    (0x0, False, gh.THR_NONE),
    (0x1, False, gh.THR_IDLE),
    (0x4, False, gh.THR_POWER_CAP),                 # one scan at the cap is routine
    (0x4, True, gh.THR_POWER_CAP_SUSTAINED),        # two scans: Warning
    (0x4 | 0x10, False, gh.THR_POWER_CAP),
    (0x20, False, gh.THR_SW_THERMAL),
    (0x4 | 0x20 | 0x40, True, gh.THR_HW_THERMAL),   # worst wins
    (0x8 | 0x1, False, gh.THR_HW_SLOWDOWN),
    (0x80 | 0x40, False, gh.THR_HW_POWER_BRAKE),
    (0x100, False, gh.THR_CLOCK_SETTING),
    (0x10000, False, gh.THR_NONE),                  # an unknown future bit is not an alarm by itself
])
def test_throttle_mask_reduces_to_the_worst_lookup_value(mask, before, expected):
    assert gh.throttle_state(mask, before) == expected


def test_lookup_values_match_the_catalogue_lookup():
    from prtg_ai.catalog.lookups import load_lookups

    lk = load_lookups()["prtgai.gpu.throttle"]
    assert lk.values[gh.THR_POWER_CAP][0] == "Ok"
    assert lk.values[gh.THR_POWER_CAP_SUSTAINED][0] == "Warning"
    assert lk.values[gh.THR_SW_THERMAL][0] == "Warning"
    assert {lk.values[v][0] for v in (gh.THR_HW_SLOWDOWN, gh.THR_HW_THERMAL, gh.THR_HW_POWER_BRAKE)} == {"Error"}
    sev = load_lookups()["prtgai.gpu.xidseverity"]
    assert sev.values[gh.XID_LOST][0] == "Error" and sev.values[gh.XID_APP][0] == "Warning"
    health = load_lookups()["prtgai.gpu.health"]
    assert [health.values[v][0] for v in range(4)] == ["Ok", "Warning", "Error", "Error"]


def test_decode_reasons_lists_every_bit_and_unknown_ones():
    assert gh.decode_reasons(0x4 | 0x40) == ["SW power cap", "HW thermal slowdown"]
    assert gh.decode_reasons(0x200) == ["unknown reason 0x200"]
    assert gh.decode_reasons(0) == []


@pytest.mark.parametrize("code, severity", [
    (79, gh.XID_LOST), (48, gh.XID_ERROR), (64, gh.XID_ERROR), (119, gh.XID_ERROR), (13, gh.XID_APP),
    (31, gh.XID_APP), (63, gh.XID_WARN), (94, gh.XID_WARN), (45, gh.XID_INFO), (9999, gh.XID_WARN),
])
def test_xid_severity_table(code, severity):
    assert gh.xid_severity(code) == severity


def test_worst_xid():
    assert gh.worst_xid([]) == gh.XID_NONE
    assert gh.worst_xid([45, 13, 79, 94]) == gh.XID_LOST


def test_idle_held_needs_the_whole_window():
    step = gh.idle_held_step(1000.0, 0, True, 5.0, 600.0, since=None, last_seen=None)
    assert (step.state, step.since, step.held_seconds) == (gh.IDLE_HELD_SHORT, 1000.0, 0.0)
    step = gh.idle_held_step(1540.0, 1, True, 5.0, 600.0, since=1000.0, last_seen=1480.0)
    assert (step.state, step.held_seconds) == (gh.IDLE_HELD_SHORT, 540.0)
    step = gh.idle_held_step(1600.0, 2, True, 5.0, 600.0, since=1000.0, last_seen=1540.0)
    assert (step.state, step.held_seconds) == (gh.IDLE_HELD, 600.0)


def test_idle_held_restarts_on_work_release_and_gaps():
    assert gh.idle_held_step(1600.0, 40, True, 5.0, 600.0, 1000.0, 1540.0).state == gh.IDLE_IN_USE
    assert gh.idle_held_step(1600.0, 0, False, 5.0, 600.0, 1000.0, 1540.0).state == gh.IDLE_FREE
    # nobody watched for longer than the window: the stretch starts again now
    step = gh.idle_held_step(5000.0, 0, True, 5.0, 600.0, 1000.0, 1540.0)
    assert (step.state, step.since) == (gh.IDLE_HELD_SHORT, 5000.0)
    assert gh.idle_held_step(1600.0, None, True, 5.0, 600.0, None, None).state == gh.IDLE_UNKNOWN


def test_health_roll_up():
    assert gh.health() == (gh.HEALTH_OK, [])
    assert gh.health(throttle=gh.THR_POWER_CAP)[0] == gh.HEALTH_OK
    assert gh.health(throttle=gh.THR_POWER_CAP_SUSTAINED)[0] == gh.HEALTH_WARNING
    assert gh.health(remap_pending=True)[0] == gh.HEALTH_WARNING
    assert gh.health(remap_pending=True, remap_failure=True)[0] == gh.HEALTH_ERROR
    assert gh.health(xid=gh.XID_APP)[0] == gh.HEALTH_WARNING
    assert gh.health(xid=gh.XID_LOST)[0] == gh.HEALTH_ERROR
    level, why = gh.health(recovery_action=2)
    assert level == gh.HEALTH_ERROR and "node reboot" in why[0]
    assert gh.health(lost=True, remap_failure=True)[0] == gh.HEALTH_LOST
