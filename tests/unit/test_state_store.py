"""The state store keeps going through corruption, foreign files, locks, full and read-only disks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest

from prtg_ai.core.locking import FileLock
from prtg_ai.core.state import FORMAT, VERSION, StateSession, StateStore, write_atomic
from support import is_root

IDENTITY = {"path": "/data/ckpt"}

# Faults the reliability report counts (tests/reliability/report.py), one injected fault per test.
STATE_FAULT = pytest.mark.reliability("faults: state store (disk full, read-only, corrupt, locked)")


def open_session(folder, **kw) -> StateSession:
    return StateStore(folder).session("checkpoint_volume", IDENTITY, **kw)


def write_samples(folder, samples, data=None):
    with open_session(folder) as st:
        for s in samples:
            st.append(s)
        st.data.update(data or {})
    return st.path


def test_round_trip_and_ring_buffer_bound(tmp_path):
    with open_session(tmp_path, max_samples=5) as st:
        assert st.fresh and st.samples == []
        for i in range(12):
            st.append([i, i * 10])
        st.data["total"] = 42
    with open_session(tmp_path, max_samples=5) as st:
        assert not st.fresh
        assert st.samples == [[i, i * 10] for i in range(7, 12)]
        assert st.data == {"total": 42}
        assert st.notes == []
    doc = json.loads(st.path.read_text())
    assert doc["format"] == FORMAT and doc["version"] == VERSION and doc["instance"] == IDENTITY


def test_instances_do_not_share_state(tmp_path):
    a = StateStore(tmp_path).session("checkpoint_volume", {"path": "/a"})
    b = StateStore(tmp_path).session("checkpoint_volume", {"path": "/b"})
    assert a.path != b.path


@STATE_FAULT
@pytest.mark.parametrize("content, problem", [
    (b'{"format": "prtg-ai-state", "version": 1, "sam', "corrupt or truncated"),
    (b"", "corrupt or truncated"),
    (b"\xff\xfe\x00garbage", "corrupt or truncated"),
    (b"[1, 2, 3]", "not a prtg-ai state file"),
    (json.dumps({"format": FORMAT, "version": 99, "sensor": "checkpoint_volume", "samples": [], "data": {}}).encode(),
     "written by another version (format 99)"),
    (json.dumps({"format": FORMAT, "version": VERSION, "sensor": "gpu", "samples": [], "data": {}}).encode(),
     "written for another sensor"),
    (json.dumps({"format": FORMAT, "version": VERSION, "sensor": "checkpoint_volume", "samples": {}, "data": {}}).encode(),
     "malformed"),
])
def test_bad_state_files_are_set_aside_with_a_note(tmp_path, content, problem):
    path = write_samples(tmp_path, [[1, 2]])
    path.write_bytes(content)
    with open_session(tmp_path) as st:
        assert st.fresh and st.samples == []
        assert any(problem in n and "started a fresh baseline" in n for n in st.notes), st.notes
        st.append([3, 4])
    assert path.with_suffix(".corrupt").read_bytes() == content  # kept, never destroyed
    assert json.loads(path.read_text())["samples"] == [[3, 4]]


@STATE_FAULT
def test_unreadable_state_file_is_a_note_not_a_crash(tmp_path):
    path = open_session(tmp_path).path
    tmp_path.mkdir(exist_ok=True)
    path.mkdir()  # a folder where the file should be: reading fails with EISDIR
    with open_session(tmp_path) as st:
        assert st.fresh
        assert any("unreadable" in n for n in st.notes)
    # The folder in the file's place is set aside (renamed, never followed) and the state is saved again.
    assert path.is_file() and path.with_suffix(".corrupt").is_dir()
    assert not any("Could not save state" in n for n in st.notes)


@STATE_FAULT
def test_lock_held_elsewhere_times_out_with_a_note(tmp_path):
    write_samples(tmp_path, [[1, 1]])
    session = open_session(tmp_path)
    holder = FileLock(session._lock_path)
    with holder:
        session.lock_timeout = 0.2
        with session as st:
            assert not st.writable
            assert any("stayed locked" in n for n in st.notes)
            st.append([2, 2])
    with open_session(tmp_path) as st:
        assert st.samples == [[1, 1]]  # the locked-out scan did not write


@pytest.fixture
def small_tmpfs(tmp_path):
    if not is_root() or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", f"prtgai-{uuid.uuid4().hex[:6]}", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@STATE_FAULT
def test_disk_full_keeps_the_previous_state(small_tmpfs):
    path = write_samples(small_tmpfs, [[1, 1], [2, 2]])
    before = path.read_bytes()
    filler = small_tmpfs / "filler"
    with open(filler, "wb", buffering=0) as fh:  # fill the disk to the last block
        try:
            while True:
                fh.write(b"\0" * 1024)
        except OSError:
            pass
    with open_session(small_tmpfs) as st:
        assert st.samples == [[1, 1], [2, 2]]
        st.append(["x" * 100_000])  # larger than anything left
    assert any("Could not save state" in n and "previous state is kept" in n for n in st.notes), st.notes
    assert path.read_bytes() == before
    assert not [p for p in small_tmpfs.iterdir() if p.suffix == ".tmp"]  # no temp litter


@STATE_FAULT
def test_read_only_state_folder(small_tmpfs):
    path = write_samples(small_tmpfs, [[1, 1]])
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    with open_session(small_tmpfs) as st:
        assert not st.writable
        assert st.samples == [[1, 1]]  # still read: the trend continues from it
        st.append([2, 2])
    assert any("not writable" in n for n in st.notes), st.notes
    assert json.loads(path.read_text())["samples"] == [[1, 1]]


def test_write_atomic_replaces_whole_and_never_removes_a_temp_it_did_not_make(tmp_path):
    target = tmp_path / "file"
    target.write_bytes(b"old")
    write_atomic(target, b"new", chmod=0o640)
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    if os.name == "posix":
        assert target.stat().st_mode & 0o777 == 0o640
    theirs = tmp_path / "file.theirs"
    theirs.write_bytes(b"theirs")
    with pytest.raises(FileExistsError):  # the temp name is taken: refused, both files kept as they were
        write_atomic(target, b"lost", temp=theirs)
    assert theirs.read_bytes() == b"theirs" and target.read_bytes() == b"new"
    folder = tmp_path / "folder"
    (folder / "inside").mkdir(parents=True)
    with pytest.raises(OSError):  # the rename fails (a non-empty folder is in the way): our temp goes
        write_atomic(folder, b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "file.theirs", "folder"]
