"""checkpoint_volume on real filesystems the test mounts itself (tmpfs, loop-mounted ext4).

Real writes fill the volume between scans; the wall clock is injected so a
"six-hour" history runs in a second. Needs root for mount; skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from support import channels, is_root

MIB = 1024 * 1024
GIB = 1024 ** 3
SCAN = 600.0  # ten-minute scans

pytestmark = pytest.mark.skipif(not is_root() or not shutil.which("mount"),
                                reason="mounting tmpfs / loop ext4 needs root and mount(8)")


@pytest.fixture
def tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", f"prtgai-{uuid.uuid4().hex[:6]}", str(mnt)],
                   check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def ext4(tmp_path):
    if not shutil.which("mkfs.ext4"):
        pytest.skip("mkfs.ext4 (e2fsprogs) is not installed")
    image, mnt = tmp_path / "vol.img", tmp_path / "ext4"
    mnt.mkdir()
    with open(image, "wb") as fh:
        fh.truncate(96 * MIB)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "5", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def save(folder: Path, name: str, size: int, mtime: float) -> Path:
    """Write a checkpoint for real (random bytes, fsynced) and stamp it with the fake time."""
    path = folder / name
    with open(path, "wb") as fh:
        fh.write(os.urandom(size))
        fh.flush()
        os.fsync(fh.fileno())
    os.utime(path, (mtime, mtime))
    return path


def scan(sensor_run, make_ctx, folder: Path, *extra, limits=None):
    result = sensor_run("checkpoint_volume", ["--path", folder, "--pattern", "step-*", *extra], make_ctx(),
                        limits=limits)
    assert not result.error, result.message()
    return result


def test_avail_not_free_on_ext4_with_reserved_blocks(ext4, sensor_run, make_ctx):
    st = os.statvfs(ext4)
    result = scan(sensor_run, make_ctx, ext4)
    ch = channels(result)
    assert ch["Free Space"] == st.f_bavail * st.f_frsize
    assert ch["Free Space"] < st.f_bfree * st.f_frsize  # 5 % reserved for root is not headroom
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    assert ch["Used Space"] == pytest.approx(100.0 * used / (used + st.f_bavail * st.f_frsize), abs=0.01)
    assert ch["Free Inodes"] == pytest.approx(100.0 * st.f_favail / st.f_files, abs=0.01)
    assert ch["Writable"] == 1


def test_steady_growth_gives_slope_and_time_to_full(tmpfs, sensor_run, make_ctx, clock):
    results = []
    for i in range(8):  # 8 scans, 4 MiB saved before each: 24 MiB/h
        save(tmpfs, f"step-{i:04d}", 4 * MIB, clock.now)
        results.append(scan(sensor_run, make_ctx, tmpfs))
        clock.advance(SCAN)
    first, last = channels(results[0]), channels(results[-1])
    assert first["Fill Trend"] == 0 and "Growth Rate" not in first  # collecting baseline
    assert "Collecting baseline" in results[0].message()
    assert last["Growth Rate"] == pytest.approx(24 * MIB / GIB, rel=0.02)
    avail = last["Free Space"]
    assert last["Time To Full"] == pytest.approx(avail / (24 * MIB), rel=0.02)
    assert last["Gross Write Rate"] == pytest.approx(24 * MIB / GIB, rel=0.02)
    assert last["Checkpoints"] == 8
    assert last["Newest Checkpoint Size"] == 4 * MIB
    assert last["Room For Saves"] == pytest.approx(avail / (4 * MIB), abs=0.01)
    # 32 MiB left at 24 MiB/h: full within 4 h -> the error state, both as hours and as lookup.
    assert last["Time To Full"] < 4
    assert last["Fill Trend"] == 4
    assert results[-1].channel("Time To Full").limit_state() == "error"
    # The newest save was stamped at the scan's own time: age 0 min, within the stall limit.
    assert last["Newest Checkpoint Age"] == 0
    assert results[-1].channel("Newest Checkpoint Age").limit_state() == "ok"


def test_save_then_prune_sawtooth_raises_no_alarm(tmpfs, sensor_run, make_ctx, clock):
    """keep-last-3 retention: save, scan, prune, scan ... Net growth is zero."""
    kept: list[Path] = []
    results = []
    for i in range(12):
        kept.append(save(tmpfs, f"step-{i:04d}", 4 * MIB, clock.now))
        results.append(scan(sensor_run, make_ctx, tmpfs))  # a peak: the new save before the prune
        clock.advance(SCAN / 2)
        if len(kept) > 3:
            kept.pop(0).unlink()
        results.append(scan(sensor_run, make_ctx, tmpfs))  # a trough
        clock.advance(SCAN / 2)
    ready = [channels(r) for r in results if "Growth Rate" in channels(r)]
    assert len(ready) >= 16
    for ch in ready:
        assert ch["Fill Trend"] == 1, ch  # stable: never "filling", never an alarm
        assert ch["Time To Full"] == 8760
    last = ready[-1]
    assert abs(last["Growth Rate"]) < 0.001  # GiB/h; a plain last-delta would swing +-0.046
    # Churn is visible although the net trend is flat: 4 MiB per 10 min = 24 MiB/h.
    assert last["Gross Write Rate"] == pytest.approx(24 * MIB / GIB, rel=0.05)
    assert last["Checkpoints"] == 3
    assert all(r.channel("Time To Full").limit_state() == "ok" for r in results if "Growth Rate" in channels(r))


def test_manual_cleanup_restarts_the_trend(tmpfs, sensor_run, make_ctx, clock):
    saved = []
    for i in range(8):
        saved.append(save(tmpfs, f"step-{i:04d}", 4 * MIB, clock.now))
        scan(sensor_run, make_ctx, tmpfs)
        clock.advance(SCAN)
    for path in saved[:6]:  # an operator frees 24 MiB at once
        path.unlink()
    after = scan(sensor_run, make_ctx, tmpfs)
    ch = channels(after)
    assert ch["Fill Trend"] == 0 and "Growth Rate" not in ch
    assert "trend restarted: 24.0 MiB were freed at once (cleanup)" in after.message()
    # Growth resumes at 12 MiB/h and is measured from the cleanup on, not across it.
    for i in range(8, 14):
        clock.advance(SCAN)
        save(tmpfs, f"step-{i:04d}", 2 * MIB, clock.now)
        result = scan(sensor_run, make_ctx, tmpfs)
    ch = channels(result)
    assert ch["Growth Rate"] == pytest.approx(12 * MIB / GIB, rel=0.05)
    hours = ch["Free Space"] / (12 * MIB)
    assert ch["Time To Full"] == pytest.approx(hours, rel=0.05)
    assert ch["Fill Trend"] == (4 if hours < 4 else 3)


def test_read_only_remount_is_reported(tmpfs, sensor_run, make_ctx):
    save(tmpfs, "step-0001", MIB, 1_790_000_000.0)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    result = scan(sensor_run, make_ctx, tmpfs)
    assert channels(result)["Writable"] == 0
    assert "read-only" in result.message()


def test_clock_steps_never_give_absurd_values(tmpfs, sensor_run, make_ctx, clock):
    for i in range(6):
        save(tmpfs, f"step-{i:04d}", 2 * MIB, clock.now)
        scan(sensor_run, make_ctx, tmpfs)
        clock.advance(SCAN)
    clock.advance(-3 * 3600)  # NTP steps the clock back three hours
    back = scan(sensor_run, make_ctx, tmpfs)
    assert channels(back)["Fill Trend"] == 0
    assert "trend restarted: the clock moved back" in back.message()
    assert channels(back)["Newest Checkpoint Age"] == 0  # a save "in the future" is not a negative age
    clock.advance(10 * 86400)  # a jump far past the window: old samples are out of it
    forward = scan(sensor_run, make_ctx, tmpfs)
    assert channels(forward)["Fill Trend"] == 0 and "Growth Rate" not in channels(forward)


def test_a_stalled_job_warns_after_the_stall_limit(tmpfs, sensor_run, make_ctx, clock):
    save(tmpfs, "step-0001", MIB, clock.now)
    clock.advance(50 * 60)
    stall = {"newest_age": {"limitmaxwarning": 60}}  # --stall-after 1h: a warning above 60 min
    fresh = scan(sensor_run, make_ctx, tmpfs, "--stall-after", "1h", limits=stall)
    assert channels(fresh)["Newest Checkpoint Age"] == pytest.approx(50.0)
    assert fresh.channel("Newest Checkpoint Age").limit_state() == "ok"
    clock.advance(20 * 60)
    stalled = scan(sensor_run, make_ctx, tmpfs, "--stall-after", "1h", limits=stall)
    assert channels(stalled)["Newest Checkpoint Age"] == pytest.approx(70.0)
    assert stalled.channel("Newest Checkpoint Age").limit_state() == "warning"
