"""Network and InfiniBand/RoCE counters from Linux sysfs and procfs (the east_west sensor's only I/O).

Reads, always below the injected roots of the ``Context`` (never a hard-coded ``/sys``):

* ``<sys>/class/net/<if>/statistics/*``, ``speed``, ``operstate``, ``carrier``, ``flags``,
  ``type``, ``carrier_down_count``, and the facts that say what an interface is:
  ``ifindex``/``iflink`` (a stacked device: veth, VLAN, tunnel), the ``device`` link
  (absent on every virtual device), ``bridge/`` and ``brif/`` (a bridge), ``brport/`` and
  ``master`` (a bridge port or bond slave), ``bonding/slaves`` (a bond), ``tun_flags``
  (tun/tap), ``device/infiniband/`` (an RDMA-capable port);
* ``<sys>/class/infiniband/<dev>/device/driver`` (which driver, hence the data-counter unit);
* ``<sys>/class/infiniband/<dev>/ports/<n>/{counters,counters_ext,hw_counters}/*``,
  ``rate``, ``state``, ``phys_state``, ``link_layer``;
* ``<proc>/net/route`` and ``<proc>/net/ipv6_route`` (which interfaces carry a default route);
* ``<proc>/sys/kernel/random/boot_id`` (a reboot resets every counter).

Parsing is pure and separate (``parse_*``), so tests check it on strings and the
sensor on fixture trees. A file that is missing or unreadable is reported per
counter (``problems``), never as an exception: devices such as ``irdma`` or
``nvs_*`` have no ``counters`` folder, and a counter may read "N/A (no PMA)".
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from prtg_ai.core.errors import SensorError

MAX32 = (1 << 32) - 1
ARPHRD_LOOPBACK = 772
ARPHRD_INFINIBAND = 32  # IPoIB netdevs: their traffic is already in the HCA port counters
IFF_UP = 0x1
# Linux's RTF_REJECT: an "unreachable" default route (IPv6 puts one on lo) carries no traffic.
RTF_REJECT = 0x0200

NETDEV_STATS = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "rx_errors", "tx_errors",
                "rx_dropped", "tx_dropped")
# Widths of the IBA PortCounters attributes as the kernel declares them
# (drivers/infiniband/core/sysfs.c, PORT_PMA_ATTR). Data and packet counters are
# 32 bit in the legacy set and 64 bit when the HCA supports extended counters;
# the kernel then shows the 64-bit value under the same name.
IB_COUNTER_BITS = {
    "symbol_error": 16,
    "link_error_recovery": 8,
    "link_downed": 8,
    "port_rcv_errors": 16,
    "port_rcv_remote_physical_errors": 16,
    "port_rcv_switch_relay_errors": 16,
    "port_xmit_discards": 16,
    "port_xmit_constraint_errors": 8,
    "port_rcv_constraint_errors": 8,
    "local_link_integrity_errors": 4,
    "excessive_buffer_overrun_errors": 4,
    "port_xmit_wait": 32,
    "port_xmit_data": 32,
    "port_rcv_data": 32,
    "port_xmit_packets": 32,
    "port_rcv_packets": 32,
}
IB_WIDE = ("port_xmit_data", "port_rcv_data", "port_xmit_packets", "port_rcv_packets")
# Pre-4.5 kernels put the 64-bit extended counters in a separate folder.
IB_EXT = {f"{name}_64": name for name in IB_WIDE}
# RoCE congestion counters of mlx5 (64 bit) that the sensor reports.
HW_COUNTERS = ("np_cnp_sent", "rp_cnp_handled", "np_ecn_marked_roce_packets")

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([GMT])b/sec", re.IGNORECASE)
_RATE_SCALE = {"M": 1e6, "G": 1e9, "T": 1e12}
_STATE = re.compile(r"^\s*(\d+)\s*:?\s*(.*?)\s*$")


# NamedTuples rather than dataclasses: a script sensor pays for class creation on every scan.
class Counter(NamedTuple):
    """One raw counter read.

    Attributes:
        value: the raw value as the kernel shows it (IB data counters in 4-byte words).
        bits: the width at which the counter saturates (IB PMA counters stop at all
            ones); ``None`` for a 64-bit counter that never saturates in practice.
    """

    value: int
    bits: int | None = None


class NetDev(NamedTuple):
    """A network interface from ``/sys/class/net``."""

    name: str
    type: int | None
    operstate: str | None
    carrier: int | None
    flags: int | None
    speed_mbps: int | None
    counters: dict[str, Counter]
    problems: dict[str, str]
    facts: NetFacts | None = None


class NetFacts(NamedTuple):
    """What sysfs says an interface is (the sensor decides its role from these)."""

    ifindex: int | None = None
    iflink: int | None = None
    has_device: bool = False  # a ``device`` link: backed by hardware (PCI, virtio, ...)
    bridge: bool = False  # ``bridge/``: a software bridge (docker0, cni0, virbr0)
    bridge_ports: tuple[str, ...] = ()  # ``brif/`` entries
    brport: bool = False  # ``brport/``: a port of a bridge
    bond_slaves: tuple[str, ...] = ()  # ``bonding/slaves`` (``bonding/`` present: a bond)
    bond: bool = False
    master: str | None = None  # the ``master`` link: the bond or bridge above
    lower: tuple[str, ...] = ()  # ``lower_<if>`` links: devices below (VLAN, bond, bridge)
    tun: bool = False  # ``tun_flags``: a tun/tap device
    rdma: bool = False  # ``device/infiniband/``: the port of an RDMA device (RoCE)


class IbPort(NamedTuple):
    """One port of an RDMA device from ``/sys/class/infiniband``."""

    device: str
    port: int
    link_layer: str | None  # "InfiniBand" or "Ethernet" (RoCE)
    state: int | None
    state_text: str
    phys_state: int | None
    phys_text: str
    rate_text: str | None
    rate_bytes: float | None
    counters: dict[str, Counter]
    hw_counters: dict[str, Counter]
    problems: dict[str, str]
    driver: str | None = None  # kernel driver of the device (``mlx5_core``, ``hfi1``...)

    @property
    def name(self) -> str:
        return f"{self.device}/{self.port}"


# -- parsing (pure) ---------------------------------------------------------

def parse_int(text: str) -> int:
    """Parse a sysfs integer; raise ValueError on anything else ("N/A (no PMA)", "")."""
    value = int(text.strip(), 0) if text.strip().lower().startswith("0x") else int(text.strip())
    if value < 0:
        raise ValueError(f"negative counter {value}")
    return value


def parse_state(text: str) -> tuple[int | None, str]:
    """``"4: ACTIVE"`` -> ``(4, "ACTIVE")``; unparsable -> ``(None, text)``."""
    match = _STATE.match(text)
    if not match:
        return None, text.strip()
    return int(match.group(1)), match.group(2)


def parse_rate(text: str) -> float | None:
    """Link rate in bytes per second from an IB ``rate`` string.

    ``"400 Gb/sec (4X NDR)"`` -> 5e10. The figure is the signalling data rate the
    kernel reports (already net of line coding), so it is the ceiling for data.
    """
    match = _RATE.match(text)
    if not match:
        return None
    bits_per_s = float(match.group(1)) * _RATE_SCALE[match.group(2).upper()]
    return bits_per_s / 8.0 if bits_per_s > 0 else None


def parse_speed(text: str) -> int | None:
    """Ethernet ``speed`` in Mb/s; ``-1`` (link down) or garbage -> None."""
    try:
        value = int(text.strip())
    except ValueError:
        return None
    # 0, -1 and 0xFFFFFFFF (SPEED_UNKNOWN read as unsigned) all mean "not known".
    return value if 0 < value < 0xFFFFFFFF else None


def parse_route(text: str) -> set[str]:
    """Interfaces carrying an IPv4 default route, from ``/proc/net/route``."""
    ifaces: set[str] = set()
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 8:
            continue
        try:
            flags = int(cols[3], 16)
        except ValueError:
            continue
        if cols[1] == "00000000" and cols[7] == "00000000" and not flags & RTF_REJECT:
            ifaces.add(cols[0])
    return ifaces


def parse_ipv6_route(text: str) -> set[str]:
    """Interfaces carrying an IPv6 default route (``::/0``), from ``/proc/net/ipv6_route``."""
    ifaces: set[str] = set()
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 10:
            continue
        try:
            flags = int(cols[8], 16)
        except ValueError:
            continue
        if cols[0] == "0" * 32 and cols[1] == "00" and not flags & RTF_REJECT and cols[9] != "lo":
            ifaces.add(cols[9])
    return ifaces


def ib_counter(name: str, raw: int, extended: bool) -> Counter:
    """Attach the saturation width to an IB counter read.

    A data/packet counter whose width is unknown is 32 bit only while it has never
    shown a value above 2**32 - 1; exactly all ones means a legacy counter that
    has saturated (it would be a one-in-four-billion coincidence for a 64-bit one).
    """
    bits = IB_COUNTER_BITS.get(name)
    if name in IB_WIDE and (extended or raw > MAX32):
        bits = None
    return Counter(raw, bits)


# -- reading ----------------------------------------------------------------
# sysfs exists only on Linux, so paths below a root are joined as strings with "/":
# a scan reads a few hundred small files and pathlib's objects would cost more than the reads.

def _read(path: str) -> str:
    with open(path, "rb") as fh:
        return fh.read().decode("ascii", "replace")


def _read_opt(path: str) -> str | None:
    try:
        return _read(path)
    except OSError:
        return None


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def check_sysfs(sys_root: Path) -> None:
    """Raise SensorError unless ``sys_root`` looks like a Linux sysfs with network classes."""
    if not (Path(sys_root) / "class" / "net").is_dir():
        raise SensorError(
            f"No network interfaces under {Path(sys_root) / 'class' / 'net'}: the east_west sensor reads Linux sysfs.",
            "Run it on the Linux GPU node (SSH Script Advanced, or the prtg-ai agent polled by "
            "HTTP Data Advanced), not on a Windows probe; in a container, mount the host's /sys.",
        )


def list_netdevs(sys_root: Path) -> list[str]:
    """Names of the interfaces in ``<sys>/class/net`` (sorted).

    Only directories (or links to them) are interfaces: the bonding driver puts a
    regular file ``bonding_masters`` beside them.
    """
    try:
        return sorted(p.name for p in (Path(sys_root) / "class" / "net").iterdir() if p.is_dir())
    except OSError as exc:
        raise SensorError(f"Cannot list {Path(sys_root) / 'class' / 'net'} ({_why(exc)}).",
                          "Check that sysfs is mounted and readable.") from None


def list_hcas(sys_root: Path) -> list[str]:
    """Names of the RDMA devices in ``<sys>/class/infiniband`` (sorted; empty when none)."""
    base = Path(sys_root) / "class" / "infiniband"
    try:
        return sorted(p.name for p in base.iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise SensorError(f"Cannot list {base} ({_why(exc)}).", "Check that sysfs is readable.") from None


def physical_nics(sys_root: Path) -> list[str]:
    """Interfaces in ``<sys>/class/net`` backed by a device (``device`` link): no veth, bridge or loopback."""
    base = Path(sys_root) / "class" / "net"
    try:
        return sorted(p.name for p in base.iterdir() if (p / "device").exists())
    except OSError:
        return []


def _opt_int(text: str | None, base: int = 10) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip(), base)
    except ValueError:
        return None


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def read_facts(sys_root: Path, name: str) -> NetFacts:
    """What the interface is, from sysfs entries that exist only for that kind of device."""
    base = f"{sys_root}/class/net/{name}"
    entries = _listdir(base)
    master = None
    if "master" in entries:
        try:
            master = os.path.basename(os.readlink(f"{base}/master").rstrip("/")) or None
        except OSError:
            master = None
    slaves = (_read_opt(f"{base}/bonding/slaves") or "").split() if "bonding" in entries else []
    return NetFacts(
        ifindex=_opt_int(_read_opt(f"{base}/ifindex")),
        iflink=_opt_int(_read_opt(f"{base}/iflink")),
        has_device="device" in entries,
        bridge="bridge" in entries,
        bridge_ports=tuple(_listdir(f"{base}/brif")) if "brif" in entries else (),
        brport="brport" in entries,
        bond_slaves=tuple(slaves),
        bond="bonding" in entries,
        master=master,
        lower=tuple(e[len("lower_"):] for e in entries if e.startswith("lower_")),
        tun="tun_flags" in entries,
        rdma="device" in entries and os.path.isdir(f"{base}/device/infiniband"),
    )


def read_netdev(sys_root: Path, name: str, skip_types: Iterable[int] = (), counters: bool = True) -> NetDev:
    """Read one interface's identity facts, state, speed and statistics counters.

    Args:
        sys_root: where sysfs is mounted.
        name: the interface.
        skip_types: ARPHRD types whose counters are not wanted (loopback, IPoIB):
            only their type is read, which saves a dozen reads per interface.
        counters: False reads the facts and states only (``read_stats`` adds the counters).
    """
    base = f"{sys_root}/class/net/{name}"
    dev_type = _opt_int(_read_opt(f"{base}/type"))
    if dev_type is not None and dev_type in skip_types:
        return NetDev(name, dev_type, None, None, None, None, {}, {})
    found, problems = read_stats(sys_root, name) if counters else ({}, {})
    operstate = _read_opt(f"{base}/operstate")
    speed = _read_opt(f"{base}/speed")  # EINVAL while the link is down
    return NetDev(
        name=name,
        type=dev_type,
        operstate=operstate.strip() if operstate is not None else None,
        carrier=_opt_int(_read_opt(f"{base}/carrier")),  # EINVAL while administratively down
        flags=_opt_int(_read_opt(f"{base}/flags"), 16),
        speed_mbps=parse_speed(speed) if speed is not None else None,
        counters=found,
        problems=problems,
        facts=read_facts(sys_root, name),
    )


def read_stats(sys_root: Path, name: str) -> tuple[dict[str, Counter], dict[str, str]]:
    """An interface's statistics counters, and per counter why it could not be read."""
    base = f"{sys_root}/class/net/{name}"
    counters: dict[str, Counter] = {}
    problems: dict[str, str] = {}
    for stat in (*NETDEV_STATS, "carrier_down_count"):
        path = f"{base}/{stat}" if stat == "carrier_down_count" else f"{base}/statistics/{stat}"
        try:
            counters[stat] = Counter(parse_int(_read(path)))
        except FileNotFoundError:
            if stat != "carrier_down_count":  # kernels before 4.16 lack it
                problems[stat] = "missing"
        except OSError as exc:
            problems[stat] = _why(exc)
        except ValueError:
            problems[stat] = "not a number"
    return counters, problems


def list_ports(sys_root: Path, device: str) -> list[int]:
    """Port numbers of an RDMA device."""
    try:
        names = [p.name for p in (Path(sys_root) / "class" / "infiniband" / device / "ports").iterdir()]
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def _read_counter_dir(folder: str, names: Iterable[str], problems: dict[str, str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for name in names:
        try:
            found[name] = parse_int(_read(f"{folder}/{name}"))
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems[name] = _why(exc)
        except ValueError:
            problems[name] = "not a number"
    return found


def read_ib_port(sys_root: Path, device: str, port: int) -> IbPort:
    """Read one RDMA port: link layer, states, rate and the counters the sensor uses."""
    base = f"{sys_root}/class/infiniband/{device}/ports/{port}"
    problems: dict[str, str] = {}
    link_layer = (_read_opt(f"{base}/link_layer") or "").strip() or None
    raw = _read_counter_dir(f"{base}/counters", IB_COUNTER_BITS, problems)
    ext: dict[str, int] = {}
    if os.path.isdir(f"{base}/counters_ext"):  # pre-4.5 kernels only: one stat instead of four misses
        ext = _read_counter_dir(f"{base}/counters_ext", IB_EXT, problems)
    for ext_name, name in IB_EXT.items():
        if ext_name in ext:
            raw[name] = ext[ext_name]
            problems.pop(name, None)
    counters = {name: ib_counter(name, value, f"{name}_64" in ext) for name, value in raw.items()}
    for name in IB_WIDE:
        if name not in counters and name not in problems:
            problems[name] = "missing"
    hw: dict[str, Counter] = {}
    if link_layer == "Ethernet":  # the congestion-control counters exist on RoCE ports only
        hw = {name: Counter(value) for name, value in
              _read_counter_dir(f"{base}/hw_counters", HW_COUNTERS, problems).items()}
    state, state_text = parse_state(_read_opt(f"{base}/state") or "")
    phys, phys_text = parse_state(_read_opt(f"{base}/phys_state") or "")
    rate_text = _read_opt(f"{base}/rate")
    driver = None
    try:
        driver = os.path.basename(os.readlink(f"{sys_root}/class/infiniband/{device}/device/driver").rstrip("/"))
    except OSError:
        pass
    return IbPort(
        device=device,
        port=port,
        link_layer=link_layer,
        state=state,
        state_text=state_text,
        phys_state=phys,
        phys_text=phys_text,
        rate_text=rate_text.strip() if rate_text else None,
        rate_bytes=parse_rate(rate_text) if rate_text else None,
        counters=counters,
        hw_counters=hw,
        problems=problems,
        driver=driver or None,
    )


def read_default_route_ifaces(proc_root: Path) -> set[str]:
    """Interfaces that carry an IPv4 or IPv6 default route (empty when procfs is absent)."""
    ifaces: set[str] = set()
    text = _read_opt(f"{proc_root}/net/route")
    if text:
        ifaces |= parse_route(text)
    text6 = _read_opt(f"{proc_root}/net/ipv6_route")
    if text6:
        ifaces |= parse_ipv6_route(text6)
    return ifaces


def read_boot_id(proc_root: Path) -> str | None:
    """This boot's random id; it changes on every reboot (and with it every counter)."""
    text = _read_opt(f"{proc_root}/sys/kernel/random/boot_id")
    return (text.strip() or None) if text else None
