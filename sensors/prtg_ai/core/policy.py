"""What a sensor parameter may reach when it arrives from an agent client.

``prtg-ai run`` is started by PRTG with parameters the PRTG administrator typed:
those are trusted. A parameter that arrives through ``prtg-ai serve`` comes from
whoever holds the agent token (it sits in every PRTG sensor URL), so the agent
hands each run a ``ClientPolicy`` on its ``Context`` and sensors and backends
consult it before they open a path, connect to a URL or match processes:

* ``paths``: resolved folders a path parameter may point into (``--allow-path``);
  ``None`` means any path (a loopback listener without ``--allow-path``), an
  empty tuple means none;
* ``networks``: networks a client-chosen URL may resolve into (``--allow-url``
  CIDRs; default loopback only);
* ``origins``: ``scheme://host:port`` the operator named with ``--allow-url``;
* ``keys``: API keys per origin from the agent's own configuration
  (``--api-key-file ORIGIN=FILE``); the agent's environment keys are never used
  for a client-chosen URL.

Script mode has no policy (``ctx.policy is None``): nothing here is imported.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
# Never reachable through a URL parameter, whatever --allow-url says: link-local (the
# instance-metadata services of AWS, Azure, GCP, OpenStack live at 169.254.169.254)
# and the metadata addresses outside link-local (AWS IPv6 IMDS, Alibaba Cloud).
ALWAYS_REFUSED = ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32", "0.0.0.0/8",
                  "::/128")
_REFUSED = tuple(ipaddress.ip_network(n) for n in ALWAYS_REFUSED)


class PolicyError(ValueError):
    """An ``--allow-url`` / ``--api-key-file`` value the agent cannot use."""


def origin_of(url: str) -> str | None:
    """``scheme://host:port`` of an http(s) URL (default ports filled in), lower-case; None if not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    port = port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname.lower()
    return f"{parts.scheme}://{'[' + host + ']' if ':' in host else host}:{port}"


def always_refused(addr) -> bool:
    """Whether an address is link-local or a metadata service (IPv4-mapped IPv6 included)."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in _REFUSED)


class ClientPolicy:
    """Limits on what one agent client's parameters may reach (see the module docstring)."""

    __slots__ = ("paths", "networks", "origins", "keys")

    def __init__(self, paths: Iterable[str] | None = (), allow_urls: Iterable[str] = (),
                 keys: Mapping[str, str] | None = None):
        self.paths = None if paths is None else tuple(paths)
        networks, origins, keyed = [], [], []
        for spec in allow_urls:
            spec = spec.strip()
            origin = origin_of(spec) if "://" in spec else None
            if origin is not None:
                origins.append(origin)
                continue
            try:
                networks.append(ipaddress.ip_network(spec, strict=False))
            except ValueError:
                raise PolicyError(f"--allow-url {spec[:80]!r} is neither a CIDR network nor an "
                                  f"http(s)://host:port origin") from None
        self.keys = {}
        for origin, key in (keys or {}).items():
            norm = origin_of(origin)
            if norm is None:
                raise PolicyError(f"--api-key-file: {origin[:80]!r} is not an http(s)://host:port origin")
            self.keys[norm] = key
            keyed.append(norm)  # a server the operator gave a key for is a server it allows
        if not networks and not origins:  # no --allow-url given (key origins do not count): loopback
            networks = [ipaddress.ip_network(n) for n in LOOPBACK_NETWORKS]
        self.networks = tuple(networks)
        self.origins = frozenset(origins + keyed)

    def origin_allowed(self, origin: str) -> bool:
        return origin in self.origins

    def address_allowed(self, addr) -> bool:
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr.version == net.version and addr in net for net in self.networks)

    def key_for(self, url: str) -> str | None:
        """The operator's key for the origin of ``url``, or None."""
        origin = origin_of(url)
        return self.keys.get(origin) if origin else None
