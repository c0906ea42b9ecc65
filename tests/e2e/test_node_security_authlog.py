"""node_security's SSH channels from real OpenSSH log lines, across rotation and truncation.

Lines are real captures (``tests/testcases/node_security/auth/SOURCE.md``: loghub's
OpenSSH sample and fail2ban's sshd test log). Each step appends, rotates (rename to
``auth.log.1`` and a new file, as logrotate does by default) or truncates
(``copytruncate``) a real file between scans; the expected counts are worked out by
hand in SOURCE.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prtg_ai.backends import authlog
from support import channels

AUTH = Path(__file__).resolve().parents[1] / "testcases" / "node_security" / "auth"


def lines(name: str) -> str:
    # newline="": loghub's lines end in CRLF and the partial line in a bare CR; keep them as they are.
    with open(AUTH / name, encoding="utf-8", newline="") as fh:
        return fh.read()


def scan(sensor_run, ctx, log: Path):
    result = sensor_run("node_security", ["--auth-source", "file", "--auth-log", str(log), "--probe=no",
                                          "--gpu-processes", "off"], ctx)
    assert not result.error, result.message()
    return channels(result), result.message()


def test_failures_sources_and_new_logins_across_rotation_and_truncation(tmp_path, sensor_run, make_ctx, clock):
    ctx = make_ctx(proc_root=tmp_path / "noproc")
    (tmp_path / "noproc" / "net").mkdir(parents=True)
    (tmp_path / "noproc" / "net" / "tcp").write_text("  sl  local_address\n")
    log = tmp_path / "auth.log"
    log.write_text(newline="", data=lines("loghub_a.log"))

    # Scan 1: the position is set at the end; the login address in the history is learnt, nothing counted.
    ch, text = scan(sensor_run, ctx, log)
    assert (ch["SSH Auth Failures"], ch["SSH Failure Sources"], ch["New Login Sources"]) == (0, 0, 0)
    assert "SSH counting starts now (file)" in text

    # Scan 2, 60 s later: 8 failures (1 + 1 + 6) from 3 addresses; a half-written line waits.
    with log.open("a", newline="") as fh:
        fh.write(lines("loghub_b.log") + lines("loghub_partial.log"))
    clock.advance(60)
    ch, text = scan(sensor_run, ctx, log)
    assert ch["SSH Auth Failures"] == 8.0 and ch["SSH Failure Sources"] == 3 and ch["New Login Sources"] == 0
    assert "8 failed SSH authentication(s) from 3 address(es)" in text
    assert "webmaster" not in text and "test9" not in text  # attacker-chosen user names are never shown

    # Rotation: the half line is completed and one more line lands in the old file, which is then renamed.
    with log.open("a", newline="") as fh:
        fh.write("\n" + lines("fail2ban_c1.log"))
    os.rename(log, tmp_path / "auth.log.1")
    log.write_text(newline="", data=lines("fail2ban_c2.log"))
    clock.advance(120)
    ch, text = scan(sensor_run, ctx, log)
    # 1 (24247, completed) + 1 (22708 invalid user) + 1 (1571) + 1 (1296) + 1 (1300) = 5 in 2 min.
    assert ch["SSH Auth Failures"] == 2.5
    assert ch["SSH Failure Sources"] == 5  # 112.95.230.3, 192.0.2.2, 192.0.2.1, .10, .11 (not 127.0.0.1)
    assert ch["New Login Sources"] == 1 and "git@192.0.2.1 (publickey)" in text

    # Truncation (copytruncate): an empty file, then new lines.
    with log.open("r+") as fh:
        fh.truncate(0)
    clock.advance(60)
    ch, text = scan(sensor_run, ctx, log)
    assert ch["SSH Auth Failures"] == 0 and "truncated" in text
    log.write_text(newline="", data=lines("fail2ban_d.log"))
    clock.advance(60)
    ch, text = scan(sensor_run, ctx, log)
    assert ch["SSH Auth Failures"] == 1.0 and ch["SSH Failure Sources"] == 2
    assert ch["New Login Sources"] == 1 and "rda@192.0.2.113 (password)" in text and "git@" not in text


def test_rotation_without_the_old_copy_says_so(tmp_path):
    log = tmp_path / "secure"
    log.write_text(newline="", data=lines("loghub_a.log"))
    first = authlog.read_file(str(log), None)
    with open(log) as keep:  # held open, as a writer would: the new file cannot reuse the inode
        os.unlink(log)
        log.write_text(newline="", data=lines("fail2ban_c2.log"))
        second = authlog.read_file(str(log), first.position)
    assert len(second.lines) == 4 and any("rotated" in n for n in second.notes), second.notes
    assert keep.closed


def test_rotated_copy_with_a_date_suffix_is_found(tmp_path):
    log = tmp_path / "secure"
    log.write_text(newline="", data=lines("loghub_a.log"))
    first = authlog.read_file(str(log), None)
    with log.open("a", newline="") as fh:
        fh.write(lines("fail2ban_c1.log"))
    os.rename(log, tmp_path / "secure-20240101")
    log.write_text(newline="", data=lines("fail2ban_c2.log"))
    second = authlog.read_file(str(log), first.position)
    assert second.lines == lines("fail2ban_c1.log").splitlines() + lines("fail2ban_c2.log").splitlines()


def test_byte_cap_keeps_the_newest_whole_lines(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("")
    first = authlog.read_file(str(log), None)
    block = lines("loghub_b.log")
    with log.open("a", newline="") as fh:
        fh.write(block * 50)
    read = authlog.read_file(str(log), first.position, cap=4000)
    assert read.skipped_bytes > 0 and 0 < sum(len(x) + 1 for x in read.lines) <= 4000
    assert all(x in block for x in read.lines)  # only whole lines
    assert read.position["offset"] == log.stat().st_size


def test_a_fifo_or_a_symlink_is_refused_without_blocking(tmp_path, sensor_run, make_ctx):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(authlog.AuthLogError, match="not a regular file"):
        authlog.read_file(str(fifo), None)
    target = tmp_path / "real.log"
    target.write_text(lines("loghub_a.log"))
    link = tmp_path / "link.log"
    link.symlink_to(target)
    with pytest.raises(authlog.AuthLogError, match="symbolic link"):
        authlog.read_file(str(link), None)
    result = sensor_run("node_security", ["--auth-source", "file", "--auth-log", str(fifo), "--probe=no",
                                          "--gpu-processes", "off"], make_ctx())
    assert not result.error and result.warning
    assert "SSH channels omitted" in result.message() and "SSH Auth Failures" not in channels(result)


def test_a_tampered_position_starts_a_fresh_baseline(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text(newline="", data=lines("loghub_b.log"))
    read = authlog.read_file(str(log), {"path": str(log), "dev": "x", "ino": -1, "offset": True})
    assert read.first and read.position["offset"] == log.stat().st_size
