"""east_west over sysfs fixture trees (injected roots) and a fake clock, scan after scan.

Each case in ``tests/testcases/east_west/<case>/`` holds the first scan's ``sys`` and
``proc`` trees and an ``after/`` overlay for the second scan; tests copy the case to
a temporary folder and rewrite counter files between scans, then assert exact rates:
delta x (4 for IB data words) / elapsed seconds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support import channels, cli_env, run_cli

CASES = Path(__file__).resolve().parents[1] / "testcases" / "east_west"
IB = "class/infiniband"


class Host:
    """A copy of one fixture case that a test may rewrite between scans."""

    def __init__(self, tmp_path: Path, case: str):
        self.case = case
        self.root = tmp_path / "host"
        shutil.copytree(CASES / case, self.root, ignore=shutil.ignore_patterns("after"))
        self.sys = self.root / "sys"
        self.proc = self.root / "proc"

    def after(self) -> None:
        shutil.copytree(CASES / self.case / "after", self.root, dirs_exist_ok=True)

    def read(self, rel: str) -> int:
        return int((self.sys / rel).read_text())

    def write(self, rel: str, value) -> None:
        (self.sys / rel).write_text(f"{value}\n")

    def add(self, rel: str, delta: int) -> None:
        self.write(rel, self.read(rel) + delta)


@pytest.fixture
def scan(sensor_run, make_ctx):
    """scan(host, *args) runs east_west on the host's trees (validated, channels recorded)."""

    def _scan(host: Host, *args):
        ctx = make_ctx(sys_root=host.sys, proc_root=host.proc)
        return sensor_run("east_west", list(args), ctx)

    return _scan


def ib(dev: str, name: str) -> str:
    return f"{IB}/{dev}/ports/1/counters/{name}"


# -- 8-port NDR InfiniBand node --------------------------------------------------

def test_ndr_node_first_scan_collects_a_baseline_and_classifies(tmp_path, scan):
    host = Host(tmp_path, "ndr_8port")
    result = scan(host)
    assert not result.error, result.message()
    msg = result.message()
    assert "Collecting baseline (first scan)" in msg
    assert "Fabric: mlx5_0/1, mlx5_1/1" in msg and "(InfiniBand)" in msg
    assert "Front-end: eth0 (default route)" in msg
    assert "ib0 (IPoIB, counted in its HCA port)" in msg
    ch = channels(result)
    # No rate before a second sample exists; Fabric RX, the primary channel, holds its place at 0 (collecting).
    assert result.channels[0].name == "Fabric RX" and ch["Fabric RX"] == 0
    assert not [n for n in ch if n.endswith((" RX", " TX")) and n != "Fabric RX"
                or n in ("Fabric Packets", "Fabric Errors")]
    assert ch["Fabric Ports Not Active"] == 0
    for i in range(8):
        assert ch[f"Port mlx5_{i}/1 Link State"] == 4
        assert ch[f"Port mlx5_{i}/1 Physical State"] == 5


def test_ndr_node_rates_are_words_times_four_over_elapsed(tmp_path, scan, clock):
    host = Host(tmp_path, "ndr_8port")
    scan(host)
    for i in range(8):
        dev = f"mlx5_{i}"
        host.add(ib(dev, "port_rcv_data"), 3_750_000_000 * (i + 1))  # 15e9 (i+1) bytes / 60 s
        host.add(ib(dev, "port_xmit_data"), 1_500_000_000)  # 6e9 bytes / 60 s = 1e8 B/s
        host.add(ib(dev, "port_rcv_packets"), 6_000)
        host.add(ib(dev, "port_xmit_packets"), 12_000)
        host.add(ib(dev, "port_xmit_wait"), 600)
    host.add(ib("mlx5_3", "symbol_error"), 1)
    host.add("class/net/eth0/statistics/rx_bytes", 6_000_000)
    host.add("class/net/eth0/statistics/tx_bytes", 3_000_000)
    host.add("class/net/ib0/statistics/rx_bytes", 10 ** 9)  # IPoIB: must not count anywhere
    clock.advance(60)
    result = scan(host)
    ch = channels(result)
    for i in range(8):
        assert ch[f"Port mlx5_{i}/1 RX"] == 250_000_000 * (i + 1)
        assert ch[f"Port mlx5_{i}/1 TX"] == 100_000_000
    assert ch["Fabric RX"] == 250_000_000 * 36
    assert ch["Fabric TX"] == 800_000_000
    assert ch["Fabric Packets"] == 8 * 18_000 / 60
    assert ch["Transmit Wait"] == 80.0
    assert ch["Front-end RX"] == 100_000 and ch["Front-end TX"] == 50_000
    assert ch["Peak Port Utilisation"] == 4.0  # 2e9 B/s of 400 Gb/s (5e10 B/s) on mlx5_7/1
    assert "Busiest fabric port mlx5_7/1: 4.0 %" in result.message()
    assert ch["Symbol Errors"] == 1 and ch["Fabric Errors"] == 0 and ch["Link Down Events"] == 0
    assert ch["Fabric Discards"] == 0
    assert len(result.channels) == 8 * 4 + 12 + 1 <= 50
    assert all(v >= 0 for v in ch.values())


def test_the_elapsed_time_is_the_real_one_not_the_nominal_interval(tmp_path, scan, clock):
    host = Host(tmp_path, "ndr_8port")
    scan(host)
    host.add(ib("mlx5_0", "port_rcv_data"), 1_000_000_000)
    clock.advance(97)  # PRTG scans jitter and get skipped
    assert channels(scan(host))["Port mlx5_0/1 RX"] == round(4e9 / 97)


def test_a_node_with_more_ports_than_per_port_channels_stays_within_50(tmp_path, scan, clock):
    host = Host(tmp_path, "ndr_8port")
    # A ninth RDMA port (a RoCE HCA with hw_counters) and two fabric NICs beyond the per-port budget.
    roce = CASES / "roce_connectx" / "sys" / IB / "mlx5_0"
    shutil.copytree(roce, host.sys / IB / "mlx5_8")
    for name in ("eth1", "eth2"):
        shutil.copytree(host.sys / "class/net/eth0", host.sys / "class/net" / name)
    first = scan(host)
    slots = {ch.name: ch.v2_id for ch in first.channels if ch.name.startswith("Port ")}
    assert "Port mlx5_8/1 Link State" not in slots and "Port eth1 Link State" not in slots
    assert "beyond the first 8 are in the totals only: mlx5_8/1, eth1, eth2" in first.message()
    host.add(ib("mlx5_8", "port_rcv_data"), 150_000_000)  # 6e8 bytes / 60 s
    host.add(f"{IB}/mlx5_8/ports/1/hw_counters/np_cnp_sent", 120)
    host.add("class/net/eth1/statistics/rx_bytes", 60_000)
    clock.advance(60)
    result = scan(host)
    ch = channels(result)
    # The worst case: 8 ports x 4 + every total (15) + Execution Time.
    assert len(result.channels) == 8 * 4 + 15 + 1 <= 50
    assert ch["Fabric RX"] == 10_000_000 + 1_000  # the summarised ports still count
    assert ch["RoCE CNP Sent"] == 2.0
    assert {ch.name: ch.v2_id for ch in result.channels if ch.name in slots} == slots


def test_port_channels_keep_their_script_v2_ids_when_a_port_disappears(tmp_path, scan, clock):
    host = Host(tmp_path, "ndr_8port")
    before = {ch.name: ch.v2_id for ch in scan(host).channels}
    assert before["Port mlx5_0/1 Link State"] == 140 and before["Port mlx5_7/1 Link State"] == 147
    shutil.rmtree(host.sys / IB / "mlx5_2")
    clock.advance(60)
    after = {ch.name: ch.v2_id for ch in scan(host).channels}
    assert "Port mlx5_2/1 Link State" not in after
    assert after["Port mlx5_3/1 Link State"] == 143 and after["Port mlx5_7/1 RX"] == 107


# -- RoCE ConnectX node ------------------------------------------------------------

def test_roce_node_reads_hca_counters_hw_counters_and_netdevs(tmp_path, scan, clock):
    host = Host(tmp_path, "roce_connectx")
    first = scan(host)
    assert "mlx5_0/1, mlx5_1/1 (RoCE)" in first.text
    assert "ens1f0np0, ens1f1np1 (NIC, RoCE netdev)" in first.text
    assert "Front-end: eno1 (default route)" in first.text
    host.after()
    clock.advance(60)
    result = scan(host)
    ch = channels(result)
    assert ch["Port mlx5_0/1 RX"] == 100_000_000 and ch["Port mlx5_1/1 TX"] == 200_000_000
    assert ch["Port ens1f0np0 RX"] == 100_000 and ch["Port ens1f0np0 TX"] == 50_000
    # RDMA bytes (HCA counters) plus the rest (netdev counters): nothing counted twice.
    assert ch["Fabric RX"] == 2 * 100_000_000 + 2 * 100_000
    assert ch["Fabric TX"] == 2 * 200_000_000 + 2 * 50_000
    assert ch["Front-end RX"] == 1_000 and ch["Front-end TX"] == 2_000
    assert ch["RoCE CNP Sent"] == 20.0 and ch["RoCE CNP Handled"] == 40.0 and ch["RoCE ECN Marked"] == 30.0
    assert ch["Fabric Packets"] == 2 * 1_800_000 / 60
    assert ch["Peak Port Utilisation"] == 0.8  # 2e8 B/s of 200 Gb/s
    assert ch["Port mlx5_0/1 Link State"] == 4 and ch["Port ens1f0np0 Physical State"] == 5


def test_named_interfaces_are_the_fabric_and_the_rest_front_end(tmp_path, scan):
    host = Host(tmp_path, "roce_connectx")
    result = scan(host, "--interface", "ens1f0*", "--hca", "mlx5_1")
    assert result.text.startswith("Fabric: mlx5_1/1 (RoCE); ens1f0np0 (NIC, named)")
    assert "Front-end: eno1, ens1f1np1 (default route, not named)" in result.text
    assert "Port mlx5_0/1 Link State" not in channels(result)


def test_a_host_without_rdma_devices_reports_the_front_end_and_says_so(tmp_path, scan, clock):
    host = Host(tmp_path, "reboot")
    shutil.rmtree(host.sys / IB)
    scan(host)
    host.add("class/net/eth0/statistics/tx_bytes", 600)
    clock.advance(60)
    result = scan(host)
    assert result.text.startswith("Fabric: none found (no InfiniBand/RoCE device; name fabric NICs with --interface)")
    assert channels(result) == {"Front-end RX": 0, "Front-end TX": 10, "Execution Time": result.channels[-1].value}


def test_an_administratively_down_fabric_nic_maps_onto_the_ib_states(tmp_path, scan):
    host = Host(tmp_path, "reboot")
    nic = host.sys / "class/net/eth1"
    shutil.copytree(host.sys / "class/net/eth0", nic)
    (nic / "operstate").write_text("down\n")
    (nic / "flags").write_text("0x1002\n")  # IFF_UP clear
    (nic / "carrier").unlink()  # the kernel answers EINVAL while the interface is down
    (nic / "speed").write_text("-1\n")
    ch = channels(scan(host))
    assert ch["Port eth1 Link State"] == 1 and ch["Port eth1 Physical State"] == 3
    assert ch["Fabric Ports Not Active"] == 1


# -- legacy 32-bit counters --------------------------------------------------------

def test_legacy_32_bit_counters_saturate_and_64_bit_extended_ones_are_preferred(tmp_path, scan, clock):
    host = Host(tmp_path, "legacy_32bit")
    scan(host)
    host.after()
    clock.advance(60)
    result = scan(host)
    ch = channels(result)
    assert "Port mlx4_0/1 RX" not in ch  # port_rcv_data stuck at 4294967295
    assert ch["Port mlx4_0/1 TX"] == 10_000_000
    # Port 2's legacy counters are saturated too, but counters_ext has the 64-bit ones.
    assert ch["Port mlx4_0/2 RX"] == 20_000_000 and ch["Port mlx4_0/2 TX"] == 30_000_000
    assert ch["Fabric RX"] == 20_000_000 and ch["Fabric TX"] == 40_000_000
    assert ch["Fabric Packets"] == 3_000 + 200
    assert ch["Symbol Errors"] == 0  # 16-bit symbol_error stuck at 65535 hides new events
    msg = result.message()
    assert "Saturated counters" in msg and "mlx4_0/1 port_rcv_data" in msg and "mlx4_0/1 symbol_error" in msg
    assert "mlx4_0/2 port_rcv_data" not in msg

    # The TX counter saturates during the next interval: no rate rather than a bogus one.
    host.write(f"{IB}/mlx4_0/ports/1/counters/port_xmit_data", 4294967295)
    clock.advance(60)
    third = channels(scan(host))
    assert "Port mlx4_0/1 TX" not in third and third["Fabric TX"] == 0


# -- a port going down, resets, reboots, clock steps --------------------------------

def test_a_port_that_went_down_between_scans(tmp_path, scan, clock):
    host = Host(tmp_path, "port_down")
    first = channels(scan(host))
    assert first["Fabric Ports Not Active"] == 0
    host.after()
    clock.advance(60)
    result = scan(host)
    ch = channels(result)
    assert ch["Port mlx5_1/1 Link State"] == 1 and ch["Port mlx5_1/1 Physical State"] == 2
    assert ch["Fabric Ports Not Active"] == 1
    assert result.channel("Fabric Ports Not Active").limit_state() == "warning"
    assert ch["Link Down Events"] == 1 and ch["Symbol Errors"] == 7 and ch["Fabric Errors"] == 3
    assert ch["Port mlx5_1/1 RX"] == 0 and ch["Port mlx5_0/1 RX"] == 50_000_000
    msg = result.message()
    assert "Fabric ports not active: mlx5_1/1 (DOWN, Polling)" in msg
    assert "Link went down since the last scan: mlx5_1/1 1" in msg


def test_a_reboot_restarts_the_baseline_and_never_gives_negative_rates(tmp_path, scan, clock):
    host = Host(tmp_path, "reboot")
    scan(host)
    host.after()  # new boot id, counters restarted from zero
    clock.advance(300)
    result = scan(host)
    ch = channels(result)
    assert "Collecting baseline (the host rebooted since the last scan" in result.message()
    assert ch["Fabric RX"] == 0 and result.channels[0].name == "Fabric RX"  # collecting, holds the primary slot
    assert not [n for n in ch if n.endswith((" RX", " TX")) and n != "Fabric RX"
                or n in ("Symbol Errors", "Link Down Events")]
    assert all(v >= 0 for v in ch.values())
    host.add(ib("mlx5_0", "port_rcv_data"), 15_000_000)
    clock.advance(60)
    assert channels(scan(host))["Port mlx5_0/1 RX"] == 1_000_000


def test_a_counter_reset_without_reboot_skips_one_rate_and_counts_events_from_zero(tmp_path, scan, clock):
    host = Host(tmp_path, "reboot")
    scan(host)
    # Driver reload / link flap: counters restart, boot id unchanged.
    host.write(ib("mlx5_0", "port_rcv_data"), 500)
    host.write(ib("mlx5_0", "link_downed"), 1)
    clock.advance(60)
    result = scan(host)
    ch = channels(result)
    assert "Port mlx5_0/1 RX" not in ch and "Fabric RX" not in ch
    assert ch["Port mlx5_0/1 TX"] == 0
    assert ch["Link Down Events"] == 1
    assert "Counters restarted on mlx5_0/1" in result.message()
    host.add(ib("mlx5_0", "port_rcv_data"), 30_000)
    clock.advance(60)
    assert channels(scan(host))["Port mlx5_0/1 RX"] == 2_000


def test_a_clock_step_back_restarts_the_baseline(tmp_path, scan, clock):
    host = Host(tmp_path, "reboot")
    scan(host)
    host.add(ib("mlx5_0", "port_rcv_data"), 10 ** 9)
    clock.advance(-3600)
    result = scan(host)
    assert "Collecting baseline (the clock moved back" in result.message()
    assert channels(result)["Fabric RX"] == 0  # collecting: no rate across a clock step


def test_a_rate_above_the_link_rate_is_not_reported(tmp_path, scan, clock):
    host = Host(tmp_path, "reboot")
    scan(host)
    host.add(ib("mlx5_0", "port_rcv_data"), 10 ** 12)  # 4 TB in 60 s on a 400 Gb/s port
    clock.advance(60)
    assert "Port mlx5_0/1 RX" not in channels(scan(host))


# -- bad input and missing parts ----------------------------------------------------

@pytest.mark.parametrize("args, expected", [
    (["--interface", "eth7"], "Parameter --interface: 'eth7' matches no interface on this host (found: eth0"),
    (["--interface", "veth*"], "Parameter --interface: 'veth*' matches no interface"),
    (["--hca", "mlx9_*"], "Parameter --hca: 'mlx9_*' matches no RDMA device on this host (found: mlx5_0)"),
    (["--interface", "a/b"], "Parameter --interface: 'a/b'"),
    (["--speed", "1"], "Unknown option '--speed'"),
])
def test_bad_parameters_give_an_error_naming_the_parameter(tmp_path, scan, args, expected):
    host = Host(tmp_path, "reboot")
    result = scan(host, *args)
    assert result.error and result.text.startswith(expected), result.text


def test_a_host_without_sysfs_gets_a_hint(tmp_path, scan):
    host = Host(tmp_path, "reboot")
    shutil.rmtree(host.sys)
    result = scan(host)
    assert result.error
    assert "the east_west sensor reads Linux sysfs" in result.text and "Windows probe" in result.text


def test_unreadable_counters_of_one_port_leave_it_out_with_a_note(tmp_path, scan, clock):
    host = Host(tmp_path, "port_down")
    bad = host.sys / ib("mlx5_1", "port_rcv_data")
    bad.unlink()
    bad.mkdir()  # reading it fails even as root (EISDIR)
    host.write(ib("mlx5_1", "port_xmit_data"), "N/A (no PMA)")
    scan(host)
    host.add(ib("mlx5_0", "port_rcv_data"), 750_000_000)
    clock.advance(60)
    result = scan(host)
    ch = channels(result)
    assert ch["Fabric RX"] == 50_000_000 and "Port mlx5_1/1 RX" not in ch
    assert "Unreadable traffic counters, port left out of the totals: mlx5_1/1: port_rcv_data Is a directory" \
        in result.message()


def test_no_readable_traffic_counter_at_all_is_an_error(tmp_path, scan):
    host = Host(tmp_path, "reboot")
    for name in ("port_rcv_data", "port_xmit_data"):
        host.write(ib("mlx5_0", name), "N/A (no PMA)")
    result = scan(host, "--interface", "eth0")
    assert not result.error  # eth0 is a readable fabric port
    result = scan(host)  # by default eth0 (default route) is front-end: no fabric port can be measured
    assert result.error and result.text.startswith("No fabric port has readable traffic counters (mlx5_0/1: ")
    assert "Check the HCA driver" in result.text


def test_a_corrupt_state_file_restarts_the_baseline(tmp_path, scan, clock):
    host = Host(tmp_path, "reboot")
    scan(host)
    for f in (tmp_path / "state").glob("east_west-*.json"):
        f.write_text("{not json")
    clock.advance(60)
    result = scan(host)
    assert "Collecting baseline (first scan)" in result.message()
    assert "was corrupt or truncated" in result.message()


def test_cli_unknown_interface_exits_0_with_a_clean_error(tmp_path):
    doc, proc = run_cli(["run", "east_west", "--interface", "no-such-if0"], cli_env(tmp_path / "state"))
    assert doc["prtg"]["error"] == 1
    assert doc["prtg"]["text"].startswith("Parameter --interface: 'no-such-if0' matches no interface")
