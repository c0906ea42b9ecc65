"""Who may talk to the agent: client address filter, then token or basic authentication.

Accepted credentials, any one of them:

* ``Authorization: Bearer <token>``;
* ``Authorization: Basic <base64(user:password)>`` (what PRTG's HTTP sensors send
  when credentials are entered in the sensor settings);
* ``?token=<token>`` in the query (works from any PRTG version's URL field; the
  agent never logs query strings for this reason).

Comparisons use ``hmac.compare_digest`` on bytes and always run against every
configured secret, so response time does not reveal how much of a guess matched
or which secret was close. Every secret is registered with the Scrubber, so it
never reaches a log line or a response.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prtg_ai.core.secrets import Scrubber

MIN_TOKEN_LEN = 8
TOKEN_PARAM = "token"
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AuthConfigError(ValueError):
    """The authentication settings are unusable (short token, bad CIDR, unsafe listener)."""


@dataclass(frozen=True)
class Decision:
    """The outcome of checking one request: ``status`` 200 means allowed."""

    status: int
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 200


def _eq(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def _any_equal(candidate: bytes, secrets: Sequence[bytes]) -> bool:
    # No early exit: every configured secret is compared, whatever matched first.
    found = False
    for secret in secrets:
        found |= _eq(candidate, secret)
    return found


def parse_networks(cidrs: Iterable[str]) -> list[IPNetwork]:
    """Parse ``--allow`` values (``10.0.0.0/8``, ``192.0.2.7``, ``fd00::/8``)."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise AuthConfigError(f"--allow {cidr!r} is not an IP address or CIDR network") from None
    return networks


def client_address(remote: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Parse REMOTE_ADDR; an IPv4-mapped IPv6 address counts as its IPv4 address."""
    try:
        addr = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def is_loopback_host(host: str) -> bool:
    """True when ``host`` (an address or name) only accepts connections from this machine."""
    host = host.strip().strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other name may resolve to a routable address: treat it as one


@dataclass
class Authenticator:
    """Checks requests against configured tokens, basic-auth pairs and allowed networks."""

    tokens: Sequence[str] = ()
    basic: Sequence[tuple[str, str]] = ()
    allow: Sequence[IPNetwork] = ()
    scrubber: Scrubber = field(default_factory=Scrubber)

    def __post_init__(self) -> None:
        self.secret_values: list[str] = []
        for token in self.tokens:
            if len(token) < MIN_TOKEN_LEN:
                raise AuthConfigError(f"a token must be at least {MIN_TOKEN_LEN} characters long")
            self.secret_values.append(token)
        for user, password in self.basic:
            if not user or len(password) < MIN_TOKEN_LEN:
                raise AuthConfigError(f"--basic-auth needs USER:PASSWORD with a password of at least "
                                      f"{MIN_TOKEN_LEN} characters")
            self.secret_values += [password, base64.b64encode(f"{user}:{password}".encode()).decode()]
        for secret in self.secret_values:
            self.scrubber.register(secret)
        self._tokens = [t.encode("utf-8") for t in self.tokens]
        self._users = [u.encode("utf-8") for u, _ in self.basic]
        self._passwords = [p.encode("utf-8") for _, p in self.basic]

    @property
    def required(self) -> bool:
        """Whether any authentication method is configured."""
        return bool(self._tokens or self._users)

    @property
    def methods(self) -> list[str]:
        return (["token"] if self._tokens else []) + (["basic"] if self._users else [])

    def challenge(self) -> str:
        """The ``WWW-Authenticate`` header value of a 401 answer."""
        return 'Basic realm="prtg-ai", charset="UTF-8"' if self._users else 'Bearer realm="prtg-ai"'

    def check_address(self, remote: str) -> Decision:
        if not self.allow:
            return Decision(200)
        addr = client_address(remote)
        if addr is not None and any(addr.version == net.version and addr in net for net in self.allow):
            return Decision(200)
        return Decision(403, "This client's address is not in the agent's --allow list.")

    def check(self, environ: Mapping[str, str], query_token: str | None) -> Decision:
        """Decide on one request from its WSGI environ and its ``token`` query value."""
        where = self.check_address(environ.get("REMOTE_ADDR", ""))
        if not where.allowed or not self.required:
            return where
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer" and self._tokens:
            ok = _any_equal(value.encode("utf-8", "surrogateescape"), self._tokens)
        elif scheme == "basic" and self._users:
            ok = self._basic_ok(value)
        elif query_token is not None and self._tokens:
            ok = _any_equal(query_token.encode("utf-8", "surrogateescape"), self._tokens)
        else:
            return Decision(401, "Authentication required: give the agent's token (token=... in the URL "
                                 "or an Authorization: Bearer header) or its basic-auth credentials.")
        if ok:
            return Decision(200)
        return Decision(401, "Authentication failed: the token or credentials do not match the agent's.")

    def _basic_ok(self, value: str) -> bool:
        try:
            decoded = base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        if not sep:
            return False
        found = False
        for known_user, known_password in zip(self._users, self._passwords):
            # Both halves compared every time (no short-circuit on the user name).
            found |= _eq(user, known_user) & _eq(password, known_password)
        return found


def check_listen_policy(host: str, auth: Authenticator, insecure: bool) -> str | None:
    """Raise when a non-loopback listener has no authentication; return a warning or None."""
    if is_loopback_host(host) or auth.required:
        return None
    if not insecure:
        shown = host or "all interfaces"
        raise AuthConfigError(
            f"Refusing to listen on {shown} without authentication: give --token (or PRTG_AI_TOKEN) "
            f"or --basic-auth, listen on 127.0.0.1, or pass --insecure to accept unauthenticated polls.")
    return f"Listening on {host or 'all interfaces'} WITHOUT authentication (--insecure): anyone who reaches " \
           f"this port can run the sensors."


def parse_basic(spec: str) -> tuple[str, str]:
    """Split ``USER:PASSWORD`` (the password may contain colons)."""
    user, sep, password = spec.partition(":")
    if not sep or not user:
        raise AuthConfigError("--basic-auth must be USER:PASSWORD")
    return user, password
