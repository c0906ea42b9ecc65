"""Who a GPU process is: its name and container, from procfs (the GPU sensors' only procfs reads).

Reads, below the context's injected ``proc_root``: ``<proc>/<pid>/comm`` (the process
name, at most 64 bytes) and ``<proc>/<pid>/cgroup`` (at most 8 KiB), where a container
runtime leaves the container id and Kubernetes the pod UID. NVML reports host PIDs, so
inside a container without the host's PID namespace nothing is found: the caller then
shows the PID alone. The parser (``container_of``) is pure.
"""

from __future__ import annotations

import re
from pathlib import Path

MAX_COMM_BYTES = 64
MAX_CGROUP_BYTES = 8192
MAX_NAME = 32
# kubepods[-burstable|-besteffort]-pod<uid>.slice (systemd driver) or /kubepods/.../pod<uid>/ (cgroupfs)
POD_UID = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
# docker-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope, libpod-<id>.scope, or a bare /<id>
_CONTAINER = re.compile(r"(?:^|[/-])([0-9a-f]{64})(?:\.scope)?(?:/|$)")


def _read_head(path: Path, limit: int) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return None


def nvidia_driver_loaded(proc_root) -> bool:
    """Whether the NVIDIA kernel driver is loaded (``<proc>/driver/nvidia`` exists)."""
    return (Path(proc_root) / "driver" / "nvidia").exists()


def clean(text: str, limit: int = MAX_NAME) -> str:
    """Printable ASCII only, length-capped: a process may name itself anything."""
    out = "".join(c if c.isascii() and c.isprintable() else "?" for c in text.strip())
    return out[:limit]


def cgroup_of(proc_root, pid: int) -> str | None:
    """The text of ``<proc>/<pid>/cgroup`` (capped), None when the process is gone or unreadable."""
    return _read_head(Path(proc_root) / str(int(pid)) / "cgroup", MAX_CGROUP_BYTES)


def pod_uid_in(cgroup_text: str) -> str | None:
    """The Kubernetes pod UID a ``/proc/<pid>/cgroup`` text names (only on kubepods lines)."""
    for line in cgroup_text.splitlines():
        if "kubepods" not in line:
            continue
        match = POD_UID.search(line.split(":", 2)[-1])
        if match:
            return match.group(1).replace("_", "-")
    return None


def container_id_in(cgroup_text: str) -> str | None:
    """The first 12 hex digits of the container id a cgroup text names, if any."""
    container = None
    for line in cgroup_text.splitlines():
        path = line.split(":", 2)[-1]
        match = _CONTAINER.search(path)
        if match:
            container = match.group(1)[:12]
    return container


def container_of(cgroup_text: str, pod_names: dict[str, str] | None = None) -> str | None:
    """``pod <uid or namespace/name>, container <id12>`` / ``container <id12>`` from a cgroup text."""
    uid, container = pod_uid_in(cgroup_text), container_id_in(cgroup_text)
    parts = []
    if uid:
        parts.append("pod " + (pod_names or {}).get(uid, uid))
    if container:
        parts.append("container " + container)
    return ", ".join(parts) or None


def comm_of(proc_root, pid: int) -> str | None:
    """The process name of ``pid`` (printable, capped), None when it cannot be read."""
    comm = _read_head(Path(proc_root) / str(int(pid)) / "comm", MAX_COMM_BYTES)
    return (clean(comm) or None) if comm else None
