"""Attack 6: slow clients (slowloris) filling the agent's connections, unauthenticated.

Real parts: real sockets from other loopback addresses (127.0.0.2, 127.0.0.3) that
send a header line now and then and never finish, the real waitress agent, and
real polls from 127.0.0.1. Counts are kept small (caps lowered for the test).
"""

from __future__ import annotations

import socket
import time

import pytest
import requests

from security.sec_support import TOKEN, attack, leak_check, ok, wait_until


def slow_socket(port: int, source: str) -> socket.socket | None:
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /sensors/checkpoint_volume HTTP/1.1\r\nHost: x\r\n")
    except OSError:
        s.close()
        return None
    return s


def closed_by_server(s: socket.socket, wait: float = 3.0) -> bool:
    s.settimeout(wait)
    try:
        return s.recv(1) == b""
    except socket.timeout:
        return False
    except OSError:
        return True


def poll(a, folder) -> bool:
    answer = requests.get(a.url("/sensors/checkpoint_volume"), params={"path": str(folder)},
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    return answer.status_code == 200 and ok(answer.json())


def test_06_one_host_cannot_take_every_connection(agent, tmp_path):
    folder = tmp_path / "ckpt"
    (folder / "checkpoint-1").mkdir(parents=True)
    a = agent(server_limits={"connection_limit": 80, "per_client_limit": 20, "header_timeout": 60})
    stalled = [s for s in (slow_socket(a.port, "127.0.0.2") for _ in range(60)) if s is not None]
    attack(len(stalled))
    try:
        wait_until(lambda: a.server.guard.refused >= 40, timeout=10)
        leak_check(a.server.guard.open_from("127.0.0.2") <= 20, "one host holds more than its cap")
        assert a.server.guard.refused >= 40
        for _ in range(3):
            leak_check(poll(a, folder), "a legitimate poll was locked out")
    finally:
        for s in stalled:
            s.close()


def test_06_a_request_that_trickles_is_closed_at_the_deadline(agent, tmp_path):
    folder = tmp_path / "ckpt"
    (folder / "checkpoint-1").mkdir(parents=True)
    a = agent(server_limits={"header_timeout": 1.5, "channel_timeout": 60})
    s = slow_socket(a.port, "127.0.0.3")
    attack()
    started = time.monotonic()
    closed = False
    try:
        while time.monotonic() - started < 8:
            try:
                s.sendall(b"X-Slow: 1\r\n")  # a byte stream that keeps the idle timer from ever firing
            except OSError:
                closed = True
                break
            if closed_by_server(s, 0.4):
                closed = True
                break
        took = time.monotonic() - started
        leak_check(closed and took < 5, f"a trickling request stayed open for {took:.1f} s")
        assert poll(a, folder)
    finally:
        s.close()


def test_06_allow_is_enforced_at_accept(agent, tmp_path):
    folder = tmp_path / "ckpt"
    (folder / "checkpoint-1").mkdir(parents=True)
    a = agent(allow=["127.0.0.1/32"])
    refused = []
    for _ in range(20):
        attack()
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", a.port))
        refused.append(closed_by_server(s))  # closed without a byte sent: no slot, no request read
        s.close()
    leak_check(all(refused), "a client outside --allow kept a connection")
    assert poll(a, folder)


@pytest.mark.slow
def test_06_the_reported_1100_connections_with_default_limits(agent, tmp_path):
    """The reproduction as reported: 1,100 slow connections, the shipped limits."""
    from prtg_ai.agent.server import raise_fd_limit

    raise_fd_limit(4096)
    folder = tmp_path / "ckpt"
    (folder / "checkpoint-1").mkdir(parents=True)
    a = agent()
    stalled = [s for s in (slow_socket(a.port, "127.0.0.2") for _ in range(1100)) if s is not None]
    attack(len(stalled))
    try:
        wait_until(lambda: a.server.guard.refused >= 1000, timeout=20)
        leak_check(a.server.guard.open_from("127.0.0.2") <= 100, "one host holds more than its cap")
        for _ in range(3):
            leak_check(poll(a, folder), "a legitimate poll was locked out")
    finally:
        for s in stalled:
            s.close()
