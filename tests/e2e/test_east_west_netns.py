"""east_west end to end: real traffic across a veth pair between two network namespaces.

The test makes two namespaces (unique names, always deleted), joins them with a
veth pair addressed in 10.254.x.0/24 inside them only, and sends a known number of
UDP datagrams from one to the other with Python sockets (``ip netns exec``). The
sensor runs as PRTG would run it (a new ``prtg-ai run`` process per scan) inside
each namespace, on that namespace's real /sys, before and after.

Why the byte count is exact: IPv6 is off in both namespaces (no DAD, router or MLD
chatter), the neighbours are static (no ARP) and the receiver listens (no ICMP port
unreachable), so the only frames on the veth are the datagrams. A veth counts each
frame as Ethernet header + IPv4 header + UDP header + payload: 14 + 20 + 8 + P bytes.
UDP keeps one frame per datagram (TCP segmentation offload would not).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from prtg_ai.prtg.validate import validate
from support import channels, check_channels, cli_env, require_netns

pytestmark = pytest.mark.root

PAYLOAD = 1000
DATAGRAMS = 20_000  # 20 MB of payload
OVERHEAD = 14 + 20 + 8  # Ethernet + IPv4 + UDP headers per datagram, as the veth counts them
WIRE_BYTES = DATAGRAMS * (PAYLOAD + OVERHEAD)
UDP_PORT = 40_000

RECEIVER = r"""
import select, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 23)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
got = 0
while True:
    ready, _, _ = select.select([s, sys.stdin], [], [], 30)
    if s not in ready:  # stdin closed by the test (and the socket drained), or 30 s idle
        break
    got += len(s.recv(65535))
print(got, flush=True)
"""
SENDER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"x" * int(sys.argv[3])
for _ in range(int(sys.argv[4])):
    s.sendto(payload, (sys.argv[1], int(sys.argv[2])))
print("sent", flush=True)
"""


@dataclass
class Side:
    ns: str
    dev: str
    addr: str
    mac: str
    state: Path


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)


@pytest.fixture
def veth_pair(tmp_path):
    require_netns()
    tok = secrets.token_hex(3)
    net = 1 + secrets.randbelow(250)
    a = Side(f"prtgai-ew-{tok}-a", f"pew{tok}a", f"10.254.{net}.1", f"02:ee:{tok[:2]}:{tok[2:4]}:{tok[4:]}:0a",
             tmp_path / "state-a")
    b = Side(f"prtgai-ew-{tok}-b", f"pew{tok}b", f"10.254.{net}.2", f"02:ee:{tok[:2]}:{tok[2:4]}:{tok[4:]}:0b",
             tmp_path / "state-b")
    made: list[str] = []
    try:
        for side in (a, b):
            try:
                _ip("netns", "add", side.ns)
            except subprocess.CalledProcessError as exc:
                pytest.skip(f"cannot create network namespaces here ({exc.stderr.strip()})")
            made.append(side.ns)
            if Path("/proc/sys/net/ipv6").exists():
                # No IPv6 on the new link: no DAD, router solicitation or MLD frames in the count.
                subprocess.run(["ip", "netns", "exec", side.ns, "sh", "-c",
                                "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6;"
                                "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"],
                               check=True, capture_output=True, timeout=20)
        _ip("link", "add", a.dev, "address", a.mac, "netns", a.ns, "type", "veth",
            "peer", "name", b.dev, "address", b.mac, "netns", b.ns)
        for side, peer in ((a, b), (b, a)):
            _ip("-n", side.ns, "addr", "add", f"{side.addr}/24", "dev", side.dev)
            _ip("-n", side.ns, "link", "set", side.dev, "up")
            # Static neighbours: no ARP frames in the count.
            _ip("-n", side.ns, "neigh", "replace", peer.addr, "lladdr", peer.mac, "dev", side.dev, "nud", "permanent")
        yield a, b
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=20)


def run_in_ns(side: Side) -> tuple[dict, float]:
    """``prtg-ai run east_west`` inside the namespace, checked like support.run_cli; returns (doc, state time)."""
    proc = subprocess.run(
        ["ip", "netns", "exec", side.ns, sys.executable, "-m", "prtg_ai.cli", "run", "east_west",
         "--interface", side.dev],
        capture_output=True, text=True, env=cli_env(side.state), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert validate(proc.stdout) == [], proc.stdout
    doc = json.loads(proc.stdout)
    assert not doc["prtg"].get("error"), doc
    check_channels("east_west", doc)
    (state_file,) = side.state.glob("east_west-*.json")
    return doc, json.loads(state_file.read_text())["data"]["t"]


def send_datagrams(a: Side, b: Side) -> subprocess.Popen:
    """Start a receiver in b, send DATAGRAMS datagrams from a; return the still-listening receiver."""
    receiver = subprocess.Popen(
        ["ip", "netns", "exec", b.ns, sys.executable, "-c", RECEIVER, b.addr, str(UDP_PORT)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout.readline().strip() == "ready"
        sent = subprocess.run(
            ["ip", "netns", "exec", a.ns, sys.executable, "-c", SENDER, b.addr, str(UDP_PORT), str(PAYLOAD),
             str(DATAGRAMS)], capture_output=True, text=True, timeout=60)
        assert sent.stdout.strip() == "sent", sent.stderr
        return receiver
    except BaseException:
        receiver.kill()
        raise


def test_measured_rates_match_the_bytes_sent_across_a_veth_pair(veth_pair):
    a, b = veth_pair
    first_a, t0_a = run_in_ns(a)
    first_b, t0_b = run_in_ns(b)
    assert "Collecting baseline (first scan)" in first_a["prtg"]["text"]
    assert first_a["prtg"]["text"].startswith(f"Fabric: {a.dev} (NIC, named)")
    assert channels(first_a)[f"Port {a.dev} Link State"] == 4  # Active
    assert channels(first_a)[f"Port {a.dev} Physical State"] == 5  # LinkUp

    receiver = send_datagrams(a, b)
    try:
        # The receiver still listens while the sensor reads, so no ICMP reply joins the count.
        second_a, t1_a = run_in_ns(a)
        second_b, t1_b = run_in_ns(b)
    finally:
        out, _ = receiver.communicate(timeout=30)
    received = int(out.strip() or 0)
    assert 0 < received <= DATAGRAMS * PAYLOAD

    ch_a, ch_b = channels(second_a), channels(second_b)
    assert ch_a["Fabric Discards"] == 0 and ch_b["Fabric Discards"] == 0  # nothing lost on the veth
    elapsed_a, elapsed_b = t1_a - t0_a, t1_b - t0_b
    assert 0 < elapsed_a < 60 and 0 < elapsed_b < 60
    # Channel values are whole bytes per second: rate x elapsed is exact to within one byte per second.
    for value, elapsed, expected in (
        (ch_a[f"Port {a.dev} TX"], elapsed_a, WIRE_BYTES), (ch_a["Fabric TX"], elapsed_a, WIRE_BYTES),
        (ch_b[f"Port {b.dev} RX"], elapsed_b, WIRE_BYTES), (ch_b["Fabric RX"], elapsed_b, WIRE_BYTES),
        (ch_a[f"Port {a.dev} RX"], elapsed_a, 0), (ch_b[f"Port {b.dev} TX"], elapsed_b, 0),
    ):
        assert abs(value * elapsed - expected) <= elapsed, (value, elapsed, expected)
    assert ch_a["Fabric Packets"] == pytest.approx(DATAGRAMS / elapsed_a, abs=0.01)
    assert ch_b["Fabric Packets"] == pytest.approx(DATAGRAMS / elapsed_b, abs=0.01)
    assert ch_a["Fabric Errors"] == 0 and ch_a["Fabric Ports Not Active"] == 0
    # The veth reports a nominal 10 Gb/s: utilisation follows from it.
    assert ch_a["Peak Port Utilisation"] == pytest.approx(100 * WIRE_BYTES / elapsed_a / 1.25e9, abs=0.01)
    assert "Front-end" not in second_a["prtg"]["text"]  # lo is never counted, and nothing else exists there
