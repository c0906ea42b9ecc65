"""node_security's pure parts: sshd message counting, /proc/net/tcp*, cgroups, answer shapes."""

from __future__ import annotations

import json
import socket
import sys

import pytest

from prtg_ai.backends.listeners import parse_cgroup, parse_net_tcp
from prtg_ai.backends.service_probe import parse_http
from prtg_ai.node_security.auth import count, syslog_message
from prtg_ai.node_security.services import BY_KEY, NOT_HTTP, OPEN, OTHER_HTTP, PROTECTED, judge_http, judge_redis


def msgs(*lines):
    return [m for m in map(syslog_message, lines) if m]


def test_repeated_failures_count_their_repeats_and_one_connection_counts_once():
    got = count(msgs(
        "Dec 10 07:13:43 LabSZ sshd[24227]: Failed password for root from 5.36.59.76 port 42393 ssh2",
        "Dec 10 07:13:56 LabSZ sshd[24227]: message repeated 5 times: [ Failed password for root from 5.36.59.76 port 42393 ssh2]",
        "Dec 10 07:13:56 LabSZ sshd[24227]: Disconnecting: Too many authentication failures for root [preauth]",
        "Mar 19 16:47:48 test sshd[5672]: Invalid user admin from 192.0.2.117 port 44004",
        "Mar 19 16:47:50 srv sshd[5672]: Disconnected from authenticating user admin 192.0.2.6 port 33553 [preauth]",
        "Dec 10 07:35:15 LabSZ sshd[24303]: Did not receive identification string from 177.79.82.136",
        "Dec 10 07:02:47 LabSZ sshd[24203]: Connection closed by 212.47.254.145 [preauth]",
        "Jan 15 03:15:45 webserver sudo:   deploy : TTY=pts/0 ; PWD=/home/deploy ; USER=root ; COMMAND=/bin/ls",
    ))
    assert got.failures == 7  # 1 + 5 for PID 24227, 1 for PID 5672; port scans and sudo are not failures
    assert got.sources == {"5.36.59.76", "192.0.2.117", "192.0.2.6"}
    assert got.failed_pids == {24227, 5672}


def test_a_trailing_preauth_line_of_a_connection_counted_last_scan_is_not_counted_again():
    got = count(msgs("Mar 19 16:47:50 srv sshd[5672]: Disconnected from authenticating user admin 192.0.2.6 port 33553 [preauth]"),
                counted_before={5672})
    assert got.failures == 0 and got.sources == {"192.0.2.6"}


def test_addresses_come_from_the_end_of_the_line_not_from_a_crafted_user_name():
    got = count(msgs(
        "Jul 17 23:04:01 srv sshd[1300]: Connection closed by authenticating user test 127.0.0.1 port 12345 192.0.2.11 port 46039 [preauth]",
        "Jul 17 23:05:00 srv sshd[1301]: Failed password for invalid user x from 10.9.9.9 port 22 from 2001:db8::7 port 4022 ssh2",
        "Jul 17 23:06:00 srv sshd[1302]: Accepted publickey for alice from 2001:db8::10 port 41102 ssh2: ED25519 SHA256:x",
    ))
    assert got.sources == {"192.0.2.11", "2001:db8::7"} and got.failures == 2
    assert [(lg.user, lg.address, lg.method) for lg in got.logins] == [("alice", "2001:db8::10", "publickey")]


def test_journal_pairs_and_sshd_session_lines():
    assert syslog_message("Jul  3 14:59:17 host sshd-session[1571]: Failed password for root from 192.0.2.1 port 56502 ssh2") == \
        (1571, "Failed password for root from 192.0.2.1 port 56502 ssh2")
    assert count([(77, "Failed publickey for git from 192.0.2.4 port 1 ssh2")]).failures == 1


TCP6_HEADER = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


@pytest.mark.skipif(sys.byteorder != "little", reason="the lines below are as a little-endian kernel prints them")
def test_proc_net_tcp6_lines_as_the_kernel_prints_them():
    text = TCP6_HEADER + (
        "   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0000000000000000 100 0 0 10 0\n"
        "   1: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1235 1 0000000000000000 100 0 0 10 0\n"
        "   2: 0000000000000000FFFF00000100007F:1A0A 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   111        0 1236 1 0000000000000000 100 0 0 10 0\n"
        "   3: B80D01200000000000000000010000000:0016 00000000000000000000000000000000:0000 01 00000000:00000000 00:00000000 00000000     0        0 1237 1 0000000000000000 100 0 0 10 0\n")
    got = parse_net_tcp(text, 6)
    assert [(x.address, x.port, x.loopback, x.uid, x.inode) for x in got] == [
        ("::", 8080, False, 0, 1234), ("::1", 631, True, 0, 1235), ("::ffff:127.0.0.1", 6666, True, 111, 1236)]
    assert got[0].probe_address == "::1" and got[2].probe_address == "127.0.0.1"
    v4 = parse_net_tcp("  sl  local_address\n   0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 "
                       "00000000   116        0 20937 1 0000000000000000 100 0 0 10 0\n", 4)
    assert [(x.address, x.port, x.loopback) for x in v4] == [("127.0.0.1", 3306, True)]
    assert socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, got[1].address)) == "::1"


def test_cgroup_paths_of_docker_containerd_and_kubepods():
    cid = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa99887766554433221100"
    assert parse_cgroup(f"12:cpu,cpuacct:/docker/{cid}\n") == ("3f4e5d6c7b8a", None)
    assert parse_cgroup(f"0::/system.slice/docker-{cid}.scope\n") == ("3f4e5d6c7b8a", None)
    assert parse_cgroup(f"11:memory:/kubepods/besteffort/pod6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b/{cid}\n") == \
        ("3f4e5d6c7b8a", "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b")
    assert parse_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n") == (None, None)


def test_answer_shapes_need_the_service_s_own_fields():
    body = lambda doc: json.dumps(doc).encode()  # noqa: E731
    assert judge_http(BY_KEY["ollama"], "http", 200, body({"models": []})) == OPEN
    assert judge_http(BY_KEY["ollama"], "http", 200, body({"models": [], "status": "ok"})) == OTHER_HTTP
    assert judge_http(BY_KEY["openai"], "http", 200, body({"object": "list", "data": [{"id": "x"}]})) == OTHER_HTTP
    assert judge_http(BY_KEY["ray"], "http", 200, body({"version": "1.0"})) == OTHER_HTTP
    assert judge_http(BY_KEY["jupyter"], "http", 200, b"<html>") == OTHER_HTTP
    assert judge_http(BY_KEY["jupyter"], "http", 407, b"") == PROTECTED
    assert judge_http(BY_KEY["docker"], "http", 400, b"Client sent an HTTP request to an HTTPS server.\n") == OTHER_HTTP
    assert judge_http(BY_KEY["docker"], "other", None, b"") == NOT_HTTP
    assert judge_redis("resp", b"+PONG") == OPEN and judge_redis("resp", b"-NOAUTH Authentication required.") == PROTECTED
    assert judge_redis("resp", b"-ERR unknown command") == NOT_HTTP and judge_redis("http", b"") == OTHER_HTTP


def test_http_answers_chunked_truncated_and_not_http():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{\"a\": 1\r\n1\r\n}\r\n0\r\n\r\n"
    a = parse_http(chunked)
    assert (a.kind, a.status, a.body) == ("http", 200, b'{"a": 1}')
    assert parse_http(b"SSH-2.0-OpenSSH_9.6\r\n").kind == "other"
    assert parse_http(b"-ERR wrong number of arguments for 'get' command\r\n").kind == "resp"
    assert parse_http(b"").kind == "none"
    assert parse_http(b"HTTP/1.1 abc\r\n\r\n").kind == "other"


@pytest.mark.parametrize("args, param", [
    (["--gpu-allow", ",".join(f"tool{i}" for i in range(33))], "--gpu-allow"),
    (["--gpu-allow", "x" * 129], "--gpu-allow"),
    (["--accept-ports", "22,http"], "--accept-ports"),
    (["--accept-ports", "70000"], "--accept-ports"),
    (["--accept-ports", ",".join(str(p) for p in range(1, 258))], "--accept-ports"),
])
def test_hostile_allow_lists_are_capped(args, param, sensor_run, make_ctx):
    result = sensor_run("node_security", ["--probe", "no", "--auth-source", "off", *args], make_ctx())
    assert result.error and param in result.message()


def test_a_crafted_cgroup_name_is_not_shown_as_a_pod():
    assert parse_cgroup("0::/kubepods.slice/kubepods-pod<script>alert(1)</script>_aaaaaaaaaaaaaaaaaaaaaaa.slice\n") == (None, None)
