"""east_west: the pure parts (sysfs formats, counter maths, slots), with properties checked by hypothesis."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prtg_ai.backends import netdev
from prtg_ai.backends.netdev import Counter, ib_counter, parse_int, parse_ipv6_route, parse_rate, parse_route, parse_speed, parse_state
from prtg_ai.east_west.east_west import assign_slots, counter_change, saturating_rate, select
from prtg_ai.core.errors import ConfigError


@pytest.mark.parametrize("text, expected", [
    ("400 Gb/sec (4X NDR)\n", 50e9),
    ("200 Gb/sec (4X HDR)", 25e9),
    ("56 Gb/sec (4X FDR)", 7e9),
    ("2.5 Gb/sec (1X SDR)", 312.5e6),
    ("100 Gb/sec (2X HDR)", 12.5e9),
])
def test_parse_rate_gives_bytes_per_second(text, expected):
    assert parse_rate(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "N/A", "0 Gb/sec (0X)", "fast"])
def test_parse_rate_rejects_what_is_not_a_rate(text):
    assert parse_rate(text) is None


@pytest.mark.parametrize("text, expected", [
    ("4: ACTIVE\n", (4, "ACTIVE")), ("1: DOWN", (1, "DOWN")), ("5: LinkUp", (5, "LinkUp")),
    ("2: Polling\n", (2, "Polling")), ("garbage", (None, "garbage")),
])
def test_parse_state(text, expected):
    assert parse_state(text) == expected


@pytest.mark.parametrize("text, expected", [("25000\n", 25000), ("-1\n", None), ("4294967295", None),
                                            ("0", None), ("", None)])
def test_parse_speed(text, expected):
    assert parse_speed(text) == expected


@pytest.mark.parametrize("text", ["N/A (no PMA)\n", "", "-3", "12abc"])
def test_parse_int_refuses_non_counters(text):
    with pytest.raises(ValueError):
        parse_int(text)


def test_parse_route_finds_only_default_routes():
    text = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
            "eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
            "ib0\t000010AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
            "eth1\t00000000\t00000000\t0201\t0\t0\t0\t00000000\t0\t0\t0\n")  # unreachable (RTF_REJECT)
    assert parse_route(text) == {"eth0"}


def test_parse_ipv6_route_ignores_the_unreachable_default_on_lo():
    text = ("00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
            "fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth1\n"
            "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
            "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n")
    assert parse_ipv6_route(text) == {"eth1"}


def test_ib_counter_width():
    # A data counter above 2**32 - 1 or from counters_ext is 64 bit; otherwise it may saturate at 32 bits.
    assert ib_counter("port_rcv_data", 5_000_000_000, extended=False).bits is None
    assert ib_counter("port_rcv_data", 1_000, extended=True).bits is None
    assert ib_counter("port_rcv_data", 1_000, extended=False).bits == 32
    assert ib_counter("symbol_error", 7, extended=True).bits == 16
    assert ib_counter("local_link_integrity_errors", 15, extended=False).bits == 4


# -- rate maths ---------------------------------------------------------------

def test_ib_words_become_bytes_over_the_real_elapsed_time():
    r = saturating_rate(1_000, 100.0, Counter(1_000 + 1_500_000_000), 160.0, scale=4)
    assert r.value == 1e8


def test_a_saturated_32_bit_counter_gives_no_rate():
    r = saturating_rate(4_000_000_000, 0.0, Counter(netdev.MAX32, 32), 60.0, scale=4)
    assert r.value is None and "saturated" in r.reason


def test_a_decrease_of_a_narrow_ib_counter_is_a_reset_not_a_wrap():
    # counter_rate(bits=32) would call this a wrap; IB PMA counters saturate, never wrap.
    r = saturating_rate(4_000_000_000, 0.0, Counter(10, 32), 60.0)
    assert r.value is None and r.reason == "counter reset"


def test_a_rate_above_the_link_rate_is_discarded():
    r = saturating_rate(0, 0.0, Counter(10 ** 15), 60.0, scale=4, max_rate=50e9)
    assert r.value is None and "physical maximum" in r.reason


counters = st.integers(min_value=0, max_value=2 ** 64 - 1)
widths = st.sampled_from([None, 4, 8, 16, 32])
times = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


@given(prev=counters, cur=counters, bits=widths, t0=times, t1=times, scale=st.sampled_from([1, 4]),
       max_rate=st.one_of(st.none(), st.floats(min_value=1.0, max_value=1e13)))
def test_saturating_rate_is_never_negative_absurd_or_from_a_stuck_counter(prev, cur, bits, t0, t1, scale, max_rate):
    if bits:
        cur = min(cur, (1 << bits) - 1)
    r = saturating_rate(prev, t0, Counter(cur, bits), t1, scale=scale, max_rate=max_rate)
    if r.value is None:
        assert r.reason
        return
    assert math.isfinite(r.value) and r.value >= 0
    assert t1 > t0 and cur >= prev
    assert not (bits and cur == (1 << bits) - 1)
    assert r.value == pytest.approx((cur - prev) * scale / (t1 - t0))
    if max_rate is not None:
        assert r.value <= max_rate * 1.05


@given(prev=counters, cur=counters, bits=widths)
def test_counter_change_is_never_negative(prev, cur, bits):
    if bits:
        prev, cur = min(prev, (1 << bits) - 1), min(cur, (1 << bits) - 1)
    change, why = counter_change(prev, Counter(cur, bits))
    assert change >= 0
    if cur >= prev:
        assert change == cur - prev
    else:
        assert why == "reset" and change == cur


def test_counter_change_flags_saturation_and_has_no_value_without_a_baseline():
    assert counter_change(65_000, Counter(65_535, 16)) == (535, "saturated")
    assert counter_change(None, Counter(3, 8)) == (None, "no previous sample")


# -- slots and selection ------------------------------------------------------

def test_slots_are_stable_when_ports_come_and_go():
    first = assign_slots(["a", "b", "c"], {}, size=3)
    assert first == {"a": 0, "b": 1, "c": 2}
    # b disappears: a and c keep their slots, b's slot is kept for it while nobody needs it.
    assert assign_slots(["a", "c"], first, size=3) == first
    # A new port takes the slot of a port that is gone once no slot is free.
    assert assign_slots(["a", "c", "d"], first, size=3) == {"a": 0, "c": 2, "d": 1}
    # More ports than slots: the extra ones get none (totals only).
    assert assign_slots(["a", "b", "c", "e"], first, size=3) == first


@given(keys=st.lists(st.text(min_size=1, max_size=4), unique=True, max_size=12),
       previous=st.dictionaries(st.text(min_size=1, max_size=4), st.integers(-3, 12), max_size=12))
def test_slots_are_unique_and_in_range(keys, previous):
    slots = assign_slots(keys, previous, size=8)
    assert len(set(slots.values())) == len(slots) <= 8
    assert all(0 <= i < 8 for i in slots.values())
    assert len([k for k in keys if k in slots]) == min(len(keys), 8)


def test_select_names_the_parameter_of_a_pattern_matching_nothing():
    assert select(["eth0", "eth1", "ens1f0"], ["eth*"], "interface", "interface") == ["eth0", "eth1"]
    with pytest.raises(ConfigError) as err:
        select(["eth0"], ["eth0", "veth*"], "interface", "interface")
    assert err.value.message().startswith("Parameter --interface: 'veth*' matches no interface")
