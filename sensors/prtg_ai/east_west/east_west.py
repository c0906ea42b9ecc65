"""``east_west``: fabric traffic between training nodes (InfiniBand / RoCE HCA ports and fabric NICs).

Reads (through ``prtg_ai.backends.netdev``, below the context's injected roots):
``/sys/class/infiniband/<dev>/ports/<n>/`` counters, ``hw_counters``, ``rate``,
``state``, ``phys_state`` and ``link_layer``; ``/sys/class/net/<if>/statistics/*``,
``speed``, ``operstate``, ``carrier`` and ``flags``; ``/proc/net/route`` (and
``ipv6_route``) for the default route; ``/proc/sys/kernel/random/boot_id``.

Needs: Linux with sysfs (on a Windows probe the sensor fails with a hint: run it on
the GPU node over SSH or through the agent), read access to sysfs (no root), and a
writable state folder: rates are computed here from the previous scan's counters
over the real elapsed time, never by PRTG's Difference mode.

Classification by role (said in the message every scan; ``--explain`` lists every
interface with its role and the reason), decided from sysfs facts, never from names:

* only directories under ``class/net`` are interfaces (``bonding_masters`` is a file);
* fabric = every InfiniBand / Omni-Path port and every RoCE port (``link_layer``
  Ethernet) of the devices ``--hca`` selects (default: all); the interfaces
  ``--interface`` names; RDMA-capable netdevs (``device/infiniband/`` exists); and by
  default any other hardware NIC or bond without a default route;
* front-end = the interfaces carrying a default route and every device below them
  (a bond's slaves, a bridge's hardware port, a VLAN's parent); with ``--interface``,
  the hardware NICs not named;
* ignored unless named: virtual interfaces (a ``bridge/`` folder: docker0, cni0,
  virbr0; ``tun_flags``: tun/tap; ``iflink`` other than ``ifindex``: veth, VLAN,
  macvlan; no ``device`` link: dummy, ifb, vxlan/flannel/calico/weave overlays),
  loopback, a bond without slaves, a hardware port that is down and never
  carried a byte, and an RDMA port whose physical state is Disabled (switched off by
  the admin) and never carried a byte (a spare port does not alarm; an enabled
  RDMA port that is down does, even if it never carried traffic: a rail that never
  came up is a fault);
* a bond slave takes its bond's role and is counted once, as the bond (the bond's
  counters are the sum of its slaves'); naming a slave with ``--interface`` names
  its bond;
* IPoIB interfaces (``ib0``...) are skipped unless named: their traffic is already in
  their HCA port's counters. RoCE HCA counters count RDMA traffic only (mlx5 vport
  counters), the RoCE netdev counts the rest, so both are fabric and nothing is
  counted twice.

Counter rules: IB data counters are 4-byte words (x4), Omni-Path (``hfi1``) data
counters are 8-byte flits (x8, ``DATA_UNIT``); the 64-bit extended counters
are preferred; a 32-bit data counter stuck at all ones is saturated (no rate, said
in the message); error counters (4-16 bit) are reported as changes per scan, never
as rates. The first scan, a reboot (boot id changed), a counter reset (new < old)
and a clock step give "collecting baseline" or omit the value, never a negative or
absurd rate (``prtg_ai.maths.counters``). Every port left out of a total in a scan (no
rate: saturated, reset, a rate above the link speed, unreadable) is named in the
message with the reason.

Aggregation rule (PRTG allows 50 channels): per-port channels (RX, TX, Link State,
Physical State) for the first 8 fabric ports (InfiniBand/RoCE ports by device and
port, then fabric NICs by name; a port keeps its Script v2 slot across scans), so
an 8-HCA node shows every rail; totals always cover every fabric port; everything
else per port (utilisation, packets, errors, discards, link-down events, symbol
errors, transmit wait, RoCE CNP/ECN) is summed over the fabric, or taken as the
worst port for utilisation, and the message names the ports concerned. At most
8 x 4 + 17 totals + 1 execution time = 50 channels.

NVLink: with ``--nvlink auto`` (the default) and an NVIDIA driver loaded
(``/proc/driver/nvidia`` exists, so hosts without GPUs never load NVML), NVLink TX/RX
totals come from NVML field values (aggregate scope, cumulative KiB), turned into
rates per GPU and summed: a GPU that misses a scan cannot fake a jump.
``--nvlink on`` makes a missing NVML an error; ``off`` never reads it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from prtg_ai.backends import netdev, procinfo
from prtg_ai.backends.netdev import Counter
from prtg_ai.core.errors import ConfigError, SensorError
from prtg_ai.core.params import Param
from prtg_ai.core.sensor import Sensor
from prtg_ai.core.state import StateStore
from prtg_ai.maths.counters import RateResult, counter_delta, counter_rate, is_saturated
from prtg_ai.prtg.model import SensorResult
from prtg_ai.prtg.units import DECIMAL_BITS, human_size

MAX_PORT_CHANNELS = 8
IB_DATA_WORD = 4  # port_rcv_data / port_xmit_data count octets divided by 4
# Sanity ceiling for NICs whose speed is nominal (veth, bonds, bridges can exceed it).
NIC_MAX_BYTES_PER_S = 1.6e12 / 8
SHOWN_NAMES = 6

# prtgai.net.linkstate (IB PortState; NIC operstate mapped onto it)
LINK_UNKNOWN, LINK_DOWN, LINK_INIT, LINK_ARMED, LINK_ACTIVE, LINK_ACTIVE_DEFER = range(6)
# prtgai.net.physstate (IB PortPhysicalState; NIC flags/carrier mapped onto it)
PHYS_UNKNOWN, PHYS_SLEEP, PHYS_POLLING, PHYS_DISABLED, PHYS_TRAINING, PHYS_LINKUP = range(6)
PHYS_MAX = 7  # 6 LinkErrorRecovery, 7 PhyTest
_OPERSTATE = {"up": LINK_ACTIVE, "down": LINK_DOWN, "lowerlayerdown": LINK_DOWN,
              "notpresent": LINK_DOWN, "dormant": LINK_INIT}

# Normalised counter names -> the raw names per port kind.
IB_MAP = {
    "rx_bytes": "port_rcv_data", "tx_bytes": "port_xmit_data",
    "rx_packets": "port_rcv_packets", "tx_packets": "port_xmit_packets",
    "link_downed": "link_downed", "symbol_error": "symbol_error", "xmit_wait": "port_xmit_wait",
    "err.rcv": "port_rcv_errors", "err.remote_phys": "port_rcv_remote_physical_errors",
    "err.switch_relay": "port_rcv_switch_relay_errors", "err.link_integrity": "local_link_integrity_errors",
    "err.buffer_overrun": "excessive_buffer_overrun_errors", "err.link_recovery": "link_error_recovery",
    "disc.xmit": "port_xmit_discards", "disc.xmit_constraint": "port_xmit_constraint_errors",
    "disc.rcv_constraint": "port_rcv_constraint_errors",
}
HW_MAP = {"cnp_sent": "np_cnp_sent", "cnp_handled": "rp_cnp_handled", "ecn_marked": "np_ecn_marked_roce_packets"}
NIC_MAP = {
    "rx_bytes": "rx_bytes", "tx_bytes": "tx_bytes", "rx_packets": "rx_packets", "tx_packets": "tx_packets",
    "err.rx": "rx_errors", "err.tx": "tx_errors", "disc.rx": "rx_dropped", "disc.tx": "tx_dropped",
    "link_downed": "carrier_down_count",
}
RATE_KEYS = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "xmit_wait", "cnp_sent", "cnp_handled", "ecn_marked")
CHANGE_GROUPS = {"errors": "err.", "discards": "disc.", "link_downed": "link_downed", "symbol_errors": "symbol_error"}


# NamedTuples rather than dataclasses: a script sensor pays for class creation on every scan.
class Port(NamedTuple):
    """A port as the sensor sees it: identity, role, states, link speed and counters."""

    key: str  # state key, unique across kinds: "ib:mlx5_0/1", "net:eth1"
    label: str  # fills {instance} in channel names
    kind: str  # "InfiniBand", "RoCE" or "NIC"
    role: str  # "fabric" or "frontend"
    why: str  # why it has that role, for the message
    link: int
    phys: int
    state_text: str
    speed: float | None  # bytes per second
    physical_ceiling: bool  # True when ``speed`` is a hard limit (HCA ports)
    counters: dict[str, Counter]
    scale: dict[str, int]  # IB data counters count 4-byte words
    problems: dict[str, str]


class Reading(NamedTuple):
    """One port's rates and changes between two scans (filled by ``evaluate``)."""

    port: Port
    rates: dict[str, float]
    missing: dict[str, str]  # rate key -> why no rate
    changes: dict[str, int]  # change group -> count
    saturated: list[str]  # raw counter names stuck at all ones
    resets: list[str]


# -- pure maths -------------------------------------------------------------

def saturating_rate(previous: int | None, previous_t: float, current: Counter, current_t: float,
                    scale: int = 1, max_rate: float | None = None) -> RateResult:
    """Rate per second of a counter that saturates (IB PMA) or never wraps (64 bit).

    IB PMA counters stop at all ones instead of wrapping, so unlike
    ``counter_rate(bits=32)`` a decrease is always a reset, never a wrap.
    """
    if current.bits and is_saturated(current.value, current.bits):
        return RateResult(None, f"{current.bits}-bit counter saturated")
    if previous is None:
        return RateResult(None, "no previous sample")
    return counter_rate(previous * scale, previous_t, current.value * scale, current_t,
                        bits=None, max_rate=max_rate)


def counter_change(previous: int | None, current: Counter) -> tuple[int | None, str | None]:
    """Increase of an event counter since the previous scan, and why it may be partial.

    After a reset (new < old: link flap, driver reload, ``perfquery -R``) the events
    since the reset are the current value. A counter at all ones has saturated and
    hides further events; the change up to saturation is still given.
    """
    if previous is None:
        return None, "no previous sample"
    delta, _ = counter_delta(previous, current.value)
    if delta is None:
        return current.value, "reset"
    change = current.value - previous  # exact: counter_delta's float loses 64-bit precision
    if current.bits and is_saturated(current.value, current.bits):
        return change, "saturated"
    return change, None


def evaluate(port: Port, previous: dict[str, int] | None, previous_t: float, now: float) -> Reading:
    """Rates and changes of one port from its previous raw counters (None: baseline)."""
    reading = Reading(port, {}, {}, {}, [], [])
    prev = previous or {}
    ceiling = port.speed if port.physical_ceiling else None
    for key in RATE_KEYS:
        counter = port.counters.get(key)
        if counter is None:
            continue
        scale = port.scale.get(key, 1)
        max_rate = None
        if key in ("rx_bytes", "tx_bytes"):
            # An HCA's rate is a hard ceiling; a NIC's speed is nominal for virtual devices.
            max_rate = ceiling if port.physical_ceiling else NIC_MAX_BYTES_PER_S
        result = saturating_rate(_int(prev.get(key)), previous_t, counter, now, scale, max_rate)
        if result.value is None:
            reading.missing[key] = result.reason or "no rate"
            old = _int(prev.get(key))
            if result.reason and result.reason.startswith("rate above") and old is not None and now > previous_t:
                computed = (counter.value - old) * scale / (now - previous_t)
                limit = "link speed" if port.physical_ceiling else "sanity ceiling for NICs"
                reading.missing[key] = (f"computed {_rate_text(computed)}, above the {limit} "
                                        f"{_rate_text(max_rate)}: counter reset or clock step")
            if result.reason and "saturated" in result.reason:
                reading.saturated.append(_raw_name(port, key))
            elif result.reason == "counter reset":
                reading.resets.append(_raw_name(port, key))
        else:
            reading.rates[key] = result.value
    for group, prefix in CHANGE_GROUPS.items():
        keys = [k for k in port.counters if k == prefix or (prefix.endswith(".") and k.startswith(prefix))]
        total = None
        for key in sorted(keys):
            change, why = counter_change(_int(prev.get(key)), port.counters[key])
            if change is None:
                continue
            total = (total or 0) + change
            if why == "saturated":
                reading.saturated.append(_raw_name(port, key))
            elif why == "reset":
                reading.resets.append(_raw_name(port, key))
        if total is not None:
            reading.changes[group] = total
    return reading


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _raw_name(port: Port, key: str) -> str:
    table = NIC_MAP if port.kind == "NIC" else {**IB_MAP, **HW_MAP}
    return table.get(key, key)


def assign_slots(keys: Sequence[str], previous: dict, size: int = MAX_PORT_CHANNELS) -> dict[str, int]:
    """Give ports stable per-port channel slots (the Script v2 id offset).

    A port keeps its slot across scans; a new port takes the lowest free slot, or
    the slot of a port that is gone when none is free; ports beyond ``size`` get no
    slot (totals only).
    """
    slots = {k: i for k, i in previous.items()
             if isinstance(k, str) and isinstance(i, int) and 0 <= i < size}
    # Two keys claiming one slot (a hand-edited file) keep the first.
    seen: set[int] = set()
    slots = {k: i for k, i in slots.items() if not (i in seen or seen.add(i))}
    for key in keys:
        if key in slots:
            continue
        free = sorted(set(range(size)) - set(slots.values()))
        if not free:
            gone = sorted((i, k) for k, i in slots.items() if k not in keys)
            if not gone:
                continue
            del slots[gone[0][1]]
            free = [gone[0][0]]
        slots[key] = free[0]
    return slots


# -- classification (pure) --------------------------------------------------

def select(names: Sequence[str], patterns: Sequence[str] | None, param: str, what: str) -> list[str]:
    """Names matching any pattern; ConfigError naming ``param`` for a pattern matching none."""
    if not patterns:
        return list(names)
    chosen: list[str] = []
    for pattern in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            here = _shown(names) if names else "none"
            raise ConfigError(param, f"{pattern!r} matches no {what} on this host (found: {here})")
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def link_of_operstate(operstate: str | None) -> int:
    return _OPERSTATE.get((operstate or "").lower(), LINK_UNKNOWN)


def phys_of_nic(dev: netdev.NetDev) -> int:
    if dev.flags is not None and not dev.flags & netdev.IFF_UP:
        return PHYS_DISABLED
    if dev.carrier == 1:
        return PHYS_LINKUP
    if dev.carrier == 0:
        return PHYS_POLLING
    return PHYS_UNKNOWN


def port_of_ib(ib: netdev.IbPort) -> Port:
    kind = {"infiniband": "InfiniBand", "ethernet": "RoCE"}.get((ib.link_layer or "").lower(), "InfiniBand")
    if kind == "InfiniBand" and data_unit(ib) == DATA_UNIT["hfi1"]:
        kind = "Omni-Path"
    counters = {key: ib.counters[raw] for key, raw in IB_MAP.items() if raw in ib.counters}
    counters.update({key: ib.hw_counters[raw] for key, raw in HW_MAP.items() if raw in ib.hw_counters})
    problems = {raw: why for raw, why in ib.problems.items()}
    return Port(
        key=f"ib:{ib.name}", label=ib.name, kind=kind, role="fabric",
        why=kind,
        link=ib.state if ib.state in range(1, 6) else LINK_UNKNOWN,
        phys=ib.phys_state if ib.phys_state in range(1, PHYS_MAX + 1) else PHYS_UNKNOWN,
        state_text=f"{ib.state_text or '?'}, {ib.phys_text or '?'}",
        speed=ib.rate_bytes, physical_ceiling=True, counters=counters,
        scale={"rx_bytes": data_unit(ib), "tx_bytes": data_unit(ib)}, problems=problems,
    )


def port_of_nic(dev: netdev.NetDev, role: str, why: str) -> Port:
    counters = {key: dev.counters[raw] for key, raw in NIC_MAP.items() if raw in dev.counters}
    return Port(
        key=f"net:{dev.name}", label=dev.name, kind="NIC", role=role, why=why,
        link=link_of_operstate(dev.operstate), phys=phys_of_nic(dev),
        state_text=dev.operstate or "?",
        speed=dev.speed_mbps * 125_000.0 if dev.speed_mbps else None,
        physical_ceiling=False, counters=counters, scale={}, problems=dict(dev.problems),
    )


# Data counters of RDMA ports: octets divided by this, per driver family. IB PMA
# PortXmitData/PortRcvData count 4-byte words; Omni-Path's hfi1 answers the same
# counters with its flit counters (hfi1 mad.c: C_DC_XMIT_FLITS / C_DC_RCV_FLITS), and an
# OPA flit carries 64 bits of data (the 65th bit is the flit type).
DATA_UNIT = {"hfi1": 8}


def data_unit(ib: netdev.IbPort) -> int:
    """Bytes per count of an RDMA port's data counters (driver link first, device name second)."""
    family = ib.driver or ib.device.split("_")[0]
    return DATA_UNIT.get(family, IB_DATA_WORD)


class Decision(NamedTuple):
    """How one interface is treated: ``fabric``, ``frontend`` or ``skip``, and why."""

    name: str
    role: str
    why: str


def virtual_kind(dev: netdev.NetDev) -> str | None:
    """What makes an interface virtual (from sysfs facts, not its name), or None for hardware.

    Bonds are not virtual here: a bond is the sum of its hardware slaves.
    """
    f = dev.facts
    if f is None:
        return None
    if f.bond:
        return None
    if f.bridge:
        return "bridge"
    if f.tun:
        return "tun/tap"
    if f.ifindex is not None and f.iflink is not None and f.iflink not in (0, f.ifindex):
        return "veth/VLAN, stacked on another device"
    if not f.has_device:
        return "virtual, no hardware device"
    return None


def _never_used(dev: netdev.NetDev) -> bool:
    """Not up and not a byte ever counted: a spare port nobody cabled or enabled."""
    admin_down = dev.flags is not None and not dev.flags & netdev.IFF_UP
    down = admin_down or link_of_operstate(dev.operstate) != LINK_ACTIVE
    rx, tx = dev.counters.get("rx_bytes"), dev.counters.get("tx_bytes")
    return down and rx is not None and tx is not None and rx.value == 0 and tx.value == 0


def _topology(devs: Sequence[netdev.NetDev]) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Who sits on whom: each interface's master (bond, bridge), and each one's lower devices."""
    by_index = {d.facts.ifindex: d.name for d in devs if d.facts and d.facts.ifindex is not None}
    masters: dict[str, str] = {}
    lowers: dict[str, set[str]] = {d.name: set() for d in devs}
    for d in devs:
        f = d.facts
        if f is None:
            continue
        for low in (*f.bond_slaves, *f.bridge_ports, *f.lower):
            lowers[d.name].add(low)
            masters.setdefault(low, d.name)
        if f.master:
            masters.setdefault(d.name, f.master)
            lowers.setdefault(f.master, set()).add(d.name)
        if f.ifindex is not None and f.iflink not in (None, 0, f.ifindex) and f.iflink in by_index:
            lowers[d.name].add(by_index[f.iflink])
    return masters, lowers


def _front_end(default_route: set[str], lowers: dict[str, set[str]]) -> dict[str, str]:
    """Each front-end interface with the default-route interface it serves.

    The default route's devices and everything below them (bond slaves, a bridge's
    hardware port, a VLAN's parent) carry front-end traffic.
    """
    front: dict[str, str] = {}
    todo = [(n, n) for n in sorted(default_route)]
    while todo:
        name, via = todo.pop()
        if name in front:
            continue
        front[name] = via
        todo.extend((low, via) for low in sorted(lowers.get(name, ())))
    return front


def _in_bond(dev: netdev.NetDev, masters: dict[str, str], by_name: dict[str, netdev.NetDev]) -> str | None:
    """The bond ``dev`` is a slave of, or None."""
    master = masters.get(dev.name)
    master_dev = by_name.get(master) if master else None
    if master_dev is not None and master_dev.facts is not None and master_dev.facts.bond:
        return master
    return None


def _role(dev: netdev.NetDev, named: Sequence[str] | None, bond: str | None,
          lowers: dict[str, set[str]], front: dict[str, str]) -> tuple[str, str] | None:
    """(role, why) of one interface, or None for loopback (never listed); the rules in order."""
    name, f = dev.name, dev.facts
    if dev.type == netdev.ARPHRD_LOOPBACK or name == "lo":
        return None
    if dev.type == netdev.ARPHRD_INFINIBAND and not (named and name in named):
        return "skip", "IPoIB, counted in its HCA port"
    if bond is not None:
        # counted once, as the bond (the bond's counters are the sum of its slaves')
        return "skip", f"in bond {bond}, counted there"
    if named is not None and name in named:
        return "fabric", "named"
    kind = virtual_kind(dev)
    if kind is not None:
        return "skip", kind
    if f is not None and f.bond and not f.bond_slaves and not lowers.get(name):
        return "skip", "bond without slaves"
    if name in front:
        via = front[name]
        return "frontend", "default route" if via == name else f"default route via {via}"
    if named is not None:  # the admin chose the fabric: the rest is front-end
        return "frontend", "not named"
    if f is not None and f.rdma:
        return "fabric", "RoCE netdev"
    if _never_used(dev):
        return "skip", "down and never carried traffic"
    return "fabric", "hardware, no default route"


def decide_roles(devs: Sequence[netdev.NetDev], named: Sequence[str] | None,
                 default_route: set[str]) -> list[Decision]:
    """The role of every interface (pure; the rules are the module docstring's).

    Args:
        devs: the host's interfaces, with facts; counters are needed for the hardware ones.
        named: the interfaces ``--interface`` selected, or None for the default rule.
        default_route: interfaces carrying a default route.
    """
    by_name = {d.name: d for d in devs}
    masters, lowers = _topology(devs)
    if named is not None:
        # naming a bond slave names its bond: the slave is only counted there
        named = list(named) + [masters[n] for n in named if n in masters and masters[n] in by_name
                               and (by_name[masters[n]].facts or netdev.NetFacts()).bond]
    front = _front_end(default_route, lowers)
    out: list[Decision] = []
    for dev in sorted(devs, key=lambda d: d.name):
        role = _role(dev, named, _in_bond(dev, masters, by_name), lowers, front)
        if role is not None:
            out.append(Decision(dev.name, *role))
    return out


def classify(devs: Iterable[netdev.NetDev], ib_ports: Iterable[netdev.IbPort], named: Sequence[str] | None,
             default_route: set[str]) -> tuple[list[Port], list[str]]:
    """Ports by role, and the interfaces skipped (with why).

    Args:
        devs: the host's interfaces.
        ib_ports: the ports of the selected RDMA devices (all fabric).
        named: the interfaces ``--interface`` selected, or None for the default rule.
        default_route: interfaces carrying a default route.
    """
    devs = list(devs)
    by_name = {d.name: d for d in devs}
    ports: list[Port] = []
    skipped: list[str] = []
    for ib in sorted(ib_ports, key=lambda p: (p.device, p.port)):
        data = [ib.counters.get(n) for n in ("port_rcv_data", "port_xmit_data")]
        if ib.phys_state == PHYS_DISABLED and all(c is not None and c.value == 0 for c in data):
            # switched off by the admin and never used: a spare port, not a fault
            skipped.append(f"{ib.name} (disabled and never carried traffic)")
            continue
        ports.append(port_of_ib(ib))
    for decision in decide_roles(devs, named, default_route):
        if decision.role == "skip":
            skipped.append(f"{decision.name} ({decision.why})")
        else:
            ports.append(port_of_nic(by_name[decision.name], decision.role, decision.why))
    return ports, skipped


def _shown(names: Sequence[str], limit: int = SHOWN_NAMES) -> str:
    names = list(names)
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" and {len(names) - limit} more"


def _rate_text(bytes_per_s: float) -> str:
    return human_size(bytes_per_s * 8, DECIMAL_BITS, 1000.0, "/s")


def _sanitise_previous(data: dict) -> dict[str, dict[str, int]]:
    ports = data.get("ports")
    if not isinstance(ports, dict):
        return {}
    return {k: {n: v for n, v in c.items() if _int(v) is not None}
            for k, c in ports.items() if isinstance(k, str) and isinstance(c, dict)}


NVLINK_MAX_BYTES_PER_S = 2e12  # per GPU and direction, above NVLink 5's 900 GB/s: a bound, not a speed


def nvlink_rates(previous: dict, previous_t: float, current: dict[str, tuple[int, int]],
                 now: float) -> tuple[float, float] | None:
    """Summed NVLink (TX, RX) bytes per second over the GPUs present in both scans."""
    tx = rx = 0.0
    counted = 0
    for key, (cur_tx, cur_rx) in current.items():
        old = previous.get(key) if isinstance(previous, dict) else None
        if not isinstance(old, list) or len(old) != 2:
            continue
        rate_tx = counter_rate(int(old[0]) * 1024, previous_t, cur_tx * 1024, now, max_rate=NVLINK_MAX_BYTES_PER_S)
        rate_rx = counter_rate(int(old[1]) * 1024, previous_t, cur_rx * 1024, now, max_rate=NVLINK_MAX_BYTES_PER_S)
        if rate_tx.value is None or rate_rx.value is None:
            continue  # a reset GPU (driver reload) rejoins the total next scan
        tx += rate_tx.value
        rx += rate_rx.value
        counted += 1
    return (tx, rx) if counted else None


# -- the sensor ---------------------------------------------------------------

def _require_readable(fabric: list[Port], sys_root) -> None:
    """Fail the scan when fabric ports exist but none has a readable traffic counter."""
    unreadable = [p for p in fabric if "rx_bytes" not in p.counters and "tx_bytes" not in p.counters]
    if fabric and len(unreadable) == len(fabric):
        detail = "; ".join(f"{p.label}: " + ", ".join(f"{k} {v}" for k, v in sorted(p.problems.items())[:3])
                           for p in unreadable[:4])
        raise SensorError(f"No fabric port has readable traffic counters ({detail}).",
                          "Check the HCA driver (mlx5_core/ib_core) and read access to "
                          f"{sys_root}/class/infiniband and {sys_root}/class/net.")


class EastWestSensor(Sensor):
    id = "east_west"
    title = "East-west fabric traffic"
    summary = ("Fabric (InfiniBand / RoCE / named NICs) and front-end traffic rates, link states, "
               "errors and congestion of a training node.")
    interval = 60
    params = (
        Param("interface", "glob", "fabric NICs by name or glob, also comma-separated "
              "(default: every non-loopback interface without a default route)",
              multiple=True, default=None, state_key=True, metavar="NAME|GLOB"),
        Param("hca", "glob", "RDMA devices to watch, by name or glob, also comma-separated "
              "(default: every device in /sys/class/infiniband)",
              multiple=True, default=None, state_key=True, metavar="NAME|GLOB"),
        Param("nvlink", "choice", "NVLink totals through NVML: auto (when an NVIDIA driver is loaded), on, off",
              default="auto", choices=("auto", "on", "off"), metavar="auto|on|off"),
        Param("explain", "flag", "list every interface and port in the message with the role it got and why",
              default=False, metavar="yes|no"),
    )

    def run(self) -> SensorResult:
        sys_root, proc_root = self.ctx.sys_root, self.ctx.proc_root
        netdev.check_sysfs(sys_root)
        devs, named = self._read_interfaces(sys_root)
        hcas = netdev.list_hcas(sys_root)
        chosen_hcas = select(hcas, self.values.get("hca"), "hca", "RDMA device") if self.values.get("hca") else hcas
        ib_ports = [netdev.read_ib_port(sys_root, d, p) for d in chosen_hcas for p in netdev.list_ports(sys_root, d)]
        default_route = netdev.read_default_route_ifaces(proc_root)
        boot_id = netdev.read_boot_id(proc_root)
        ports, skipped = classify(devs, ib_ports, named, default_route)
        nvlink, nvlink_note = self._read_nvlink(proc_root)
        fabric = [p for p in ports if p.role == "fabric"]
        frontend = [p for p in ports if p.role == "frontend"]
        _require_readable(fabric, sys_root)

        result = SensorResult()
        baseline, slots, readings, nvlink_rate = self._advance(result, ports, fabric, boot_id, nvlink)
        result.text = self._classification_text(fabric, frontend, skipped)
        if baseline:
            result.note(f"Collecting baseline ({baseline}): rates and changes appear from the next scan")
        self._totals(result, fabric, frontend, readings, baseline is not None)
        if nvlink_rate is not None:
            result.add(self.channel("nvlink_tx", round(nvlink_rate[0])))
            result.add(self.channel("nvlink_rx", round(nvlink_rate[1])))
            result.note(f"NVLink ({len(nvlink)} GPU(s)) TX {_rate_text(nvlink_rate[0])}, RX {_rate_text(nvlink_rate[1])}")
        if nvlink_note:
            result.note(nvlink_note)
        self._ports(result, fabric, slots, readings)
        self._port_notes(result, fabric, readings, baseline is not None)
        self._left_out(result, fabric + frontend, readings, baseline is not None)
        if self.values.get("explain"):
            result.note(self._explain(ports, skipped))
        return result

    def _read_interfaces(self, sys_root) -> tuple[list[netdev.NetDev], list[str] | None]:
        """Every interface with its facts (and counters where they can count), and the named ones or None."""
        names = netdev.list_netdevs(sys_root)
        candidates = [n for n in names if n != "lo"]
        named = select(candidates, self.values.get("interface"), "interface", "interface") \
            if self.values.get("interface") else None
        # Loopback and IPoIB counters are not used unless named: skip reading them; the
        # counters of virtual interfaces are never used unless named either.
        skip = (netdev.ARPHRD_LOOPBACK, netdev.ARPHRD_INFINIBAND)
        devs = []
        for n in names:
            dev = netdev.read_netdev(sys_root, n, () if named and n in named else skip, counters=False)
            if dev.facts is not None and (virtual_kind(dev) is None or (named and n in named)):
                counters, problems = netdev.read_stats(sys_root, n)
                dev = dev._replace(counters=counters, problems=problems)
            devs.append(dev)
        return devs, named

    def _advance(self, result: SensorResult, ports: list[Port], fabric: list[Port], boot_id: str | None,
                 nvlink: dict | None) -> tuple[str | None, dict[str, int], dict[str, Reading], tuple | None]:
        """This scan against the last one's state, which it replaces: (why a baseline or None, the
        fabric ports' channel slots, each port's reading, the NVLink (TX, RX) rates or None)."""
        now = self.ctx.now()
        with StateStore(self.ctx.state_dir).session(self.id, self.state_identity(), max_samples=1) as state:
            baseline, prev_t, previous = self._previous(state, now, boot_id)
            kept = state.data.get("slots")
            slots = assign_slots([p.key for p in fabric], kept if isinstance(kept, dict) else {})
            readings = {p.key: evaluate(p, previous.get(p.key), prev_t, now) for p in ports}
            old_nvlink = state.data.get("nvlink") if baseline is None else None
            nvlink_rate = nvlink_rates(old_nvlink, prev_t, nvlink, now) if nvlink and old_nvlink else None
            state.data = {
                "boot_id": boot_id,
                "t": now,
                "ports": {p.key: {k: c.value for k, c in p.counters.items()} for p in ports},
                "slots": slots,
                "nvlink": {k: list(v) for k, v in (nvlink or {}).items()},
            }
            for note in state.notes:
                result.note(note)
        return baseline, slots, readings, nvlink_rate

    @staticmethod
    def _explain(ports: list[Port], skipped: list[str]) -> str:
        """Every counted port with its role and why, and the ignored interfaces grouped by why."""
        counted = [f"{p.label} {'front-end' if p.role == 'frontend' else 'fabric'} ({p.why}"
                   + (f", data counters x{p.scale['rx_bytes']} bytes" if p.kind != "NIC" else "") + ")"
                   for p in ports]
        ignored: dict[str, list[str]] = {}
        for entry in skipped:
            name, _, why = entry.partition(" (")
            ignored.setdefault(why.rstrip(")"), []).append(name)
        return "Classification: " + "; ".join(
            [_shown(counted, 12)] * bool(counted)
            + [f"ignored ({why}): {_shown(names)}" for why, names in sorted(ignored.items())])

    @staticmethod
    def _left_out(result: SensorResult, ports: list[Port], readings: dict[str, Reading], baseline: bool) -> None:
        """One note naming every port whose traffic is missing from a total this scan, and why."""
        if baseline:
            return
        left = []
        for p in ports:
            r = readings[p.key]
            for key, what in (("rx_bytes", "RX"), ("tx_bytes", "TX")):
                why = r.missing.get(key)
                if why is None and key not in p.counters:
                    why = p.problems.get(NIC_MAP[key] if p.kind == "NIC" else IB_MAP[key], "counter missing")
                if why is not None and why != "no previous sample":
                    left.append(f"{p.label} {what} ({why})")
                elif why == "no previous sample":
                    left.append(f"{p.label} {what} (new port: rates from the next scan)")
        if left:
            result.note(f"Left out of the totals this scan: {_shown(left, 4)}")

    def _read_nvlink(self, proc_root) -> tuple[dict | None, str | None]:
        """Per-GPU NVLink counters, or None; plus a note when they could not be read."""
        mode = self.values["nvlink"]
        if mode == "off" or (mode == "auto" and not procinfo.nvidia_driver_loaded(proc_root)):
            return None, None  # no NVIDIA driver here: never load NVML
        from prtg_ai.backends.nvml import Nvml

        try:
            with Nvml() as nv:
                counters, silent = nv.nvlink_counters()
        except SensorError as exc:
            if mode == "on":
                raise
            return None, f"NVLink not read: {exc.message()}"
        note = f"NVLink counters of {_shown(silent)} did not answer" if silent else None
        return counters, note

    # -- state -----------------------------------------------------------
    def _previous(self, state, now: float, boot_id: str | None) -> tuple[str | None, float, dict]:
        data = state.data
        prev_t = data.get("t")
        if state.fresh or not isinstance(prev_t, (int, float)) or isinstance(prev_t, bool):
            return "first scan", 0.0, {}
        if boot_id and data.get("boot_id") and data.get("boot_id") != boot_id:
            return "the host rebooted since the last scan, so every counter restarted", 0.0, {}
        if now <= prev_t:
            return "the clock moved back since the last scan", 0.0, {}
        return None, float(prev_t), _sanitise_previous(data)

    # -- channels --------------------------------------------------------
    def _totals(self, result: SensorResult, fabric: list[Port], frontend: list[Port],
                readings: dict[str, Reading], baseline: bool) -> None:
        fab = [readings[p.key] for p in fabric]
        front = [readings[p.key] for p in frontend]
        if baseline and (fab or front):
            # PRTG pins the first channel of the first scan as the primary one: the RX rate
            # that leads every later scan is reported as collecting (0) on the baseline scan.
            result.add(self.channel("fabric_rx" if fab else "frontend_rx", 0))
        for key, channel in (("rx_bytes", "fabric_rx"), ("tx_bytes", "fabric_tx")):
            rates = [r.rates[key] for r in fab if key in r.rates]
            if rates:
                result.add(self.channel(channel, round(sum(rates))))
        for key, channel in (("rx_bytes", "frontend_rx"), ("tx_bytes", "frontend_tx")):
            rates = [r.rates[key] for r in front if key in r.rates]
            if rates:
                result.add(self.channel(channel, round(sum(rates))))
        packets = [r.rates["rx_packets"] + r.rates["tx_packets"] for r in fab
                   if "rx_packets" in r.rates and "tx_packets" in r.rates]
        if packets:
            result.add(self.channel("fabric_packets", round(sum(packets), 2)))

        busiest, peak = None, None
        for r in fab:
            if r.port.speed and ("rx_bytes" in r.rates or "tx_bytes" in r.rates):
                util = 100.0 * max(r.rates.get("rx_bytes", 0.0), r.rates.get("tx_bytes", 0.0)) / r.port.speed
                if peak is None or util > peak:
                    busiest, peak = r.port, util
        if peak is not None:
            result.add(self.channel("peak_utilisation", round(peak, 2)))
            result.note(f"Busiest fabric port {busiest.label}: {peak:.1f} % of {_rate_text(busiest.speed)}")

        not_active = [p for p in fabric if p.link in (LINK_DOWN, LINK_INIT, LINK_ARMED)]
        if fabric:
            result.add(self.channel("ports_not_active", len(not_active)))

        for group, channel in (("errors", "errors"), ("discards", "discards"),
                               ("link_downed", "link_downed"), ("symbol_errors", "symbol_errors")):
            values = [r.changes[group] for r in fab if group in r.changes]
            if values:
                result.add(self.channel(channel, sum(values)))
        for key, channel in (("xmit_wait", "xmit_wait"), ("cnp_sent", "cnp_sent"),
                             ("cnp_handled", "cnp_handled"), ("ecn_marked", "ecn_marked")):
            rates = [r.rates[key] for r in fab if key in r.rates]
            if rates:
                result.add(self.channel(channel, round(sum(rates), 2)))

        if not baseline and fab:
            shown = [f"RX {_rate_text(sum(r.rates.get('rx_bytes', 0.0) for r in fab))}",
                     f"TX {_rate_text(sum(r.rates.get('tx_bytes', 0.0) for r in fab))}"]
            result.note("Fabric " + ", ".join(shown))

    def _ports(self, result: SensorResult, fabric: list[Port], slots: dict[str, int],
               readings: dict[str, Reading]) -> None:
        for port in sorted((p for p in fabric if p.key in slots), key=lambda p: slots[p.key]):
            index, reading = slots[port.key], readings[port.key]
            for key, channel in (("rx_bytes", "port_rx"), ("tx_bytes", "port_tx")):
                if key in reading.rates:
                    result.add(self.channel(channel, round(reading.rates[key]), instance=port.label, index=index))
            result.add(self.channel("port_link", port.link, instance=port.label, index=index))
            result.add(self.channel("port_phys", port.phys, instance=port.label, index=index))
        rest = [p.label for p in fabric if p.key not in slots]
        if rest:
            result.note(f"Fabric ports beyond the first {MAX_PORT_CHANNELS} are in the totals only: {_shown(rest)}")

    def _port_notes(self, result: SensorResult, fabric: list[Port], readings: dict[str, Reading],
                    baseline: bool) -> None:
        down = [f"{p.label} ({p.state_text})" for p in fabric if p.link in (LINK_DOWN, LINK_INIT, LINK_ARMED)]
        if down:
            result.note(f"Fabric ports not active: {_shown(down)}")
        saturated = [f"{r.port.label} {name}" for r in (readings[p.key] for p in fabric) for name in r.saturated]
        if saturated:
            result.note(f"Saturated counters (32-bit or narrow PMA counters stuck at all ones; no rate, clear "
                        f"them with perfquery -R or use a kernel/HCA with 64-bit extended counters): {_shown(saturated)}")
        if not baseline:
            resets = sorted({r.port.label for r in (readings[p.key] for p in fabric) if r.resets})
            if resets:
                result.note(f"Counters restarted on {_shown(resets)} (driver reload, link flap or manual reset); "
                            "their rates resume next scan")
            for group, what in (("link_downed", "link went down"), ("errors", "errors"),
                                ("symbol_errors", "symbol errors")):
                hit = [f"{r.port.label} {r.changes[group]}" for r in (readings[p.key] for p in fabric)
                       if r.changes.get(group)]
                if hit:
                    result.note(f"{what.capitalize()} since the last scan: {_shown(hit)}")
        broken = sorted({p.label for p in fabric if p.problems and
                         {"rx_bytes", "tx_bytes"} - set(p.counters)})
        if broken:
            detail = [f"{p.label}: " + ", ".join(f"{k} {v}" for k, v in sorted(p.problems.items())[:2])
                      for p in fabric if p.label in broken]
            result.note(f"Unreadable traffic counters, port left out of the totals: {_shown(detail, 3)}")

    @staticmethod
    def _classification_text(fabric: list[Port], frontend: list[Port], skipped: list[str]) -> str:
        groups: dict[str, list[str]] = {}
        for p in fabric:
            label = "NIC, " + p.why if p.kind == "NIC" else p.kind
            groups.setdefault(label, []).append(p.label)
        parts = [f"{_shown(names)} ({label})" for label, names in groups.items()]
        text = "Fabric: " + ("; ".join(parts) if parts else
                             "none found (no InfiniBand/RoCE device; name fabric NICs with --interface)")
        if frontend:
            why = sorted({p.why for p in frontend})
            text += f". Front-end: {_shown([p.label for p in frontend])} ({', '.join(why)})"
        if skipped:
            text += f". Skipped: {_shown(skipped, 3)}"
        return text
