"""Build the east_west cases made from public captures of real hosts (see each SOURCE.md).

Usage: python make_real_cases.py NODE_EXPORTER_SYS_TTAR PROCFS_FIXTURES_TTAR

* ``bonded_host``: node_exporter's ``collector/fixtures/sys.ttar`` ``class/net`` as captured
  (``bonding_masters`` file, bonds ``bond0``, ``dmz`` [eth0 eth4], ``int`` [eth1 eth5],
  ``eth0`` a link into ``devices/``), plus what the capture lacks: statistics counters,
  a default route on ``dmz`` and a boot id (values below, chosen by hand).
* ``container_host``: procfs's ``testdata/fixtures.ttar`` ``sys/class/net/eth0`` as captured,
  with the counters of its ``proc/net/dev`` capture (eth0, docker0, vethf345468, lo), and
  docker0 / veth / cni0 / flannel.1 / ifb0 built from the sysfs entries the kernel creates
  for those device kinds (bridge/, brif/, brport/, master, iflink, no device link).
* ``omnipath_hfi1``: procfs's ``sys/class/infiniband/hfi1_0`` (an HPE OP101 Omni-Path HFI)
  as captured, its eth0 as front-end.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from from_ttar import extract

ROOT = Path(__file__).resolve().parent
ROUTE_HEAD = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT"
STATS = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "rx_errors", "tx_errors", "rx_dropped", "tx_dropped")


def w(path: Path, text) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{text}\n")


def stats(base: Path, **values) -> None:
    for name in STATS:
        w(base / "statistics" / name, values.get(name, 0))


def proc(case: Path, default_iface: str, boot_id: str) -> None:
    w(case / "proc/net/route", "\n".join([
        ROUTE_HEAD,
        f"{default_iface}\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0",
        f"{default_iface}\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0"]))
    w(case / "proc/sys/kernel/random/boot_id", boot_id)


def fresh(name: str) -> Path:
    d = ROOT / name
    if d.exists():
        shutil.rmtree(d)
    return d


def link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def bonded(node_exporter_ttar: Path) -> None:
    d = fresh("bonded_host")
    eth0_dev = "sys/devices/pci0000:00/0000:00:03.0/0000:03:00.0/net/eth0"
    extract(node_exporter_ttar, [("sys/class/net/", d / "sys/class/net"), (eth0_dev, d / eth0_dev)])
    # Not in the capture (chosen by hand): counters; eth0 is one of dmz's two slaves, so
    # dmz (the bond) counts more than eth0 alone.
    net = d / "sys/class/net"
    stats(net / "dmz", rx_bytes=9_000_000_000, tx_bytes=7_000_000_000, rx_packets=9_000_000, tx_packets=7_000_000)
    stats(net / "eth0", rx_bytes=5_000_000_000, tx_bytes=4_000_000_000, rx_packets=5_000_000, tx_packets=4_000_000)
    stats(net / "int", rx_bytes=3_000_000_000, tx_bytes=2_000_000_000, rx_packets=3_000_000, tx_packets=2_000_000)
    stats(net / "bond0")
    proc(d, "dmz", "6f1c1f4e-0000-4000-8000-0000000000b1")
    a = d / "after/sys/class/net"
    w(a / "dmz/statistics/rx_bytes", 9_000_000_000 + 60_000_000)   # 1e6 B/s
    w(a / "dmz/statistics/tx_bytes", 7_000_000_000 + 30_000_000)   # 5e5 B/s
    w(a / "eth0/statistics/rx_bytes", 5_000_000_000 + 36_000_000)  # eth0's share of dmz's
    w(a / "eth0/statistics/tx_bytes", 4_000_000_000 + 18_000_000)
    w(a / "int/statistics/rx_bytes", 3_000_000_000 + 12_000_000)   # 2e5 B/s
    w(a / "int/statistics/tx_bytes", 2_000_000_000 + 6_000_000)    # 1e5 B/s


def container(procfs_ttar: Path) -> None:
    d = fresh("container_host")
    extract(procfs_ttar, [("fixtures/sys/class/net/eth0", d / "sys/class/net/eth0")])
    # eth0's device link points at ../../../devices/pci0000:00/0000:00:1f.6/, not in the capture
    w(d / "sys/devices/pci0000:00/0000:00:1f.6/uevent", "PCI_SLOT_NAME=0000:00:1f.6")
    net = d / "sys/class/net"
    # Counters: procfs's fixtures/proc/net/dev, same capture (bytes packets errs drop per direction)
    stats(net / "eth0", rx_bytes=874354587, rx_packets=1036395, tx_bytes=563352563, tx_packets=732147)

    def virtual(name, index, iflink=None, oper="up", flags="0x1003", carrier=1, **counters):
        base = net / name
        w(base / "type", 1)
        w(base / "ifindex", index)
        w(base / "iflink", iflink if iflink is not None else index)
        w(base / "operstate", oper)
        w(base / "flags", flags)
        if carrier is not None:
            w(base / "carrier", carrier)
        w(base / "mtu", 1500)
        stats(base, **counters)
        return base

    # docker0: a bridge (bridge/ folder, brif/ lists its ports), counters from proc/net/dev
    b = virtual("docker0", 4, rx_bytes=2568, rx_packets=38, tx_bytes=438, tx_packets=5)
    w(b / "bridge/stp_state", 0)
    link(b / "brif/vethf345468", "../../vethf345468/brport")
    # vethf345468: the host end of a container's veth pair, a port of docker0;
    # iflink is its peer's ifindex inside the container (not this namespace's)
    v = virtual("vethf345468", 6, iflink=5, rx_bytes=648, rx_packets=8, tx_bytes=438, tx_packets=5)
    w(v / "brport/state", 3)
    link(v / "master", "../docker0")
    # cni0 (flannel's bridge) with two pod veths; flannel.1 (VXLAN, no device link)
    c = virtual("cni0", 7, rx_bytes=10_000_000, tx_bytes=20_000_000)
    w(c / "bridge/stp_state", 0)
    for i, veth in enumerate(("veth3a1f9c02", "veth7bc2d418")):
        link(c / "brif" / veth, f"../../{veth}/brport")
        vb = virtual(veth, 8 + i, iflink=3, rx_bytes=1_000_000, tx_bytes=2_000_000)
        w(vb / "brport/state", 3)
        link(vb / "master", "../cni0")
    virtual("flannel.1", 10, rx_bytes=5_000_000, tx_bytes=6_000_000)
    # ifb0: intermediate functional block, never up, never used
    virtual("ifb0", 11, oper="down", flags="0x82", carrier=None)
    lo = virtual("lo", 1, oper="unknown", flags="0x9", rx_bytes=1664039048, rx_packets=1566805,
                 tx_bytes=1664039048, tx_packets=1566805)
    w(lo / "type", 772)
    proc(d, "eth0", "6f1c1f4e-0000-4000-8000-0000000000c1")
    a = d / "after/sys/class/net"
    w(a / "eth0/statistics/rx_bytes", 874354587 + 6_000_000)   # 1e5 B/s
    w(a / "eth0/statistics/tx_bytes", 563352563 + 3_000_000)   # 5e4 B/s
    w(a / "docker0/statistics/rx_bytes", 2568 + 600_000)       # traffic that must appear nowhere
    w(a / "vethf345468/statistics/tx_bytes", 438 + 600_000)
    w(a / "cni0/statistics/rx_bytes", 10_000_000 + 1_200_000)


def omnipath(procfs_ttar: Path) -> None:
    d = fresh("omnipath_hfi1")
    extract(procfs_ttar, [("fixtures/sys/class/infiniband/hfi1_0", d / "sys/class/infiniband/hfi1_0"),
                          ("fixtures/sys/class/net/eth0", d / "sys/class/net/eth0")])
    w(d / "sys/devices/pci0000:00/0000:00:1f.6/uevent", "PCI_SLOT_NAME=0000:00:1f.6")
    stats(d / "sys/class/net/eth0", rx_bytes=874354587, rx_packets=1036395, tx_bytes=563352563, tx_packets=732147)
    proc(d, "eth0", "6f1c1f4e-0000-4000-8000-0000000000d1")
    a = d / "after/sys/class/infiniband/hfi1_0/ports/1/counters"
    w(a / "port_rcv_data", 345091702026 + 750_000_000)   # flits: x8 / 60 s = 1e8 B/s
    w(a / "port_xmit_data", 273558326543 + 375_000_000)  # 5e7 B/s
    w(a / "port_rcv_packets", 638036947 + 60_000)
    w(a / "port_xmit_packets", 568318856 + 30_000)


if __name__ == "__main__":
    node_exporter_sys, procfs_fixtures = map(Path, sys.argv[1:3])
    bonded(node_exporter_sys)
    container(procfs_fixtures)
    omnipath(procfs_fixtures)
    print("ok")
