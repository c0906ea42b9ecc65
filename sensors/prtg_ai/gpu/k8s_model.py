"""Pure arithmetic of ``k8s_gpu``: quantities, a pod's effective GPU request, node capacity.

Mirrors the scheduler's rules (Kubernetes "Resource Management for Pods and Containers"
and the sidecar KEP-753 accounting in ``k8s.io/component-helpers/resource``):

* for an extended resource such as ``nvidia.com/gpu`` requests and limits must be equal,
  and a container that sets only the limit gets it as its request;
* a pod's effective request is ``max(sum over app containers + sidecars, the largest
  init container's request + the sidecars started before it)``, plus ``spec.overhead``;
  init containers run one at a time, so their requests do not add up;
* MIG devices are separate extended resources, ``nvidia.com/mig-<profile>`` (the device
  plugin's "mixed" strategy); with the "single" strategy they appear as ``nvidia.com/gpu``.
"""

from __future__ import annotations

import re
from datetime import datetime

GPU_RESOURCE = "nvidia.com/gpu"
MIG_PREFIX = "nvidia.com/mig-"
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$")
_SUFFIX = {None: 1, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
           "E": 1e18, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}


def quantity(text) -> float:
    """A Kubernetes resource quantity (``"2"``, ``"500m"``, ``"1Gi"``, ``"1e3"``) as a number; 0 when malformed."""
    if isinstance(text, (int, float)):
        return float(text)
    match = _QUANTITY.match(str(text).strip())
    if not match:
        return 0.0
    number, suffix = match.groups()
    try:
        value = float(number)
    except ValueError:
        return 0.0
    if suffix and suffix[0] in "eE" and len(suffix) > 1:
        return value * 10 ** int(suffix[1:])
    return value * _SUFFIX[suffix]


def is_gpu_resource(name: str) -> bool:
    return name == GPU_RESOURCE or name.startswith(MIG_PREFIX)


def _container_requests(container: dict) -> dict[str, float]:
    res = container.get("resources") or {}
    requests = res.get("requests") or {}
    limits = res.get("limits") or {}
    out = {}
    for name in set(requests) | set(limits):
        if is_gpu_resource(name):
            out[name] = quantity(requests[name] if name in requests else limits[name])
    return out


def _add(into: dict, more: dict) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0.0) + v


def pod_gpu_requests(pod: dict) -> dict[str, float]:
    """``{resource: count}`` of the GPU and MIG resources ``pod`` holds, as the scheduler counts them."""
    spec = pod.get("spec") or {}
    app: dict[str, float] = {}
    for c in spec.get("containers") or []:
        _add(app, _container_requests(c))
    sidecars: dict[str, float] = {}
    init_peak: dict[str, float] = {}
    for c in spec.get("initContainers") or []:
        req = _container_requests(c)
        if c.get("restartPolicy") == "Always":  # a sidecar keeps running beside later containers
            _add(sidecars, req)
            during = dict(sidecars)
        else:
            during = dict(sidecars)
            _add(during, req)
        for k, v in during.items():
            init_peak[k] = max(init_peak.get(k, 0.0), v)
    total = dict(app)
    _add(total, sidecars)
    for k, v in init_peak.items():
        total[k] = max(total.get(k, 0.0), v)
    overhead = {k: quantity(v) for k, v in (spec.get("overhead") or {}).items() if is_gpu_resource(k)}
    _add(total, overhead)
    return {k: v for k, v in total.items() if v > 0}


def split(counts: dict[str, float]) -> tuple[float, float]:
    """(full GPUs, MIG devices) in a ``{resource: count}`` map."""
    gpus = counts.get(GPU_RESOURCE, 0.0)
    mig = sum(v for k, v in counts.items() if k.startswith(MIG_PREFIX))
    return gpus, mig


def node_gpu_resources(node: dict, which: str = "allocatable") -> dict[str, float]:
    status = node.get("status") or {}
    return {k: quantity(v) for k, v in (status.get(which) or {}).items() if is_gpu_resource(k)}


def pod_name(pod: dict) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name') or '?'}"


def created(pod: dict) -> float | None:
    """``metadata.creationTimestamp`` (RFC 3339, UTC) as epoch seconds."""
    text = (pod.get("metadata") or {}).get("creationTimestamp")
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def unschedulable_reason(pod: dict) -> str | None:
    """The PodScheduled=False message's first words (why the scheduler cannot place it)."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return str(cond.get("message") or cond.get("reason") or "")[:160] or None
    return None


def as_int(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 3)
