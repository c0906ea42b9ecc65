"""Where ``gpu`` and ``gpu_host`` get their samples: NVML on this node, or dcgm-exporter (``--source``).

Both sources produce the same ``nvml.GpuSample`` records, so the sensors build the same
catalogue channels whatever the source; a channel a source cannot fill stays ``None``
and is omitted, with a note naming what is missing. With ``--source dcgm`` the XID
channels come from ``DCGM_FI_DEV_XID_ERRORS`` (the last XID per GPU) instead of this
host's kernel log, which would be the wrong host for a central agent.

Also here: the parameters ``gpu`` and ``gpu_host`` share, the scan's XIDs (``XidView``:
the kernel log through ``backends.xid``, or DCGM's last-XID gauge), and who holds a GPU,
for messages (dcgm-exporter's pod labels, or the GPU processes' names and cgroups through
``backends.procinfo`` and ``backends.k8s_pods``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from prtg_ai.backends import nvml
from prtg_ai.core.params import Param
from prtg_ai.gpu.evaluate import GpuXids
from prtg_ai.maths.records import field, record

DCGM_TIMEOUT = 10.0  # seconds for dcgm-exporter's page (it answers from its cache)
PARAMS = (
    Param("source", "choice", "where GPU data comes from: nvml (this node's driver) or dcgm (a dcgm-exporter page)",
          default="nvml", choices=("nvml", "dcgm"), state_key=True, metavar="SOURCE"),
    Param("dcgm_url", "str", "dcgm-exporter's metrics page for --source dcgm, e.g. http://NODE:9400/metrics",
          state_key=True, metavar="URL"),
)


def gpu_params(single: bool) -> tuple[Param, ...]:
    """Parameters shared by ``gpu`` and ``gpu_host`` (``single`` adds ``--gpu``)."""
    common = (
        Param("idle_window", "duration", "how long a GPU must stay idle with VRAM held to count as idle-but-held",
              default=1800.0, minimum=60.0, maximum=7 * 86400.0, metavar="DURATION"),
        Param("idle_util", "float", "utilisation (%) at or below which a GPU counts as idle",
              default=5.0, minimum=0.0, maximum=100.0, metavar="PERCENT"),
        Param("xid_log", "path", "kernel log to read XIDs from (default /dev/kmsg; a dmesg or journalctl -k dump works)",
              default=None, metavar="FILE"),
        Param("xid_hold", "duration", "how long an XID keeps its severity and code on the channels",
              default=3600.0, minimum=0.0, maximum=7 * 86400.0, metavar="DURATION"),
        *PARAMS,
    )
    if not single:
        return common + (
            Param("expected_gpus", "int", "GPUs this node should have (fewer is an error)", default=None,
                  minimum=1, maximum=1024, metavar="N"),
        )
    return (
        Param("gpu", "str", "GPU index (0, 1, ...) or UUID (GPU-...) as nvidia-smi -L shows", default="0",
              state_key=True, metavar="INDEX|UUID"),
        Param("activity_window", "duration", "sample SM / tensor activity (GPM, Hopper+) over this long; 0 = off",
              default=0.0, minimum=0.0, maximum=5.0, metavar="DURATION"),
    ) + common


# -- XIDs -------------------------------------------------------------------------------
@record
class XidView:
    """XIDs for one scan: per normalised PCI address, the codes since the last scan."""

    available: bool
    source: str
    problem: str | None = None
    baseline: bool = False
    new: dict[str, list[int]] = field(default_factory=dict)
    history: dict[str, list[int]] = field(default_factory=dict)  # everything in the log now
    # first scan only: (age in seconds, code) of the XIDs in the log whose stamp can be dated
    aged: dict[str, list[tuple[float, int]]] = field(default_factory=dict)

    @staticmethod
    def pci(bus_id: str | None) -> str | None:
        """The key of a GPU's XIDs: its PCI bus id as the kernel log writes it."""
        from prtg_ai.backends import xid

        return xid.normalise_pci(bus_id) if bus_id else None

    def for_gpu(self, bus_id: str | None) -> GpuXids:
        """What this view says about the GPU at ``bus_id`` (the input of ``evaluate``)."""
        if not self.available:
            return GpuXids(False)
        pci = self.pci(bus_id)
        if pci is None:
            return GpuXids(True)
        return GpuXids(True, tuple(self.new.get(pci, ())), tuple(self.aged.get(pci, ())) if self.baseline else ())


def collect_xids(ctx, path: Path | None, cursor: dict | None) -> tuple[XidView, dict | None]:
    """Read the kernel log and split its XIDs into "new since ``cursor``" and "in the log"."""
    from prtg_ai.backends import xid

    if path is None:
        if not sys.platform.startswith("linux"):
            return XidView(False, "none", "XIDs are read from the Linux kernel log; this host is not Linux"), cursor
        path = xid.KMSG
    policy = getattr(ctx, "policy", None)
    read = xid.read_log(Path(path), policy.paths if policy is not None else None)
    if read.text is None:
        return XidView(False, read.source, read.problem), cursor
    events = xid.parse(read.text)
    fresh, new_cursor = xid.since(events, cursor, xid.boot_id(ctx.proc_root))
    view = XidView(True, read.source, baseline=fresh is None)
    up = xid.uptime(ctx.proc_root) if fresh is None else None
    for e in events:
        view.history.setdefault(e.pci, []).append(e.code)
        if up is not None and e.mono is not None and 0 <= up - e.mono:
            view.aged.setdefault(e.pci, []).append((up - e.mono, e.code))
    for e in fresh or []:
        view.new.setdefault(e.pci, []).append(e.code)
    return view, new_cursor


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


def trailer(acq: Acquired, with_nvml: bool = False) -> list[str]:
    """The last notes of a GPU sensor: what the source lacks, then the driver and CUDA (and NVML) versions."""
    system = acq.system
    parts = [("driver", system.driver), ("CUDA", system.cuda)] + ([("NVML", system.nvml)] if with_nvml else [])
    versions = ", ".join(f"{k} {v}" for k, v in parts if v)
    return notes(acq) + ([versions[0].upper() + versions[1:]] if versions else [])


def top_holders(ctx, processes, limit: int = 3) -> str | None:
    """``python3 (PID 41872, 38.2 GiB, pod ns/name, container ...)`` for the biggest VRAM holders.

    A pod is named ``namespace/name`` where the Kubernetes API resolves its UID
    (``backends.k8s_pods``, cached), else by its UID.
    """
    from prtg_ai.backends import k8s_pods, procinfo

    ranked = sorted((p for p in processes or [] if p.used_bytes), key=lambda p: (-p.used_bytes, p.pid))
    if not ranked:
        return None
    shown = ranked[:limit]
    cgroups = {p.pid: procinfo.cgroup_of(ctx.proc_root, p.pid) for p in shown}
    uids = {u for u in (procinfo.pod_uid_in(text) for text in cgroups.values() if text) if u}
    names = k8s_pods.resolve(ctx, uids)
    parts = []
    for p in shown:
        where = procinfo.container_of(cgroups[p.pid], names) if cgroups[p.pid] else None
        detail = [f"PID {p.pid}", f"{p.used_bytes / 2**30:.1f} GiB"] + ([where] if where else [])
        parts.append(f"{procinfo.comm_of(ctx.proc_root, p.pid) or 'process'} ({', '.join(detail)})")
    more = len(ranked) - limit
    return "; ".join(parts) + (f"; {more} more" if more > 0 else "")


def permission_note(denied: list[str]) -> str:
    """What to do when NVML answered NoPermission for the calls in ``denied``."""
    what = ", ".join(sorted(set(denied))[:6])
    return (f"No permission for {what}: run the sensor as root or a member of the video group; in a "
            "container, share the host PID namespace (hostPID) to see processes")
