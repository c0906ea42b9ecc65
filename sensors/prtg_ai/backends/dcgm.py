"""dcgm-exporter as a GPU source: its Prometheus page read into the NVML path's ``GpuSample`` records.

Reads: the ``/metrics`` page of NVIDIA's dcgm-exporter (``--dcgm-url``, usually
``http://<node>:9400/metrics``; the GPU Operator deploys it on every GPU node) through
``backends.http_metrics`` (byte cap, total time limit, no proxy), parsed with
``prometheus_client``'s reference parser as the inference sensor does.

Needs: network access to the exporter; nothing on the GPU node itself. One central
``prtg-ai serve`` can then cover a cluster's GPU nodes (destinations allowed by the
agent's ``--allow-url``).

Field -> ``GpuSample`` attribute, with the unit conversion (units from the DCGM field
identifiers reference and dcgm-exporter's ``default-counters.csv`` help texts):

* ``DCGM_FI_DEV_FB_USED/FREE/TOTAL/RESERVED``: MiB -> bytes (x 1024**2);
* ``DCGM_FI_DEV_POWER_USAGE`` and ``..._ENFORCED_POWER_LIMIT`` / ``..._POWER_MGMT_LIMIT``: W -> mW;
* ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION``: mJ counter, as NVML's;
* ``DCGM_FI_PROF_SM_ACTIVE`` / ``..._PIPE_TENSOR_ACTIVE``: ratio 0..1 -> %;
* ``DCGM_FI_PROF_PCIE_TX/RX_BYTES``: a rate in bytes/s (``PCIE_PROF_UNIT``) -> NVML's KB/s
  instant; ``DCGM_FI_DEV_PCIE_TX/RX_THROUGHPUT``: KB/s already;
* ``DCGM_FI_DEV_CLOCKS_EVENT_REASONS`` (``..._CLOCK_THROTTLE_REASONS`` before DCGM 3.3): the
  same bit mask as NVML's clocks-event reasons;
* ``DCGM_FI_DEV_XID_ERRORS``: the LAST XID seen (a gauge), not a count.

Not exported by dcgm-exporter, so omitted (with a note): per-process lists (idle-but-held
is then judged from VRAM in use), NVLink byte counters (the ``DCGM_FI_PROF_NVLINK_*``
rates have no NVML counter twin here), the thermal margin (the slowdown threshold is used).

MIG: rows labelled ``GPU_I_ID`` / ``GPU_I_PROFILE`` belong to one GPU instance; device-wide
fields (temperature, power, clocks) repeat on every instance row and are read once; the
instances' framebuffer rows become ``MigInstance`` records and their sum the GPU's VRAM.
dcgm-exporter's Kubernetes mapping adds ``namespace``/``pod``/``container`` labels to the
rows of a GPU (or instance) a pod was allocated: those are returned per GPU.
"""

from __future__ import annotations

import math

from prtg_ai.backends import http_metrics
from prtg_ai.backends.nvml import GpuSample, MemoryInfo, MigInstance, SystemInfo
from prtg_ai.core.errors import ConfigError, SensorError
from prtg_ai.maths.records import field, record

MIB = 1024 * 1024
KIB = 1024
# dcgm-exporter's default-counters.csv: "The rate of data transmitted over the PCIe bus -
# including both protocol headers and data payloads - in bytes per second."
PCIE_PROF_UNIT = 1.0  # bytes/s per unit of DCGM_FI_PROF_PCIE_*_BYTES
MAX_PAGE_BYTES = 16 * 1024 * 1024  # 8 GPUs x ~60 fields x 8 MIG instances stays far below
UUID_LABELS = ("UUID", "uuid")
# dcgm-exporter labels a MIG row with its GPU instance only. The GPU Operator's MIG profiles
# create one compute instance (id 0) per GPU instance, so the rows are named "GI<n> CI0" as
# NVML names them; UNCONFIRMED for hand-made layouts with several compute instances.
ASSUMED_COMPUTE_INSTANCE = 0
POD_LABELS = (("namespace", "pod", "container"), ("exported_namespace", "exported_pod", "exported_container"))

# DCGM field -> (GpuSample attribute, scale). Device-wide gauges and counters.
SCALAR_FIELDS = {
    "DCGM_FI_DEV_GPU_UTIL": ("util_gpu", 1, int),
    "DCGM_FI_DEV_MEM_COPY_UTIL": ("util_memory", 1, int),
    "DCGM_FI_PROF_SM_ACTIVE": ("sm_activity", 100.0, float),
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": ("tensor_activity", 100.0, float),
    "DCGM_FI_DEV_GPU_TEMP": ("temperature", 1, int),
    "DCGM_FI_DEV_MEMORY_TEMP": ("memory_temperature", 1, int),
    "DCGM_FI_DEV_SLOWDOWN_TEMP": ("slowdown_threshold", 1, int),
    "DCGM_FI_DEV_FAN_SPEED": ("fan_speed", 1, int),
    "DCGM_FI_DEV_POWER_USAGE": ("power_mw", 1000.0, int),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": ("energy_mj", 1, int),
    "DCGM_FI_DEV_SM_CLOCK": ("clock_sm", 1, int),
    "DCGM_FI_DEV_MEM_CLOCK": ("clock_mem", 1, int),
    "DCGM_FI_DEV_PSTATE": ("pstate", 1, int),
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": ("ecc_corrected_volatile", 1, int),
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": ("ecc_uncorrected_volatile", 1, int),
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL": ("ecc_corrected_aggregate", 1, int),
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL": ("ecc_uncorrected_aggregate", 1, int),
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": ("remapped_correctable", 1, int),
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": ("remapped_uncorrectable", 1, int),
    "DCGM_FI_DEV_ROW_REMAP_PENDING": ("remap_pending", 1, bool),
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": ("remap_failure", 1, bool),
    "DCGM_FI_DEV_RETIRED_PENDING": ("retired_pending", 1, bool),
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": ("pcie_replays", 1, int),
}
# First name found wins (newer name first).
ALTERNATIVES = {
    "power_limit_mw": ("DCGM_FI_DEV_ENFORCED_POWER_LIMIT", "DCGM_FI_DEV_POWER_MGMT_LIMIT"),
    "clocks_event_reasons": ("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"),
    "pcie_tx": ("DCGM_FI_PROF_PCIE_TX_BYTES", "DCGM_FI_DEV_PCIE_TX_THROUGHPUT"),
    "pcie_rx": ("DCGM_FI_PROF_PCIE_RX_BYTES", "DCGM_FI_DEV_PCIE_RX_THROUGHPUT"),
}
FB_FIELDS = ("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_TOTAL", "DCGM_FI_DEV_FB_RESERVED")
# What the NVML path reads that these names would fill; named in the "omitted" note when missing.
WANTED = ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE",
          "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_XID_ERRORS")
NOT_EXPORTED = ("per-process VRAM (idle-but-held judged from VRAM in use)", "NVLink byte counters",
                "thermal margin (slowdown threshold used)")


@record
class DcgmGpu:
    """One physical GPU as dcgm-exporter shows it: the sample plus what only DCGM tells."""

    sample: GpuSample
    last_xid: int | None = None
    pods: list[str] = field(default_factory=list)           # "namespace/pod" allocated this GPU
    instance_pods: dict[int, str] = field(default_factory=dict)  # GPU_I_ID -> "namespace/pod"
    instance_util: dict[int, float] = field(default_factory=dict)  # GPU_I_ID -> % (GR engine active)
    profiles: dict[int, str] = field(default_factory=dict)   # GPU_I_ID -> "1g.10gb"


@record
class DcgmPage:
    system: SystemInfo
    gpus: list[DcgmGpu]
    missing: list[str] = field(default_factory=list)  # wanted DCGM fields the page lacks


def fetch(url: str, timeout: float, monotonic, policy=None) -> str:
    """The exporter's page text (``http_metrics`` bounds size and time; no credentials are sent).

    ``policy`` is the agent client's ``ClientPolicy`` (None in script mode): through the
    agent, ``--dcgm-url`` must lie inside the agent's ``--allow-url``.
    """
    try:
        return http_metrics.fetch_text(url, monotonic() + timeout, None, monotonic, limit=MAX_PAGE_BYTES,
                                       policy=policy)
    except http_metrics.Unreachable as exc:
        raise SensorError(exc.problem, "Is dcgm-exporter running on that node (GPU Operator: kubectl -n gpu-operator "
                                       "get pods -l app=nvidia-dcgm-exporter) and is --dcgm-url its address, port "
                                       "9400 by default?") from None
    except SensorError as exc:
        raise SensorError(exc.problem, "Is --dcgm-url dcgm-exporter's /metrics page?") from None


def check_url(url: str | None, param: str = "dcgm_url") -> str:
    from urllib.parse import urlsplit

    if not url:
        raise ConfigError(param, "is required with --source dcgm (dcgm-exporter's page, e.g. http://NODE:9400/metrics)")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(param, f"{url[:120]!r} is not an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ConfigError(param, "credentials in the URL would be logged; dcgm-exporter needs none")
    return url.strip()


def parse(text: str, where: str = "dcgm-exporter") -> DcgmPage:
    """Turn a dcgm-exporter page into ``DcgmPage`` (pure; SensorError when it is no such page)."""
    from prometheus_client.parser import text_string_to_metric_families

    rows: dict[str, list[tuple[dict, float]]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                value = float(s.value)
                if math.isnan(value) or math.isinf(value):
                    continue
                rows.setdefault(family.name if family.name.startswith("DCGM_") else s.name, []).append(
                    (dict(s.labels), value))
    except (ValueError, TypeError, IndexError):
        # The parser's message quotes the page: fetched content is never echoed.
        raise SensorError(f"{where} is not a Prometheus metrics page.",
                          "Point --dcgm-url at dcgm-exporter's /metrics (port 9400 by default).") from None
    gpus: dict[str, DcgmGpu] = {}
    acc: dict[str, dict] = {}  # per GPU: framebuffer rows, alternatives, retired pages
    driver = cuda = None
    for name, samples in rows.items():
        for labels, value in samples:
            key = _gpu_key(labels)
            if key is None:
                continue  # a row without GPU labels (e.g. the exporter's own metrics)
            gpu = gpus.get(key)
            if gpu is None:
                gpu = gpus[key] = DcgmGpu(_new_sample(labels, key))
                acc[key] = {"fb": {}, "alt": {}, "retired": {}}
            driver = driver or labels.get("DCGM_FI_DRIVER_VERSION")
            cuda = cuda or labels.get("DCGM_FI_CUDA_DRIVER_VERSION")
            _apply(gpu, acc[key], name, labels, value)
    if not gpus:
        raise SensorError(f"{where} lists no GPU (no DCGM_FI_* rows with gpu/UUID labels).",
                          "Is --dcgm-url dcgm-exporter's page, and does dcgm-exporter see the GPUs (its log)?")
    for key, gpu in gpus.items():
        _finish(gpu, acc[key])
    present = set(rows)
    missing = [f for f in WANTED if f not in present]
    if "DCGM_FI_DEV_GPU_UTIL" in missing and all(g.sample.mig_enabled for g in gpus.values()):
        missing.remove("DCGM_FI_DEV_GPU_UTIL")  # never exported under MIG: not a configuration gap
    ordered = sorted(gpus.values(), key=lambda g: (g.sample.index, g.sample.uuid))
    return DcgmPage(SystemInfo(driver, None, _cuda(cuda)), ordered, missing)


def _gpu_key(labels: dict) -> str | None:
    uuid = next((labels[k] for k in UUID_LABELS if labels.get(k)), None)
    if uuid:
        return uuid
    gpu = labels.get("gpu")
    return f"index-{gpu}" if gpu not in (None, "") else None


def _new_sample(labels: dict, key: str) -> GpuSample:
    try:
        index = int(labels.get("gpu", "-1"))
    except ValueError:
        index = -1
    sample = GpuSample(index=index, uuid=key, name=labels.get("modelName") or labels.get("DCGM_FI_DEV_NAME"),
                       pci_bus_id=labels.get("pci_bus_id") or None)
    sample.mig_enabled = False
    return sample


def _pod(labels: dict) -> str | None:
    for ns_key, pod_key, _ in POD_LABELS:
        if labels.get(pod_key):
            return f"{labels.get(ns_key) or '?'}/{labels[pod_key]}"
    return None


def _instance(labels: dict) -> int | None:
    gi = labels.get("GPU_I_ID")
    if gi in (None, ""):
        return None
    try:
        return int(gi)
    except ValueError:
        return None


def _apply(gpu: DcgmGpu, acc: dict, name: str, labels: dict, value: float) -> None:
    s = gpu.sample
    gi = _instance(labels)
    pod = _pod(labels)
    if gi is not None:
        s.mig_enabled = True
        profile = labels.get("GPU_I_PROFILE")
        if profile and profile != "<<<NULL>>>":
            gpu.profiles[gi] = profile
        if pod:
            gpu.instance_pods[gi] = pod
    elif pod and pod not in gpu.pods:
        gpu.pods.append(pod)
    if name in FB_FIELDS:
        acc["fb"].setdefault(gi, {})[name] = value
        return
    if name == "DCGM_FI_PROF_GR_ENGINE_ACTIVE" and gi is not None:
        gpu.instance_util[gi] = value * 100.0
        return
    if name == "DCGM_FI_DEV_XID_ERRORS":
        gpu.last_xid = int(value)
        return
    if name == "DCGM_FI_DEV_MIG_MODE":
        s.mig_enabled = bool(value) or bool(s.mig_enabled)
        return
    if name in ("DCGM_FI_DEV_RETIRED_SBE", "DCGM_FI_DEV_RETIRED_DBE"):
        acc["retired"][name] = int(value)
        return
    spec = SCALAR_FIELDS.get(name)
    if spec is not None:
        attr, scale, kind = spec
        if getattr(s, attr) is None:  # device-wide values repeat on every MIG instance row
            scaled = value * scale
            setattr(s, attr, int(round(scaled)) if kind is int else bool(scaled) if kind is bool else float(scaled))
        return
    for attr, names in ALTERNATIVES.items():
        if name in names:
            seen = acc["alt"]
            rank = names.index(name)
            if attr not in seen or rank < seen[attr][0]:
                seen[attr] = (rank, value)
            return


def _finish(gpu: DcgmGpu, acc: dict) -> None:
    s = gpu.sample
    alt = acc["alt"]
    if "power_limit_mw" in alt:
        s.power_limit_mw = int(round(alt["power_limit_mw"][1] * 1000.0))
    if "clocks_event_reasons" in alt:
        s.clocks_event_reasons = int(alt["clocks_event_reasons"][1])
    for direction in ("tx", "rx"):
        got = alt.get(f"pcie_{direction}")
        if got is not None:
            rank, value = got
            kbs = value * PCIE_PROF_UNIT / KIB if rank == 0 else value
            setattr(s, f"pcie_{direction}_kbs", kbs)
    retired = acc["retired"]
    if retired:
        s.retired_pages = sum(retired.values())
    fb = acc["fb"]
    if None in fb:
        s.memory = _memory(fb[None])
    for slot, gi in enumerate(sorted(k for k in fb if k is not None)):
        s.mig_instances.append(MigInstance(slot, gi, ASSUMED_COMPUTE_INSTANCE, None, _memory(fb[gi])))
    if s.memory is None and s.mig_instances:
        mems = [m.memory for m in s.mig_instances if m.memory is not None]
        if mems:
            s.memory = MemoryInfo(sum(m.total for m in mems), sum(m.reserved for m in mems),
                                  sum(m.free for m in mems), sum(m.used for m in mems))
    if s.remapped_correctable is None or s.remapped_uncorrectable is None:
        s.remapped_correctable = s.remapped_uncorrectable = None
        s.remap_pending = s.remap_failure = None
    if s.mig_enabled:
        s.util_gpu = None  # NVML and DCGM both lack whole-GPU utilisation under MIG


def _memory(values: dict) -> MemoryInfo | None:
    used, free = values.get("DCGM_FI_DEV_FB_USED"), values.get("DCGM_FI_DEV_FB_FREE")
    if used is None or free is None:
        return None
    total = values.get("DCGM_FI_DEV_FB_TOTAL")
    reserved = values.get("DCGM_FI_DEV_FB_RESERVED")
    if total is None:
        total = used + free + (reserved or 0)
    if reserved is None or reserved > total:
        reserved = max(total - used - free, 0)
    return MemoryInfo(int(total * MIB), int(reserved * MIB), int(free * MIB), int(used * MIB))


def _cuda(text: str | None) -> str | None:
    if not text or not text.isdigit():
        return None
    value = int(text)
    return f"{value // 1000}.{value % 1000 // 10}"


def select(page: DcgmPage, selector: str, param: str = "gpu") -> DcgmGpu:
    """The GPU ``--gpu`` names (an index or a ``GPU-…`` UUID) on the page."""
    from prtg_ai.backends.nvml import parse_selector

    kind, value = parse_selector(selector, param)
    for gpu in page.gpus:
        if (kind == "index" and gpu.sample.index == value) or (kind == "uuid" and gpu.sample.uuid.lower() == value.lower()):
            return gpu
    shown = ", ".join(str(g.sample.index) for g in page.gpus)
    raise ConfigError(param, f"GPU {selector} is not on the dcgm-exporter page (it lists GPU {shown})")
