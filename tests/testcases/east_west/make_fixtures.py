"""Generate the east_west sysfs/procfs fixture trees: python tests/testcases/east_west/make_fixtures.py.

The trees follow the layout and value formats of real mlx5 / mlx4 nodes (sysfs
"4: ACTIVE", "400 Gb/sec (4X NDR)", one integer per counter file); values are
chosen so the tests can state exact rates. Each case has the first scan's tree and an
``after/`` overlay with the files that change for the second scan.
"""
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent

IB_ZERO = {
    "symbol_error": 0, "link_error_recovery": 0, "link_downed": 0, "port_rcv_errors": 0,
    "port_rcv_remote_physical_errors": 0, "port_rcv_switch_relay_errors": 0, "port_xmit_discards": 0,
    "port_xmit_constraint_errors": 0, "port_rcv_constraint_errors": 0, "local_link_integrity_errors": 0,
    "excessive_buffer_overrun_errors": 0, "VL15_dropped": 0, "port_xmit_wait": 0,
    "port_xmit_data": 0, "port_rcv_data": 0, "port_xmit_packets": 0, "port_rcv_packets": 0,
    "unicast_rcv_packets": 0, "unicast_xmit_packets": 0, "multicast_rcv_packets": 0,
    "multicast_xmit_packets": 0,
}
NET_STATS = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "rx_errors", "tx_errors",
             "rx_dropped", "tx_dropped", "multicast", "collisions", "rx_crc_errors")
ROUTE_HEAD = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT"


def w(path: Path, text) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{text}\n")


def ib_port(sys, dev, port, *, layer="InfiniBand", rate="400 Gb/sec (4X NDR)", state="4: ACTIVE",
            phys="5: LinkUp", counters=None, hw=None, ext=None):
    base = sys / "class/infiniband" / dev / "ports" / str(port)
    w(base / "link_layer", layer)
    w(base / "rate", rate)
    w(base / "state", state)
    w(base / "phys_state", phys)
    w(base / "lid", "0x0" if layer == "Ethernet" else f"0x{port + 10:x}")
    for name, value in {**IB_ZERO, **(counters or {})}.items():
        w(base / "counters" / name, value)
    for name, value in (hw or {}).items():
        w(base / "hw_counters" / name, value)
    for name, value in (ext or {}).items():
        w(base / "counters_ext" / name, value)
    w(sys / "class/infiniband" / dev / "node_type", "1: CA")


IFINDEX = {}


def netdev(sys, name, *, typ=1, oper="up", carrier=1, flags="0x1003", speed=25000, stats=None,
           hardware=True, rdma=None):
    base = sys / "class/net" / name
    index = IFINDEX.setdefault((sys, name), len([k for k in IFINDEX if k[0] == sys]) + 1)
    w(base / "ifindex", index)
    w(base / "iflink", index)
    if hardware:  # real sysfs: a link to the PCI function; here a folder with its uevent
        w(base / "device" / "uevent", f"PCI_SLOT_NAME=0000:{0x10 + index:02x}:00.0")
    if rdma:  # the RoCE netdev's PCI function also carries the RDMA device
        w(base / "device" / "infiniband" / rdma / "node_type", "1: CA")
    w(base / "type", typ)
    w(base / "operstate", oper)
    if carrier is not None:
        w(base / "carrier", carrier)
    w(base / "flags", flags)
    if speed is not None:
        w(base / "speed", speed)
    w(base / "carrier_down_count", 0)
    w(base / "mtu", 4092 if typ == 32 else 1500)
    for s in NET_STATS:
        w(base / "statistics" / s, (stats or {}).get(s, 0))


def proc(root, default_iface, boot_id):
    lines = [ROUTE_HEAD]
    if default_iface:
        lines.append(f"{default_iface}\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0")
        lines.append(f"{default_iface}\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0")
    w(root / "proc/net/route", "\n".join(lines))
    # IPv6: the kernel's unreachable default on lo (RTF_REJECT) is not a default route.
    w(root / "proc/net/ipv6_route",
      "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
      "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo")
    w(root / "proc/sys/kernel/random/boot_id", boot_id)


def lo(sys):
    netdev(sys, "lo", typ=772, oper="unknown", carrier=1, flags="0x9", speed=None, hardware=False,
           stats={"rx_bytes": 123456, "tx_bytes": 123456, "rx_packets": 1000, "tx_packets": 1000})


def fresh(case):
    d = ROOT / case
    if d.exists():
        shutil.rmtree(d)
    return d


# 1. 8-port NDR InfiniBand node (64-bit counters, values above 2**32)
d = fresh("ndr_8port")
sys = d / "sys"
for i in range(8):
    ib_port(sys, f"mlx5_{i}", 1, counters={
        "port_rcv_data": 91_000_000_000 + i * 1_000_000_000, "port_xmit_data": 92_000_000_000 + i * 1_000_000_000,
        "port_rcv_packets": 30_000_000_000 + i, "port_xmit_packets": 31_000_000_000 + i,
        "unicast_rcv_packets": 30_000_000_000 + i, "unicast_xmit_packets": 31_000_000_000 + i,
        "port_xmit_wait": 1_000_000 + i, "symbol_error": 2,
    }, hw={"out_of_buffer": 0, "out_of_sequence": 0, "rx_write_requests": 5_000_000,
           "rx_read_requests": 1_000, "local_ack_timeout_err": 0})
    netdev(sys, f"ib{i}", typ=32, speed=400000, stats={"rx_bytes": 10_000 + i, "tx_bytes": 20_000 + i})
netdev(sys, "eth0", speed=25000, stats={"rx_bytes": 5_000_000_000, "tx_bytes": 4_000_000_000,
                                        "rx_packets": 9_000_000, "tx_packets": 8_000_000})
lo(sys)
proc(d, "eth0", "3a4b5c6d-0000-4000-8000-000000000001")

# 2. RoCE ConnectX node with hw_counters (and the RoCE netdevs as fabric NICs)
d = fresh("roce_connectx")
sys = d / "sys"
for i, nd in enumerate(("ens1f0np0", "ens1f1np1")):
    ib_port(sys, f"mlx5_{i}", 1, layer="Ethernet", rate="200 Gb/sec (4X HDR)", phys="5: LinkUp",
            counters={"port_rcv_data": 7_000_000_000, "port_xmit_data": 8_000_000_000,
                      "port_rcv_packets": 900_000_000, "port_xmit_packets": 950_000_000},
            hw={"np_cnp_sent": 1_000, "rp_cnp_handled": 2_000, "np_ecn_marked_roce_packets": 1_500,
                "rp_cnp_ignored": 0, "out_of_buffer": 0, "out_of_sequence": 3, "packet_seq_err": 0,
                "local_ack_timeout_err": 0, "rnr_nak_retry_err": 0, "roce_adp_retrans": 0,
                "rx_read_requests": 100, "rx_write_requests": 200, "implied_nak_seq_err": 0})
    netdev(sys, nd, speed=200000, rdma=f"mlx5_{i}", stats={"rx_bytes": 1_000_000, "tx_bytes": 2_000_000,
                                         "rx_packets": 1_000, "tx_packets": 2_000})
netdev(sys, "eno1", speed=10000, stats={"rx_bytes": 50_000_000, "tx_bytes": 40_000_000,
                                        "rx_packets": 50_000, "tx_packets": 40_000})
lo(sys)
proc(d, "eno1", "3a4b5c6d-0000-4000-8000-000000000002")
a = d / "after" / "sys"
for i in range(2):
    base = a / "class/infiniband" / f"mlx5_{i}" / "ports/1"
    # +1.5e9 words = 6e9 bytes in 60 s = 1e8 B/s (RX); +3e9 words = 12e9 bytes = 2e8 B/s (TX)
    w(base / "counters/port_rcv_data", 7_000_000_000 + 1_500_000_000)
    w(base / "counters/port_xmit_data", 8_000_000_000 + 3_000_000_000)
    w(base / "counters/port_rcv_packets", 900_000_000 + 600_000)
    w(base / "counters/port_xmit_packets", 950_000_000 + 1_200_000)
    w(base / "hw_counters/np_cnp_sent", 1_000 + 600)
    w(base / "hw_counters/rp_cnp_handled", 2_000 + 1_200)
    w(base / "hw_counters/np_ecn_marked_roce_packets", 1_500 + 900)
for nd in ("ens1f0np0", "ens1f1np1"):
    w(a / "class/net" / nd / "statistics/rx_bytes", 1_000_000 + 6_000_000)
    w(a / "class/net" / nd / "statistics/tx_bytes", 2_000_000 + 3_000_000)
w(a / "class/net/eno1/statistics/rx_bytes", 50_000_000 + 60_000)
w(a / "class/net/eno1/statistics/tx_bytes", 40_000_000 + 120_000)

# 3. Legacy 32-bit counters: port 1 saturated, port 2 has the pre-4.5 counters_ext folder
d = fresh("legacy_32bit")
sys = d / "sys"
ib_port(sys, "mlx4_0", 1, rate="56 Gb/sec (4X FDR)",
        counters={"port_rcv_data": 4294967295, "port_xmit_data": 1_000_000,
                  "port_rcv_packets": 50_000_000, "port_xmit_packets": 40_000_000, "symbol_error": 65535})
ib_port(sys, "mlx4_0", 2, rate="56 Gb/sec (4X FDR)",
        counters={"port_rcv_data": 4294967295, "port_xmit_data": 4294967295,
                  "port_rcv_packets": 4294967295, "port_xmit_packets": 4294967295},
        ext={"port_rcv_data_64": 40_000_000_000, "port_xmit_data_64": 50_000_000_000,
             "port_rcv_packets_64": 10_000_000_000, "port_xmit_packets_64": 11_000_000_000})
netdev(sys, "eth0", speed=1000)
lo(sys)
proc(d, "eth0", "3a4b5c6d-0000-4000-8000-000000000003")
a = d / "after" / "sys/class/infiniband/mlx4_0/ports"
w(a / "1/counters/port_xmit_data", 1_000_000 + 150_000_000)  # x4 / 60 s = 1e7 B/s
w(a / "1/counters/port_rcv_packets", 50_000_000 + 60_000)
w(a / "1/counters/port_xmit_packets", 40_000_000 + 120_000)
w(a / "2/counters_ext/port_rcv_data_64", 40_000_000_000 + 300_000_000)  # 2e7 B/s
w(a / "2/counters_ext/port_xmit_data_64", 50_000_000_000 + 450_000_000)  # 3e7 B/s
w(a / "2/counters_ext/port_rcv_packets_64", 10_000_000_000 + 6_000)
w(a / "2/counters_ext/port_xmit_packets_64", 11_000_000_000 + 6_000)

# 4. A port that goes down between scans
d = fresh("port_down")
sys = d / "sys"
for i in range(2):
    ib_port(sys, f"mlx5_{i}", 1, rate="200 Gb/sec (4X HDR)",
            counters={"port_rcv_data": 20_000_000_000, "port_xmit_data": 21_000_000_000,
                      "port_rcv_packets": 5_000_000_000, "port_xmit_packets": 5_100_000_000,
                      "symbol_error": 5, "link_downed": 1})
netdev(sys, "eth0", speed=25000)
lo(sys)
proc(d, "eth0", "3a4b5c6d-0000-4000-8000-000000000004")
a = d / "after" / "sys/class/infiniband"
w(a / "mlx5_0/ports/1/counters/port_rcv_data", 20_000_000_000 + 750_000_000)  # 5e7 B/s
w(a / "mlx5_0/ports/1/counters/port_xmit_data", 21_000_000_000 + 750_000_000)
w(a / "mlx5_1/ports/1/state", "1: DOWN")
w(a / "mlx5_1/ports/1/phys_state", "2: Polling")
w(a / "mlx5_1/ports/1/counters/link_downed", 2)
w(a / "mlx5_1/ports/1/counters/symbol_error", 12)
w(a / "mlx5_1/ports/1/counters/port_rcv_errors", 3)

# 5. Counter reset after a reboot (boot id changes, counters restart low)
d = fresh("reboot")
sys = d / "sys"
ib_port(sys, "mlx5_0", 1, rate="400 Gb/sec (4X NDR)",
        counters={"port_rcv_data": 900_000_000_000, "port_xmit_data": 800_000_000_000,
                  "port_rcv_packets": 70_000_000_000, "port_xmit_packets": 60_000_000_000,
                  "symbol_error": 40, "link_downed": 3})
netdev(sys, "eth0", speed=25000, stats={"rx_bytes": 9_000_000_000, "tx_bytes": 8_000_000_000})
lo(sys)
proc(d, "eth0", "3a4b5c6d-0000-4000-8000-000000000005")
a = d / "after"
w(a / "proc/sys/kernel/random/boot_id", "9f8e7d6c-0000-4000-8000-0000000000aa")
for name, value in {"port_rcv_data": 1_000, "port_xmit_data": 2_000, "port_rcv_packets": 10,
                    "port_xmit_packets": 20, "symbol_error": 0, "link_downed": 0}.items():
    w(a / "sys/class/infiniband/mlx5_0/ports/1/counters" / name, value)
w(a / "sys/class/net/eth0/statistics/rx_bytes", 5_000)
w(a / "sys/class/net/eth0/statistics/tx_bytes", 6_000)
print("ok")
