"""east_west on sysfs trees captured from real hosts (see each case's SOURCE.md).

* ``bonded_host`` (node_exporter's fixture): ``bonding_masters`` is no interface, a bond
  slave is counted once (as its bond), and front-end bytes never reappear as fabric;
* ``container_host`` (procfs's fixture + the entries the kernel makes for bridges,
  veths, overlays): every virtual interface is ignored, no fabric alarm;
* ``omnipath_hfi1`` (procfs's fixture): hfi1 data counters are 8-byte flits.

Expected values are worked out by hand in the SOURCE.md files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from prtg_ai.east_west import east_west as ew
from prtg_ai.backends import netdev

from support import channels

CASES = Path(__file__).resolve().parents[1] / "testcases" / "east_west"


class Host:
    """A copy of one case (symbolic links kept, as in sysfs) and its second-scan overlay."""

    def __init__(self, tmp_path: Path, case: str):
        self.case = CASES / case
        self.root = tmp_path / case
        shutil.copytree(self.case, self.root, symlinks=True, ignore=shutil.ignore_patterns("after", "SOURCE.md"))
        self.sys, self.proc = self.root / "sys", self.root / "proc"

    def after(self) -> None:
        shutil.copytree(self.case / "after", self.root, dirs_exist_ok=True)


@pytest.fixture
def scan(sensor_run, make_ctx):
    def _scan(host: Host, *args):
        return sensor_run("east_west", ["--nvlink", "off", *args],
                          make_ctx(sys_root=host.sys, proc_root=host.proc))
    return _scan


def _two_scans(tmp_path, scan, clock, case, *args):
    host = Host(tmp_path, case)
    first = scan(host, *args)
    host.after()
    clock.advance(60)
    return first, scan(host, *args)


def test_bonding_masters_is_not_an_interface():
    names = netdev.list_netdevs(CASES / "bonded_host" / "sys")
    assert (CASES / "bonded_host/sys/class/net/bonding_masters").is_file()
    assert names == ["bond0", "dmz", "eth0", "int"]


def test_bonded_host_counts_a_slave_once_and_the_same_bytes_in_one_role(tmp_path, scan, clock):
    first, second = _two_scans(tmp_path, scan, clock, "bonded_host", "--explain")
    assert "bonding_masters" not in first.message() and "Not a directory" not in first.message()
    assert "Front-end: dmz (default route)" in first.text
    assert "eth0 (in bond dmz, counted there)" in first.text
    assert "bond0 (bond without slaves)" in first.text
    ch = channels(second)
    assert ch["Front-end RX"] == 1_000_000 and ch["Front-end TX"] == 500_000
    # Only int's bytes are fabric: eth0's +36 MB (part of dmz's 60 MB) are not counted again.
    assert ch["Fabric RX"] == 200_000 and ch["Fabric TX"] == 100_000
    assert ch["Port int RX"] == 200_000
    assert not any("eth0" in name or "dmz" in name or "bond0" in name for name in ch)
    # 0 fabric alarms by default
    assert ch["Fabric Ports Not Active"] == 0 and ch["Port int Link State"] == ew.LINK_ACTIVE
    assert "Left out of the totals" not in second.message()
    assert ("Classification: dmz front-end (default route), int fabric (hardware, no default route); "
            "ignored (bond without slaves): bond0; ignored (in bond dmz, counted there): eth0") in second.message()


def test_container_host_ignores_bridges_veths_overlays_and_spare_ports(tmp_path, scan, clock):
    first, second = _two_scans(tmp_path, scan, clock, "container_host", "--explain")
    msg = second.message()
    assert first.text.startswith("Fabric: none found")
    assert "ignored (bridge): cni0, docker0" in msg
    assert "ignored (veth/VLAN, stacked on another device): veth3a1f9c02, veth7bc2d418, vethf345468" in msg
    assert "ignored (virtual, no hardware device): flannel.1, ifb0" in msg
    ch = channels(second)
    assert ch["Front-end RX"] == 100_000 and ch["Front-end TX"] == 50_000
    # No fabric channel at all: nothing to alarm on, and docker0's/cni0's bytes are nowhere.
    assert set(ch) == {"Front-end RX", "Front-end TX", "Execution Time"}


def test_container_virtual_interfaces_count_when_named(tmp_path, scan, clock):
    first, second = _two_scans(tmp_path, scan, clock, "container_host", "--interface", "docker0")
    assert first.text.startswith("Fabric: docker0 (NIC, named)")
    ch = channels(second)
    assert ch["Fabric RX"] == 10_000  # 600,000 B / 60 s
    assert ch["Front-end RX"] == 100_000  # eth0 (hardware, not named)


def test_omnipath_data_counters_are_8_byte_flits(tmp_path, scan, clock):
    first, second = _two_scans(tmp_path, scan, clock, "omnipath_hfi1", "--explain")
    assert "Fabric: hfi1_0/1 (Omni-Path)" in first.text
    assert "hfi1_0/1 fabric (Omni-Path, data counters x8 bytes)" in first.message()
    ch = channels(second)
    assert ch["Fabric RX"] == 100_000_000 and ch["Fabric TX"] == 50_000_000
    assert ch["Port hfi1_0/1 RX"] == 100_000_000
    assert ch["Peak Port Utilisation"] == 0.8
    assert ch["Fabric Packets"] == 1500
    assert ch["Fabric Ports Not Active"] == 0


def test_a_rate_above_the_link_speed_is_left_out_with_a_note(tmp_path, scan, clock):
    host = Host(tmp_path, "omnipath_hfi1")
    scan(host)
    counters = host.sys / "class/infiniband/hfi1_0/ports/1/counters"
    # +1e11 flits = 8e11 B in 60 s = 1.33e10 B/s = 106.7 Gbit/s, above 100 Gb/s (1.25e10 B/s)
    (counters / "port_rcv_data").write_text(f"{345091702026 + 100_000_000_000}\n")
    (counters / "port_xmit_data").write_text(f"{273558326543 + 375_000_000}\n")
    clock.advance(60)
    result = scan(host)
    ch = channels(result)
    assert "Fabric RX" not in ch and ch["Fabric TX"] == 50_000_000
    assert ("Left out of the totals this scan: hfi1_0/1 RX (computed 106.7 Gbit/s, above the link speed "
            "100.0 Gbit/s: counter reset or clock step)") in result.message()


def test_hfi1_unit_comes_from_the_driver_link_when_present(tmp_path):
    port = netdev.IbPort("opa0", 1, "InfiniBand", 4, "ACTIVE", 5, "LinkUp", None, None, {}, {}, {}, driver="hfi1")
    assert ew.data_unit(port) == 8
    assert ew.data_unit(port._replace(driver="mlx5_core", device="mlx5_0")) == 4
    assert ew.data_unit(port._replace(driver=None, device="hfi1_1")) == 8


# -- the role rules on hand-made facts (pure) --------------------------------------

def dev(name, *, index, iflink=None, device=True, up=True, rx=1, **facts):
    f = netdev.NetFacts(ifindex=index, iflink=iflink if iflink is not None else index, has_device=device, **facts)
    counters = {"rx_bytes": netdev.Counter(rx), "tx_bytes": netdev.Counter(rx)}
    return netdev.NetDev(name, 1, "up" if up else "down", 1 if up else 0, 0x1003 if up else 0x1002, 1000,
                         counters, {}, f)


def roles(devs, named=None, default=()):
    return {d.name: (d.role, d.why) for d in ew.decide_roles(devs, named, set(default))}


def test_a_vlan_on_a_bond_makes_the_bond_front_end_and_its_slaves_counted_there():
    devs = [dev("bond0", index=5, device=False, bond=True, bond_slaves=("eno1", "eno2")),
            dev("eno1", index=2, master="bond0"), dev("eno2", index=3, master="bond0"),
            dev("bond0.100", index=6, iflink=5, device=False)]
    got = roles(devs, default=["bond0.100"])
    assert got["bond0"] == ("frontend", "default route via bond0.100")
    assert got["eno1"] == ("skip", "in bond bond0, counted there")
    assert got["bond0.100"][0] == "skip"


def test_a_bridge_with_the_default_route_makes_its_hardware_port_front_end():
    devs = [dev("br0", index=4, device=False, bridge=True, bridge_ports=("eth0", "vnet0")),
            dev("eth0", index=2, brport=True, master="br0"),
            dev("vnet0", index=7, device=False, brport=True, master="br0", tun=True),
            dev("ens2", index=3)]
    got = roles(devs, default=["br0"])
    assert got == {"br0": ("skip", "bridge"), "eth0": ("frontend", "default route via br0"),
                   "vnet0": ("skip", "tun/tap"), "ens2": ("fabric", "hardware, no default route")}


def test_spare_ports_and_rdma_netdevs():
    devs = [dev("eth0", index=2), dev("eth1", index=3, up=False, rx=0), dev("eth2", index=4, up=False, rx=5),
            dev("ens3np0", index=5, rdma=True)]
    got = roles(devs, default=["eth0"])
    assert got["eth1"] == ("skip", "down and never carried traffic")
    assert got["eth2"] == ("fabric", "hardware, no default route")  # it carried traffic: its loss alarms
    assert got["ens3np0"] == ("fabric", "RoCE netdev")


def test_explain_stays_short_on_a_node_with_many_pods():
    skipped = [f"veth{i:03d} (veth/VLAN, stacked on another device)" for i in range(60)]
    text = ew.EastWestSensor._explain([], skipped)
    assert text == ("Classification: ignored (veth/VLAN, stacked on another device): veth000, veth001, veth002, "
                    "veth003, veth004, veth005 and 54 more")


def test_a_disabled_unused_rdma_port_does_not_alarm_but_a_dead_enabled_one_does(tmp_path, scan):
    host = Host(tmp_path, "omnipath_hfi1")
    port = host.sys / "class/infiniband/hfi1_0/ports/1"
    (port / "state").write_text("1: DOWN\n")
    (port / "phys_state").write_text("3: Disabled\n")
    for name in ("port_rcv_data", "port_xmit_data"):
        (port / "counters" / name).write_text("0\n")
    result = scan(host)
    assert "hfi1_0/1 (disabled and never carried traffic)" in result.text
    assert "Fabric Ports Not Active" not in channels(result)
    (port / "phys_state").write_text("2: Polling\n")  # enabled, no link: a rail that never came up
    result = scan(host)
    assert channels(result)["Fabric Ports Not Active"] == 1


def test_naming_a_bond_slave_names_its_bond():
    devs = [dev("bond1", index=5, device=False, bond=True, bond_slaves=("ens1", "ens2")),
            dev("ens1", index=2), dev("ens2", index=3), dev("eth0", index=4)]
    got = roles(devs, named=["ens1"], default=["eth0"])
    assert got["bond1"] == ("fabric", "named")
    assert got["ens1"] == ("skip", "in bond bond1, counted there")
    assert got["eth0"] == ("frontend", "default route")


@pytest.mark.parametrize("args,shown", [(["--explain"], True), (["--explain", "yes"], True),
                                        (["--explain", "no"], False), (["--explain=0"], False)])
def test_explain_flag_forms(tmp_path, scan, args, shown):
    result = scan(Host(tmp_path, "bonded_host"), *args)
    assert ("Classification: " in result.message()) is shown


def test_explain_with_a_bad_value_names_the_parameter(tmp_path, sensor_run, make_ctx):
    host = Host(tmp_path, "bonded_host")
    result = sensor_run("east_west", ["--explain", "maybe"], make_ctx(sys_root=host.sys, proc_root=host.proc))
    assert result.error and "--explain" in result.message()
