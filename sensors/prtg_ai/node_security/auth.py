"""OpenSSH's authentication messages, counted (pure).

Input: ``(pid, message)`` pairs of sshd (``sshd`` or, since OpenSSH 9.8,
``sshd-session``), from syslog lines (``... sshd[1234]: Failed password for ...``) or
journal entries. Counted:

* failures: each ``Failed <method> for ...`` line (``message repeated N times: [ ... ]``
  counts N), and, for a connection that never got that far, one for ``Invalid user``,
  ``Connection closed by|Disconnected from authenticating|invalid user ... [preauth]``
  or ``maximum authentication attempts exceeded``: per sshd PID, the larger of the two;
* sources: the addresses in those lines;
* logins: ``Accepted <method> for USER from ADDR port N``.

User names in failure lines are chosen by the attacker (they may even contain an
address: fail2ban's test log has ``authenticating user test 127.0.0.1 192.0.2.11 port``),
so the source address is the last ``ADDR port N`` of a line, and failure user names
are never shown.
"""

from __future__ import annotations

from prtg_ai.maths.records import field, record

_ADDR = r"([0-9A-Fa-f:.]{2,45}(?:%[\w.-]{1,16})?)"
_PATTERNS = {
    "syslog": r"\bsshd(?:-session)?\[(\d{1,10})\]: (.*)$",
    "failed": r"^(?:message repeated (\d{1,6}) times: \[ ?)?Failed (\S+) for (?:invalid user )?.* from " + _ADDR
              + r" port \d{1,5}(?: ssh2)?",
    "invalid": r"^Invalid user .* from " + _ADDR + r"(?: port \d{1,5})?\s*$",
    "preauth": r"^(?:Connection closed by|Disconnected from) (?:authenticating|invalid) user .* " + _ADDR
               + r" port \d{1,5} \[preauth\]\s*$",
    "maxauth": r"^(?:error: )?maximum authentication attempts exceeded for .* from " + _ADDR + r" port \d{1,5}",
    "accepted": r"^Accepted (\S{1,40}) for (\S{1,64}) from " + _ADDR + r" port \d{1,5}",
    "unsafe_user": r"[^A-Za-z0-9._@-]",
}
_COMPILED: dict = {}


def _rx(name: str):
    # Compiled on first use: a scan without SSH counting never pays for the regex compiler.
    pattern = _COMPILED.get(name)
    if pattern is None:
        import re

        pattern = _COMPILED[name] = re.compile(_PATTERNS[name])
    return pattern


MAX_TRACKED_PIDS = 4096


@record
class Login:
    user: str
    address: str
    method: str


@record
class AuthCount:
    """What one scan's new sshd messages say."""

    failures: int = 0
    sources: set = field(default_factory=set)
    logins: list = field(default_factory=list)
    failed_pids: set = field(default_factory=set)   # PIDs whose failures were counted (carried to the next scan)
    lines: int = 0


def syslog_message(line: str) -> tuple[int, str] | None:
    """``(pid, message)`` of an sshd line in syslog format, else None."""
    m = _rx("syslog").search(line)
    if m is None:
        return None
    return int(m.group(1)), m.group(2).rstrip("\r")


def _valid_address(text: str) -> bool:
    return ("." in text and text.replace(".", "").isdigit() and text.count(".") == 3) or \
        (":" in text and text.count(":") >= 2)


def count(messages, counted_before: set[int] | frozenset = frozenset()) -> AuthCount:
    """Count failures, their sources and successful logins in ``(pid, message)`` pairs.

    ``counted_before``: PIDs whose failures an earlier scan counted; a trailing preauth
    disconnect of such a connection is not a new failure.
    """
    failed: dict[int, int] = {}
    signalled: set[int] = set()
    out = AuthCount()
    for pid, message in messages:
        out.lines += 1
        m = _rx("failed").match(message)
        if m:
            addr = m.group(3)
            if _valid_address(addr):
                failed[pid] = failed.get(pid, 0) + (int(m.group(1)) if m.group(1) else 1)
                out.sources.add(addr)
            continue
        m = _rx("invalid").match(message) or _rx("preauth").match(message) or _rx("maxauth").match(message)
        if m:
            addr = m.group(1)
            if _valid_address(addr):
                signalled.add(pid)
                out.sources.add(addr)
            continue
        m = _rx("accepted").match(message)
        if m and _valid_address(m.group(3)):
            unsafe = _rx("unsafe_user")
            out.logins.append(Login(unsafe.sub("?", m.group(2))[:32], m.group(3), unsafe.sub("?", m.group(1))[:24]))
    for pid in failed.keys() | signalled:
        n = failed.get(pid, 0)
        if n == 0 and pid in counted_before:
            continue
        out.failures += max(n, 1)
        out.failed_pids.add(pid)
    return out
