"""Where ``gpu`` and ``gpu_host`` get their samples: NVML on this node, or dcgm-exporter (``--source``).

Both sources produce the same ``nvml.GpuSample`` records, so the sensors build the same
catalogue channels whatever the source; a channel a source cannot fill stays ``None``
and is omitted, with a note naming what is missing. With ``--source dcgm`` the XID
channels come from ``DCGM_FI_DEV_XID_ERRORS`` (the last XID per GPU) instead of this
host's kernel log, which would be the wrong host for a central agent.

Also here: the pods holding a GPU, for messages (dcgm-exporter's pod labels, or the
GPU processes' cgroups through ``backends.k8s_pods``).
"""

from __future__ import annotations

import time

from prtg_ai.backends import nvml
from prtg_ai.core.params import Param
from prtg_ai.maths.records import field, record

DCGM_TIMEOUT = 10.0  # seconds for dcgm-exporter's page (it answers from its cache)
PARAMS = (
    Param("source", "choice", "where GPU data comes from: nvml (this node's driver) or dcgm (a dcgm-exporter page)",
          default="nvml", choices=("nvml", "dcgm"), state_key=True, metavar="SOURCE"),
    Param("dcgm_url", "str", "dcgm-exporter's metrics page for --source dcgm, e.g. http://NODE:9400/metrics",
          state_key=True, metavar="URL"),
)


@record
class Acquired:
    """One scan's GPU data, whatever the source."""

    source: str
    system: nvml.SystemInfo
    samples: list = field(default_factory=list)
    count: int = 0
    lost: list = field(default_factory=list)     # [(index, problem)] (NVML only)
    page: object = None                          # backends.dcgm.DcgmPage with --source dcgm
    where: str = ""


def acquire_one(sensor, selector: str) -> Acquired:
    """The GPU ``--gpu`` names, from the source ``--source`` names."""
    values = sensor.values
    if values.get("source") == "dcgm":
        page, url = _page(sensor)
        from prtg_ai.backends import dcgm

        gpu = dcgm.select(page, selector)
        return Acquired("dcgm", page.system, [gpu.sample], len(page.gpus), page=page, where=url)
    with nvml.Nvml() as lib:
        system = lib.system()
        index, handle = lib.select(selector)
        sample = lib.sweep(index, handle, gpm_window=values.get("activity_window") or 0.0, sleep=time.sleep)
    return Acquired("nvml", system, [sample], 1)


def acquire_all(sensor) -> Acquired:
    """Every GPU of the node (NVML) or of the dcgm-exporter page."""
    if sensor.values.get("source") == "dcgm":
        page, url = _page(sensor)
        return Acquired("dcgm", page.system, [g.sample for g in page.gpus], len(page.gpus), page=page, where=url)
    samples, lost = [], []
    with nvml.Nvml() as lib:
        system = lib.system()
        count = lib.count()
        for index in range(count):
            try:
                samples.append(lib.sweep(index, lib.handle_by_index(index), sleep=time.sleep))
            except nvml.GpuLostError as exc:
                lost.append((index, exc.problem))
    return Acquired("nvml", system, samples, count, lost)


def _page(sensor):
    from prtg_ai.backends import dcgm

    url = dcgm.check_url(sensor.values.get("dcgm_url"))
    text = dcgm.fetch(url, DCGM_TIMEOUT, sensor.ctx.monotonic, sensor.ctx.policy)
    return dcgm.parse(text, url), url


def xids(ctx, values: dict, acq: Acquired, cursor):
    """The scan's ``XidView`` and the new cursor: the kernel log (NVML) or DCGM's last-XID gauge."""
    from prtg_ai.gpu.gpu import XidView, collect_xids
    from prtg_ai.backends import xid

    if acq.source != "dcgm":
        return collect_xids(ctx, values.get("xid_log"), cursor)
    gpus = acq.page.gpus
    if all(g.last_xid is None for g in gpus):
        return XidView(False, "dcgm-exporter", "dcgm-exporter does not export DCGM_FI_DEV_XID_ERRORS "
                       "(add it to its counters CSV)"), cursor
    if any(g.last_xid is not None and not g.sample.pci_bus_id for g in gpus):
        return XidView(False, "dcgm-exporter", "this dcgm-exporter puts no pci_bus_id label on its rows "
                       "(dcgm-exporter 3.3 or newer does)"), cursor
    old = cursor if isinstance(cursor, dict) and cursor.get("source") == "dcgm" else None
    view = XidView(True, "dcgm-exporter (DCGM_FI_DEV_XID_ERRORS, last XID per GPU)", baseline=old is None)
    new_cursor = {"source": "dcgm", "last": {}}
    for g in gpus:
        if g.last_xid is None:
            continue
        pci = xid.normalise_pci(g.sample.pci_bus_id)
        new_cursor["last"][g.sample.uuid] = g.last_xid
        if g.last_xid:
            view.history.setdefault(pci, []).append(g.last_xid)
            # The gauge holds the last XID: a change is a new event (a repeat of the same code is not seen).
            if old is not None and old.get("last", {}).get(g.sample.uuid) != g.last_xid:
                view.new.setdefault(pci, []).append(g.last_xid)
    return view, new_cursor


def pods_of(ctx, acq: Acquired, sample) -> list[str]:
    """``namespace/pod`` of the pods using ``sample``'s GPU (empty when none is known)."""
    if acq.source == "dcgm":
        for g in acq.page.gpus:
            if g.sample is sample:
                return sorted(set(g.pods) | set(g.instance_pods.values()))
        return []
    if not sample.processes:
        return []
    from prtg_ai.backends.k8s_pods import describe_pids

    named = describe_pids(ctx, [p.pid for p in sample.processes])
    return sorted(set(named.values()))


def holders(ctx, acq: Acquired, sample, limit: int = 8) -> str:
    """``PID 41872 (ml/train-0), PID 9 (...)`` or the pods alone (dcgm): who holds this GPU."""
    if acq.source == "dcgm":
        pods = pods_of(ctx, acq, sample)
        return ", ".join(pods[:limit])
    procs = (sample.processes or [])[:limit]
    if not procs:
        return ""
    from prtg_ai.backends.k8s_pods import describe_pids

    named = describe_pids(ctx, [p.pid for p in procs])
    return "PID " + ", ".join(f"{p.pid}" + (f" ({named[p.pid]})" if p.pid in named else "") for p in procs)


def notes(acq: Acquired) -> list[str]:
    """What the source could not give (dcgm: fields the page lacks, things DCGM never exports)."""
    if acq.source != "dcgm":
        return []
    from prtg_ai.backends import dcgm

    out = [f"Source: dcgm-exporter at {acq.where}"]
    if acq.page.missing:
        out.append("Not on the page (enable in dcgm-exporter's counters CSV): " + ", ".join(acq.page.missing))
    out.append("Not exported by dcgm-exporter: " + "; ".join(dcgm.NOT_EXPORTED))
    return out
