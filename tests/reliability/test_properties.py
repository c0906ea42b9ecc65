"""Properties of every rate and trend path: resets, wraps, saturation, clock steps, missing samples.

``tests/unit/test_trend_and_counters.py`` holds the single-call properties of
``counters`` and ``trend``. Here the same maths runs over whole *sequences* of
scans, as PRTG drives it, and through the sensors that use it:

* ``counters.counter_rate`` over a counter process with increments, 32-bit wraps,
  resets, saturation, missing reads and clock steps: never negative, infinite or
  NaN, never above the ceiling, and exact whenever the truth is knowable;
* ``east_west``'s saturating rates and event changes, pure and through the sensor on a
  copy of the 8-port NDR sysfs fixture whose counter files are rewritten between scans
  (including garbage, deleted files, a changed boot id);
* ``gpu``'s PCIe / NVLink / energy counters through the NVML scenario fake;
* ``checkpoint_volume``'s trend (least squares over the save-then-prune envelope)
  under clock steps back and forth.

Sizes: ``sized(quick, full)``; the full run (``PRTG_AI_RELIABILITY=full``) tries ten
times more examples.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import nvml_fake
from fakes.gpu_cases import TESTCASES
from prtg_ai.backends.netdev import Counter
from prtg_ai.core.context import Context
from prtg_ai.core.runtime import run_sensor
from prtg_ai.maths.counters import counter_delta, counter_rate, is_saturated
from prtg_ai.east_west.east_west import counter_change, saturating_rate
from prtg_ai.maths.trend import gross_increase_rate, least_squares_slope, thin, upper_envelope
from reliability.rel_support import sized
from support import FakeClock, channels, check_result

pytestmark = pytest.mark.reliability("property tests (rates, trends)")

EPOCH = 1_790_000_000.0
SEQ = settings(max_examples=sized(300, 3000), deadline=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.function_scoped_fixture])
SENSOR = settings(max_examples=sized(25, 250), deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.function_scoped_fixture])

clock_steps = st.one_of(
    st.sampled_from([60.0, 60.0, 60.0, 0.0, -1.0, -3600.0, 0.001, 86400.0 * 30]),
    st.floats(min_value=-1e6, max_value=1e7, allow_nan=False, allow_infinity=False),
)


def finite_non_negative(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


# -- the pure maths over sequences ---------------------------------------------------------
counter_ops = st.lists(st.tuples(
    st.sampled_from(["inc", "inc", "inc", "wrap", "reset", "saturate", "missing", "huge"]),
    st.integers(min_value=0, max_value=2 ** 40),
    clock_steps,
), min_size=1, max_size=40)


@SEQ
@given(st.sampled_from([32, 64, None]), st.integers(min_value=0, max_value=2 ** 32 - 1), counter_ops,
       st.one_of(st.none(), st.floats(min_value=1.0, max_value=1e12)))
def test_a_counter_process_never_gives_a_negative_infinite_nan_or_absurd_rate(tally, bits, start, ops, max_rate):
    """Every read pair of a counter process -> a sound rate or None with a reason; exact when knowable."""
    width = bits or 64
    top = (1 << width) - 1
    value, t = start, EPOCH
    prev_value, prev_t = value, t
    for op, amount, step in ops:
        tally.case()
        truth = None  # the true increase when the counter neither reset nor saturated
        if op == "inc":
            amount = min(amount, top - 1 - value) if value < top - 1 else 0
            value += amount
            truth = amount
        elif op == "wrap" and bits == 32:
            # A 32-bit counter passes all ones from the top quarter of its range.
            before = max(value, (1 << 32) * 3 // 4)
            prev_value = before
            amount = amount % (1 << 30) + 1
            value = (before + amount) % (1 << 32)
            truth = amount
        elif op == "reset":
            tally.fault()
            value = amount % 1000
        elif op == "saturate" and bits:
            tally.fault()
            value = top
        elif op == "huge":
            value = min(top, value + amount * 2 ** 20)
            truth = value - prev_value if value < top else None
        t += step
        if op == "missing":
            tally.fault()
            r = counter_rate(None, prev_t, value, t, bits=bits, max_rate=max_rate)
            assert r.value is None and r.reason
            continue
        r = counter_rate(prev_value, prev_t, value, t, bits=bits, max_rate=max_rate)
        if r.value is None:
            assert r.reason, "a missing rate must say why"
        else:
            assert finite_non_negative(r.value), r
            assert finite_non_negative(r.delta), r
            if max_rate is not None:
                assert r.value <= max_rate * 1.05
            assert t > prev_t, "a rate over a clock that did not advance"
            assert not (bits and is_saturated(value, bits)), "a rate from a saturated counter"
        elapsed = t - prev_t
        if truth is not None and elapsed > 0 and value != top and op in ("inc", "wrap", "huge"):
            rate = truth / elapsed
            if max_rate is None or rate <= max_rate:
                assert r.value is not None, (op, prev_value, value, elapsed, r)
                assert math.isclose(r.value, rate, rel_tol=1e-9, abs_tol=1e-9), (r.value, rate)
        prev_value, prev_t = value, t


@SEQ
@given(st.integers(min_value=0, max_value=2 ** 64 - 1), st.integers(min_value=0, max_value=2 ** 64 - 1),
       st.sampled_from([None, 8, 16, 32]))
def test_counter_delta_is_never_negative_and_wraps_only_narrow_counters(tally, previous, current, bits):
    if bits:  # reads of a counter of ``bits`` width (wider previous reads: the test below)
        previous, current = previous % (1 << bits), current % (1 << bits)
    tally.case()
    delta, reason = counter_delta(previous, current, bits)
    if delta is None:
        assert reason == "counter reset" and current < previous
    else:
        assert finite_non_negative(delta)
        if current < previous:  # accepted as a wrap
            assert bits and bits <= 32 and previous >= (1 << bits) * 3 // 4


def test_counter_delta_with_a_previous_read_wider_than_the_counter_is_not_negative(tally):
    tally.case()
    # A previous read wider than the counter (an edited state file, a driver exposing a
    # wider counter) is a reset, not a wrap.
    assert counter_delta(257, 0, bits=8) == (None, "counter reset")
    assert counter_delta(2 ** 32 + 5, 1, bits=32) == (None, "counter reset")


@SEQ
@given(st.one_of(st.none(), st.integers(min_value=0, max_value=2 ** 64 - 1)),
       st.integers(min_value=0, max_value=2 ** 64 - 1), st.sampled_from([None, 8, 16, 32]),
       st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), st.sampled_from([1, 4]),
       st.one_of(st.none(), st.floats(min_value=1.0, max_value=1e12)))
def test_east_west_saturating_rates_and_event_changes_are_never_negative(tally, previous, raw, bits, step,
                                                                         scale, max_rate):
    tally.case()
    current = Counter(raw if bits is None else raw % (1 << bits), bits)
    r = saturating_rate(previous, EPOCH, current, EPOCH + step, scale, max_rate)
    if r.value is None:
        assert r.reason
    else:
        assert finite_non_negative(r.value) and step > 0
        assert not (bits and is_saturated(current.value, bits))
        if max_rate is not None:
            assert r.value <= max_rate * 1.05
    change, why = counter_change(previous, current)
    if change is None:
        assert previous is None
    else:
        assert isinstance(change, int) and change >= 0
        assert why in (None, "reset", "saturated")


@SEQ
@given(st.lists(st.tuples(clock_steps, st.floats(min_value=0, max_value=1e15, allow_nan=False)),
                min_size=0, max_size=300))
def test_trend_maths_survive_clock_steps_gaps_and_duplicate_times(tally, steps):
    """Samples as a state file holds them after clock steps back and forth and missed scans."""
    tally.case()
    t, points = EPOCH, []
    for step, y in steps:
        t += step
        points.append((t, y))
    slope = least_squares_slope(points)
    assert slope is None or math.isfinite(slope)
    env = upper_envelope(points)
    assert set(env) <= set(points)
    env_slope = least_squares_slope(env)
    assert env_slope is None or math.isfinite(env_slope)
    gross = gross_increase_rate(points)
    assert gross is None or finite_non_negative(gross)
    kept = thin([list(p) for p in points], 64)
    assert len(kept) <= 64
    if points:
        assert kept[-1] == list(points[-1])


# -- east_west through the sensor ------------------------------------------------------------
NDR = Path(__file__).resolve().parents[1] / "testcases" / "east_west" / "ndr_8port"
IB = "sys/class/infiniband"
PORTS = [f"mlx5_{i}" for i in range(8)]
LINK_BYTES = 400e9 / 8  # 4X NDR
port_ops = st.sampled_from(["inc", "inc", "inc", "idle", "reset", "garbage", "missing", "negative", "huge",
                            "saturate16"])
scan_steps = st.lists(st.tuples(clock_steps, st.lists(port_ops, min_size=8, max_size=8),
                                st.integers(min_value=0, max_value=10 ** 9), st.booleans()),
                      min_size=1, max_size=5)


def _read(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="module")
def ndr_host(tmp_path_factory):
    """One copy of the NDR fixture per module; each example restores the files it rewrites."""
    root = tmp_path_factory.mktemp("ndr") / "host"
    shutil.copytree(NDR, root)
    return root


def _restore(root: Path) -> None:
    for rel in [f"{IB}/{dev}/ports/1/counters/{name}" for dev in PORTS for name in ("port_rcv_data", "symbol_error")] \
            + ["proc/sys/kernel/random/boot_id"]:
        shutil.copyfile(NDR / rel, root / rel)


@SENSOR
@given(scan_steps)
def test_east_west_scans_never_report_negative_infinite_nan_or_above_link_rates(ndr_host, tally, steps):
    root = ndr_host
    _restore(root)
    with tempfile.TemporaryDirectory(prefix="prtgai-ew-") as tmp:
        clock = FakeClock(EPOCH)
        ctx = Context(sys_root=root / "sys", proc_root=root / "proc", clock=clock, env={},
                      state_dir=Path(tmp) / "state")
        check_result("east_west", run_sensor("east_west", [], ctx))  # the baseline
        boot = root / "proc/sys/kernel/random/boot_id"
        for step, ops, words, reboot in steps:
            tally.case()
            expected: dict[str, float] = {}
            elapsed = (clock.now + step) - clock.now  # what the sensor will see, float rounding included
            for dev, op in zip(PORTS, ops):
                data = root / IB / dev / "ports/1/counters/port_rcv_data"
                errors = root / IB / dev / "ports/1/counters/symbol_error"
                before = _read(data)
                if op == "inc" and before is not None:
                    data.write_text(f"{before + words}\n")
                    if elapsed > 0 and words * 4 / elapsed <= LINK_BYTES:
                        expected[dev] = words * 4 / elapsed
                    errors.write_text(f"{(_read(errors) or 0) + words % 7}\n")
                elif op == "idle" and before is not None and elapsed > 0:
                    expected[dev] = 0.0
                elif op in ("reset", "garbage", "missing", "negative", "huge", "saturate16"):
                    tally.fault()
                    if op == "reset":
                        data.write_text(f"{words % 100}\n")
                        errors.write_text("0\n")
                    elif op == "garbage":
                        data.write_text("not-a-number\n")
                    elif op == "missing":
                        data.unlink(missing_ok=True)
                    elif op == "negative":
                        data.write_text("-42\n")
                    elif op == "huge":
                        data.write_text(f"{2 ** 64 - 1 - words}\n")
                    else:
                        errors.write_text("65535\n")
            if reboot:
                tally.fault()
                boot.write_text(f"3a4b5c6d-0000-4000-8000-{words % 10 ** 12:012d}\n")
                expected.clear()
            clock.advance(step)
            result = run_sensor("east_west", [], ctx)
            check_result("east_west", result)
            assert not result.error or "No fabric port has readable traffic counters" in result.message(), \
                result.message()
            ch = channels(result)
            for name, value in ch.items():
                assert finite_non_negative(value), (name, value, result.message())
            if "Peak Port Utilisation" in ch:
                assert ch["Peak Port Utilisation"] <= 105.0
            for dev in PORTS:
                rx = ch.get(f"Port {dev}/1 RX")
                if rx is not None:
                    assert rx <= LINK_BYTES * 1.05, (dev, rx)
            # Where the truth is knowable (an increment over a clock that moved forward from a
            # sane previous read), the rate is exactly it.
            prev_ok = not result.error and "Collecting baseline" not in result.message()
            if prev_ok:
                for dev, rate in expected.items():
                    got = ch.get(f"Port {dev}/1 RX")
                    if got is not None:
                        assert math.isclose(got, rate, rel_tol=1e-6, abs_tol=1.0), (dev, got, rate)


# -- gpu through the NVML fake ---------------------------------------------------------------
H100 = TESTCASES / "gpu" / "h100_sxm_load" / "nvml.json"
GPU_COUNTERS = {  # scenario location -> channel
    ("fields", "197"): "PCIe TX", ("fields", "198"): "PCIe RX",
    ("fields", "138@4294967295"): "NVLink TX", ("fields", "139@4294967295"): "NVLink RX",
    (None, "nvmlDeviceGetTotalEnergyConsumption"): "Energy Since Last Scan",
}
gpu_ops = st.sampled_from(["inc", "inc", "reset", "jump", "error", "same"])
gpu_steps = st.lists(st.tuples(clock_steps, st.lists(gpu_ops, min_size=5, max_size=5),
                               st.integers(min_value=0, max_value=10 ** 12), st.booleans()),
                     min_size=1, max_size=5)


@SENSOR
@given(gpu_steps)
def test_gpu_counter_channels_are_never_negative_infinite_or_nan(monkeypatch, tally, steps):
    scenario = nvml_fake.load_scenario(H100)
    with tempfile.TemporaryDirectory(prefix="prtgai-gpu-") as tmp:
        log = Path(tmp) / "kmsg"
        log.write_text("")
        clock = FakeClock(EPOCH)
        ctx = Context(proc_root=Path(tmp) / "proc", clock=clock, env={}, state_dir=Path(tmp) / "state")
        fake = nvml_fake.install(monkeypatch, scenario)
        argv = ["--gpu", "0", "--xid-log", str(log)]
        check_result("gpu", run_sensor("gpu", argv, ctx))
        dev = fake.devices[0]
        for step, ops, amount, swap in steps:
            tally.case()
            for (where, key), op in zip(GPU_COUNTERS, ops):
                target = dev["fields"] if where == "fields" else dev
                current = target.get(key)
                if op == "inc" and isinstance(current, int):
                    target[key] = current + amount
                elif op == "jump" and isinstance(current, int):
                    target[key] = current + amount * 10 ** 6
                elif op == "reset":
                    tally.fault()
                    target[key] = amount % 1000
                elif op == "error":
                    tally.fault()
                    target[key] = {"error": "Unknown"}
            if swap:  # the index now names another GPU (replacement): rates restart
                tally.fault()
                dev["nvmlDeviceGetUUID"] = f"GPU-{amount:08x}-0000-0000-0000-000000000000"
            clock.advance(step)
            result = run_sensor("gpu", argv, ctx)
            check_result("gpu", result)
            assert not result.error, result.message()
            ch = channels(result)
            for name, value in ch.items():
                assert isinstance(value, (int, float)) and math.isfinite(value), (name, value)
            for name in GPU_COUNTERS.values():
                if name in ch:
                    assert ch[name] >= 0, (name, ch[name], result.message())
            # restore errored values so later steps have counters to move
            for (where, key) in GPU_COUNTERS:
                target = dev["fields"] if where == "fields" else dev
                if isinstance(target.get(key), dict):
                    target[key] = amount % 1000


# -- checkpoint_volume's trend under clock steps ----------------------------------------------
@SENSOR
@given(st.lists(st.tuples(clock_steps, st.integers(min_value=0, max_value=3), st.integers(0, 200_000)),
                min_size=2, max_size=8))
def test_checkpoint_trend_channels_stay_finite_and_non_negative_through_clock_steps(tally, steps):
    with tempfile.TemporaryDirectory(prefix="prtgai-ckpt-") as tmp:
        folder = Path(tmp) / "ckpt"
        folder.mkdir()
        clock = FakeClock(EPOCH)
        ctx = Context(clock=clock, env={}, state_dir=Path(tmp) / "state")
        saved = 0
        for step, action, size in steps:
            tally.case()
            if action == 1:  # a save
                (folder / f"checkpoint-{saved}").write_bytes(b"\0" * size)
                saved += 1
            elif action == 2 and any(folder.iterdir()):  # retention prunes the oldest
                oldest = min(folder.iterdir(), key=lambda p: int(p.name.split("-")[1]))
                oldest.unlink()
            elif action == 3:
                tally.fault()
                for p in folder.iterdir():
                    p.unlink()
            clock.advance(step)
            result = run_sensor("checkpoint_volume", ["--path", str(folder)], ctx)
            check_result("checkpoint_volume", result)
            assert not result.error, result.message()
            ch = channels(result)
            for name, value in ch.items():
                assert isinstance(value, (int, float)) and math.isfinite(value), (name, value)
            for name in ("Time To Full", "Gross Write Rate", "Newest Checkpoint Age", "Checkpoints",
                         "Room For Saves", "Free Space"):
                if name in ch:
                    assert ch[name] >= 0, (name, ch[name], result.message())
