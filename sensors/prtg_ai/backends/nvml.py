"""NVML access through nvidia-ml-py (``import pynvml``); the only module that imports it.

Reads: the NVIDIA driver's NVML library (``libnvidia-ml.so.1`` / ``nvml.dll``).
Needs: an installed NVIDIA driver; no root for the metrics the pack reads (per-process
lists may need it inside containers: NVML answers ``NoPermission`` then).

This module is a thin reader. ``Nvml`` starts and stops the library, finds a GPU by
index or UUID, and ``Nvml.sweep`` reads one GPU into a typed ``GpuSample``. Every
NVML call goes through ``_Caller``, which sorts the outcomes into the pack's tiers:

* ``NotSupported`` / ``FunctionNotFound`` (this GPU or driver lacks the metric): the
  value is ``None`` (the sensor omits the channel, never a fake 0), logged once;
* ``NoPermission``: the value is ``None`` and the call is listed in ``denied`` so the
  sensor can warn with a hint;
* ``GpuIsLost`` (XID 79) / ``ResetRequired``: ``GpuLostError`` (whole-sensor error);
* any other ``NVMLError`` (timeout, unknown): ``None`` plus a line in ``problems``.

Library-level failures (no nvidia-ml-py, no driver, library/driver version mismatch)
raise ``SensorError`` with a hint at ``Nvml.__enter__``.

pynvml is imported inside the functions (never at module level), so the tests can put
a scenario-driven fake into ``sys.modules["pynvml"]`` and ``prtg-ai run`` of other
sensors never loads it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from prtg_ai.core.deadline import doing, done
from prtg_ai.core.errors import ConfigError, SensorError
from prtg_ai.core.log import get_logger
from prtg_ai.maths.records import field, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = get_logger("prtg_ai.nvml")

# Numeric ids from nvml.h. They are ABI and never change; hard-coding them keeps older
# nvidia-ml-py releases (which lack some names) working.
FI_MEMORY_TEMP = 82               # NVML_FI_DEV_MEMORY_TEMP, degrees C
FI_NVLINK_LINK_COUNT = 91         # NVML_FI_DEV_NVLINK_LINK_COUNT
FI_NVLINK_DATA_TX = 138           # NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, KiB counter
FI_NVLINK_DATA_RX = 139           # NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, KiB counter
FI_PCIE_TX_BYTES = 197            # NVML_FI_DEV_PCIE_COUNT_TX_BYTES, byte counter
FI_PCIE_RX_BYTES = 198            # NVML_FI_DEV_PCIE_COUNT_RX_BYTES, byte counter
FI_RECOVERY_ACTION = 230          # NVML_FI_DEV_GET_GPU_RECOVERY_ACTION (NVML 12.570+)
SCOPE_ALL_LINKS = 0xFFFFFFFF      # "scopeId of UINT_MAX returns aggregate across all links"
TEMPERATURE_GPU = 0               # NVML_TEMPERATURE_GPU
THRESHOLD_SLOWDOWN = 1            # NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
CLOCK_SM, CLOCK_MEM = 1, 2        # NVML_CLOCK_SM, NVML_CLOCK_MEM
PCIE_TX, PCIE_RX = 0, 1           # NVML_PCIE_UTIL_TX_BYTES, NVML_PCIE_UTIL_RX_BYTES
ECC_CORRECTED, ECC_UNCORRECTED = 0, 1   # NVML_MEMORY_ERROR_TYPE_*
ECC_VOLATILE, ECC_AGGREGATE = 0, 1      # NVML_VOLATILE_ECC, NVML_AGGREGATE_ECC
RETIRE_SBE, RETIRE_DBE = 0, 1           # NVML_PAGE_RETIREMENT_CAUSE_*
MEMORY_V2 = 0x02000028            # nvmlMemory_v2 (sizeof(nvmlMemory_v2_t) | 2 << 24)
GPM_SM_UTIL, GPM_TENSOR_UTIL = 2, 5     # NVML_GPM_METRIC_SM_UTIL, NVML_GPM_METRIC_ANY_TENSOR_UTIL
GPM_METRICS_GET_VERSION = 1
NVML_SUCCESS, NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_NO_PERMISSION = 0, 3, 4
# Field value union members by nvmlValueType_t (0 double ... 6 unsigned short).
_VALUE_MEMBERS = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")
_UUID = re.compile(r"^GPU-[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# "Absent" is logged once per process and call (the agent runs many scans in one process).
_LOGGED_ABSENT: set[tuple[str, str]] = set()

LOST_HINT = ("The GPU has fallen off the bus (XID 79) or needs a reset: check `dmesg | grep -i xid`, "
             "drain the node and reset the GPU (nvidia-smi -r) or reboot; repeated loss means RMA.")


class GpuLostError(SensorError):
    """The GPU stopped answering (NVML ``GpuIsLost`` / ``ResetRequired``)."""


def _lib():
    """Return the pynvml module, or raise SensorError when nvidia-ml-py is missing."""
    try:
        import pynvml  # https://docs.nvidia.com/deploy/nvml-api/index.html
    except ImportError:
        raise SensorError("nvidia-ml-py is not installed, so NVML cannot be read.",
                          "Install it into the pack's Python: pip install nvidia-ml-py") from None
    return pynvml


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


# -- typed data ------------------------------------------------------------------------
@record(frozen=True)
class SystemInfo:
    """Versions of the driver stack (for the sensor message)."""

    driver: str | None
    nvml: str | None
    cuda: str | None


@record(frozen=True)
class MemoryInfo:
    """Frame-buffer memory in bytes, from ``nvmlDeviceGetMemoryInfo`` v2.

    v2 reports ``reserved`` (driver/firmware) separately; v1 counts it as used, which
    makes an idle GPU look occupied (gpustat#141).
    """

    total: int
    reserved: int
    free: int
    used: int

    @property
    def used_percent(self) -> float | None:
        usable = self.total - self.reserved
        return 100.0 * self.used / usable if usable > 0 else None


@record(frozen=True)
class ProcessInfo:
    """A process holding a context on the GPU."""

    pid: int
    used_bytes: int | None  # None under Windows WDDM, where NVML cannot attribute memory
    kind: str               # "compute", "graphics" or "compute+graphics"


@record(frozen=True)
class MigInstance:
    """One MIG device (GPU instance / compute instance) and its memory."""

    slot: int
    gpu_instance_id: int | None
    compute_instance_id: int | None
    uuid: str | None
    memory: MemoryInfo | None


@record
class GpuSample:
    """Everything one sweep read from one GPU; ``None`` means "not available here"."""

    index: int
    uuid: str
    name: str | None = None
    pci_bus_id: str | None = None
    util_gpu: int | None = None
    util_memory: int | None = None
    sm_activity: float | None = None
    tensor_activity: float | None = None
    memory: MemoryInfo | None = None
    temperature: int | None = None
    memory_temperature: int | None = None
    slowdown_threshold: int | None = None
    margin_temperature: int | None = None
    fan_speed: int | None = None
    power_mw: int | None = None
    power_limit_mw: int | None = None
    energy_mj: int | None = None
    clock_sm: int | None = None
    clock_mem: int | None = None
    pstate: int | None = None
    clocks_event_reasons: int | None = None
    ecc_enabled: bool | None = None
    ecc_corrected_volatile: int | None = None
    ecc_uncorrected_volatile: int | None = None
    ecc_corrected_aggregate: int | None = None
    ecc_uncorrected_aggregate: int | None = None
    retired_pages: int | None = None
    retired_pending: bool | None = None
    remapped_correctable: int | None = None
    remapped_uncorrectable: int | None = None
    remap_pending: bool | None = None
    remap_failure: bool | None = None
    recovery_action: int | None = None
    pcie_tx_kbs: int | None = None        # KB/s over NVML's 20 ms window
    pcie_rx_kbs: int | None = None
    pcie_tx_bytes: int | None = None      # cumulative byte counters (Hopper+ drivers)
    pcie_rx_bytes: int | None = None
    pcie_replays: int | None = None
    nvlink_links: int | None = None
    nvlink_tx_kib: int | None = None      # cumulative, all links
    nvlink_rx_kib: int | None = None
    processes: list[ProcessInfo] | None = None
    mig_enabled: bool | None = None
    mig_instances: list[MigInstance] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    denied: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def process_bytes(self) -> int | None:
        if self.processes is None:
            return None
        return sum(p.used_bytes or 0 for p in self.processes)


# -- the caller: one place that sorts NVML outcomes into tiers --------------------------
class _Caller:
    """Calls pynvml functions for one GPU and sorts failures into the pack's tiers."""

    def __init__(self, nv, sample: GpuSample):
        self.nv = nv
        self.sample = sample

    def __call__(self, name: str, *args, label: str | None = None, **kwargs):
        label = label or name
        doing(f"NVML {name} on GPU {self.sample.index}")
        try:
            value = getattr(self.nv, name)(*args, **kwargs)
            done()
            return value
        except AttributeError:
            # An older nvidia-ml-py without this wrapper: same as an older driver.
            self._absent(label, "function missing from nvidia-ml-py")
            return None
        except self.nv.NVMLError as exc:
            self.classify(label, exc)
            return None
        except getattr(self.nv, "NVMLLibraryMismatchError", ()) as exc:
            self._absent(label, str(exc))
            return None

    def classify(self, label: str, exc: Exception) -> None:
        nv = self.nv
        if isinstance(exc, (nv.NVMLError_GpuIsLost, nv.NVMLError_ResetRequired)):
            who = f"GPU {self.sample.index}" + (f" ({self.sample.uuid})" if self.sample.uuid else "")
            raise GpuLostError(f"{who} stopped answering NVML ({_text(exc)} in {label}).", LOST_HINT)
        if isinstance(exc, (nv.NVMLError_NotSupported, nv.NVMLError_FunctionNotFound, nv.NVMLError_NotFound)):
            self._absent(label, _text(exc))
        elif isinstance(exc, nv.NVMLError_NoPermission):
            self.sample.denied.append(label)
        else:
            self.sample.problems.append(f"{label}: {_text(exc)}")
            log.warning("NVML %s on GPU %s failed: %s", label, self.sample.index, exc)

    def _absent(self, label: str, why: str) -> None:
        self.sample.absent.append(label)
        key = (self.sample.uuid, label)
        if key not in _LOGGED_ABSENT:
            _LOGGED_ABSENT.add(key)
            log.info("GPU %s: %s not available (%s); its channel is omitted", self.sample.index, label, why)


# -- the reader -------------------------------------------------------------------------
class Nvml:
    """NVML for the duration of one scan (a context manager: init, then shutdown)."""

    def __init__(self) -> None:
        self.nv = _lib()
        self._started = False

    def __enter__(self) -> "Nvml":
        nv = self.nv
        doing("NVML nvmlInit")
        try:
            nv.nvmlInit()  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlInitializationAndCleanup.html#nvmlInit_v2
        except nv.NVMLError as exc:
            raise _init_error(nv, exc) from None
        self._started = True
        return self

    def __exit__(self, *exc_info) -> None:
        if self._started:
            try:
                self.nv.nvmlShutdown()  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlInitializationAndCleanup.html#nvmlShutdown
            except self.nv.NVMLError:
                pass
            self._started = False

    # -- system ---------------------------------------------------------------------
    def system(self) -> SystemInfo:
        nv = self.nv

        def ask(name: str):
            doing(f"NVML {name}")
            try:
                return getattr(nv, name)()
            except (nv.NVMLError, AttributeError):
                return None

        driver = ask("nvmlSystemGetDriverVersion")  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlSystemQueries.html#nvmlSystemGetDriverVersion
        nvml = ask("nvmlSystemGetNVMLVersion")      # https://docs.nvidia.com/deploy/nvml-api/group__nvmlSystemQueries.html#nvmlSystemGetNVMLVersion
        cuda = ask("nvmlSystemGetCudaDriverVersion_v2")  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlSystemQueries.html#nvmlSystemGetCudaDriverVersion_v2
        cuda_text = f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) and cuda > 0 else None
        return SystemInfo(_text(driver) if driver else None, _text(nvml) if nvml else None, cuda_text)

    def count(self) -> int:
        doing("NVML nvmlDeviceGetCount")
        try:
            return int(self.nv.nvmlDeviceGetCount())  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetCount_v2
        except self.nv.NVMLError as exc:
            raise SensorError(f"NVML could not count the GPUs ({_text(exc)}).",
                              "Check that nvidia-smi lists the GPUs on this host.") from None

    def handle_by_index(self, index: int):
        """Handle of GPU ``index``; GpuLostError when that GPU no longer answers."""
        nv = self.nv
        doing(f"NVML nvmlDeviceGetHandleByIndex on GPU {index}")
        try:
            return nv.nvmlDeviceGetHandleByIndex(index)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetHandleByIndex_v2
        except (nv.NVMLError_GpuIsLost, nv.NVMLError_ResetRequired) as exc:
            raise GpuLostError(f"GPU {index} stopped answering NVML ({_text(exc)}).", LOST_HINT) from None
        except nv.NVMLError_NoPermission:
            raise SensorError(f"No permission to open GPU {index} through NVML.",
                              "Run the sensor as a user allowed to open /dev/nvidia* (group video or root).") from None
        except nv.NVMLError as exc:
            raise SensorError(f"NVML could not open GPU {index} ({_text(exc)}).",
                              "Check nvidia-smi on this host.") from None

    def select(self, selector: str, param: str = "gpu") -> tuple[int, Any]:
        """Resolve ``--gpu`` (an index or a ``GPU-…`` UUID) to ``(index, handle)``.

        Raises:
            ConfigError: the index or UUID does not exist here, or the text is neither.
        """
        kind, value = parse_selector(selector, param)
        nv = self.nv
        count = self.count()
        if kind == "index":
            if value >= count:
                shown = f"0-{count - 1}" if count > 1 else ("0" if count == 1 else "none")
                raise ConfigError(param, f"GPU index {value} does not exist: this host has {count} GPU(s) "
                                         f"(indices {shown}; nvidia-smi -L lists them)")
            return value, self.handle_by_index(value)
        try:
            handle = nv.nvmlDeviceGetHandleByUUID(value)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetHandleByUUID
        except (nv.NVMLError_NotFound, nv.NVMLError_InvalidArgument):
            raise ConfigError(param, f"no GPU with UUID {value} on this host ({count} GPU(s); "
                                     f"nvidia-smi -L lists their UUIDs)") from None
        except (nv.NVMLError_GpuIsLost, nv.NVMLError_ResetRequired) as exc:
            raise GpuLostError(f"GPU {value} stopped answering NVML ({_text(exc)}).", LOST_HINT) from None
        except nv.NVMLError as exc:
            raise SensorError(f"NVML could not open GPU {value} ({_text(exc)}).", "Check nvidia-smi on this host.") from None
        try:
            index = int(nv.nvmlDeviceGetIndex(handle))  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetIndex
        except nv.NVMLError:
            index = -1
        return index, handle

    # -- NVLink only (east_west) -----------------------------------------------------
    def nvlink_counters(self) -> tuple[dict[str, tuple[int, int]], list[str]]:
        """Cumulative NVLink data counters of every GPU that has NVLink, in KiB.

        Returns ``({gpu key: (tx_kib, rx_kib)}, [GPUs that did not answer])``. Keyed per
        GPU (by UUID, else index) so a GPU missing from one scan cannot turn into a
        bogus jump of a host-wide total when it answers again.
        """
        nv = self.nv
        counters: dict[str, tuple[int, int]] = {}
        silent: list[str] = []
        wanted = [FI_NVLINK_LINK_COUNT, (FI_NVLINK_DATA_TX, SCOPE_ALL_LINKS), (FI_NVLINK_DATA_RX, SCOPE_ALL_LINKS)]
        for index in range(self.count()):
            doing(f"NVML NVLink counters of GPU {index}")
            try:
                handle = nv.nvmlDeviceGetHandleByIndex(index)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetHandleByIndex_v2
                values = nv.nvmlDeviceGetFieldValues(handle, wanted)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlFieldValueQueries.html#nvmlDeviceGetFieldValues
            except nv.NVMLError:
                silent.append(f"GPU {index}")
                continue
            got, _ = _field_map(values)
            links = _int(got.get(FI_NVLINK_LINK_COUNT))
            tx, rx = _int(got.get(FI_NVLINK_DATA_TX)), _int(got.get(FI_NVLINK_DATA_RX))
            if links == 0 or tx is None or rx is None:
                continue  # no NVLink on this GPU (PCIe cards), or counters not offered;
                # a link count NVML does not answer leaves the counters to decide
            try:
                key = _text(nv.nvmlDeviceGetUUID(handle))  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetUUID
            except nv.NVMLError:
                key = f"index-{index}"
            counters[key] = (tx, rx)
        return counters, silent

    # -- processes only (node_security) ----------------------------------------------
    def running_pids(self) -> tuple[dict[int, list[int]], list[str], bool]:
        """PIDs holding a compute or graphics context, per GPU index.

        Returns ``({index: [pid, ...]}, [GPUs that did not answer], denied)``;
        ``denied`` is True when NVML refused a process list (NoPermission).
        """
        nv = self.nv
        pids: dict[int, list[int]] = {}
        silent: list[str] = []
        denied = False
        for index in range(self.count()):
            try:
                handle = nv.nvmlDeviceGetHandleByIndex(index)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetHandleByIndex_v2
            except nv.NVMLError:
                silent.append(f"GPU {index}")
                continue
            found: set[int] = set()
            answered = False
            for name in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
                try:
                    # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetComputeRunningProcesses_v3
                    procs = getattr(nv, name)(handle)
                except nv.NVMLError_NoPermission:
                    denied = True
                    continue
                except nv.NVMLError:
                    continue
                answered = True
                found.update(int(p.pid) for p in procs or [])
            if answered:
                pids[index] = sorted(found)
            elif not denied:
                silent.append(f"GPU {index}")
        return pids, silent, denied

    # -- the sweep ------------------------------------------------------------------
    def sweep(self, index: int, handle, gpm_window: float = 0.0,
              sleep: Callable[[float], None] = time.sleep) -> GpuSample:
        """Read one GPU. ``gpm_window`` > 0 samples SM / tensor activity over that many seconds.

        Raises:
            GpuLostError: the GPU fell off the bus or needs a reset.
        """
        nv = self.nv
        sample = GpuSample(index=index, uuid="")
        call = _Caller(nv, sample)
        self._identity(call, handle, sample, index)
        util = call("nvmlDeviceGetUtilizationRates", handle)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetUtilizationRates
        if util is not None:
            sample.util_gpu, sample.util_memory = int(util.gpu), int(util.memory)

        # v2: "used" excludes memory reserved by the driver and firmware.
        mem = call("nvmlDeviceGetMemoryInfo", handle, version=MEMORY_V2)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetMemoryInfo_v2
        if mem is not None:
            sample.memory = MemoryInfo(int(mem.total), int(mem.reserved), int(mem.free), int(mem.used))

        sample.temperature = call("nvmlDeviceGetTemperature", handle, TEMPERATURE_GPU)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetTemperature
        sample.margin_temperature = call("nvmlDeviceGetMarginTemperature", handle)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetMarginTemperature
        if sample.margin_temperature is None:
            # Older drivers: derive the margin from the slowdown threshold.
            sample.slowdown_threshold = call("nvmlDeviceGetTemperatureThreshold", handle, THRESHOLD_SLOWDOWN)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetTemperatureThreshold
        sample.fan_speed = call("nvmlDeviceGetFanSpeed", handle)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetFanSpeed

        sample.power_mw = call("nvmlDeviceGetPowerUsage", handle)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetPowerUsage
        sample.power_limit_mw = call("nvmlDeviceGetEnforcedPowerLimit", handle)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetEnforcedPowerLimit
        sample.energy_mj = call("nvmlDeviceGetTotalEnergyConsumption", handle)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetTotalEnergyConsumption

        self._clocks(call, handle, sample)
        self._ecc(call, handle, sample)
        self._fields(call, handle, sample)
        self._pcie(call, handle, sample)
        self._processes(call, handle, sample)
        if sample.mig_enabled:
            self._mig(call, handle, sample)
        if gpm_window > 0:
            self._gpm(call, handle, sample, gpm_window, sleep)
        return sample

    def _identity(self, call: _Caller, handle, sample: GpuSample, index: int) -> None:
        """UUID (``index-N`` when it cannot be read), name, PCI bus id and MIG mode."""
        uuid = call("nvmlDeviceGetUUID", handle)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetUUID
        sample.uuid = _text(uuid) if uuid else f"index-{index}"
        name = call("nvmlDeviceGetName", handle)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetName
        sample.name = _text(name) if name else None
        pci = call("nvmlDeviceGetPciInfo_v3", handle)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetPciInfo_v3
        if pci is not None:
            sample.pci_bus_id = _text(pci.busId)

        mig = call("nvmlDeviceGetMigMode", handle)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlMultiInstanceGPU.html#nvmlDeviceGetMigMode
        if mig is not None:
            sample.mig_enabled = int(mig[0]) == 1

    def _clocks(self, call: _Caller, handle, sample: GpuSample) -> None:
        """SM and memory clocks, performance state, and why the clocks are held down."""
        sample.clock_sm = call("nvmlDeviceGetClockInfo", handle, CLOCK_SM, label="clock SM")  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetClockInfo
        sample.clock_mem = call("nvmlDeviceGetClockInfo", handle, CLOCK_MEM, label="clock memory")  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetClockInfo
        sample.pstate = call("nvmlDeviceGetPerformanceState", handle)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetPerformanceState

        reasons = call("nvmlDeviceGetCurrentClocksEventReasons", handle)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetCurrentClocksEventReasons
        if reasons is None and "nvmlDeviceGetCurrentClocksEventReasons" in sample.absent:
            # Drivers before 535 only know the old name.
            sample.absent.remove("nvmlDeviceGetCurrentClocksEventReasons")
            reasons = call("nvmlDeviceGetCurrentClocksThrottleReasons", handle)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetCurrentClocksThrottleReasons
        sample.clocks_event_reasons = reasons

    def _ecc(self, call: _Caller, handle, sample: GpuSample) -> None:
        mode = call("nvmlDeviceGetEccMode", handle)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetEccMode
        if mode is not None:
            sample.ecc_enabled = int(mode[0]) == 1
        if sample.ecc_enabled:
            # "Requires ECC Mode to be enabled": ask only then, or a disabled card reads as 0 errors.
            for attr, etype, ctype in (("ecc_corrected_volatile", ECC_CORRECTED, ECC_VOLATILE),
                                       ("ecc_uncorrected_volatile", ECC_UNCORRECTED, ECC_VOLATILE),
                                       ("ecc_corrected_aggregate", ECC_CORRECTED, ECC_AGGREGATE),
                                       ("ecc_uncorrected_aggregate", ECC_UNCORRECTED, ECC_AGGREGATE)):
                setattr(sample, attr, call("nvmlDeviceGetTotalEccErrors", handle, etype, ctype,  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetTotalEccErrors
                                           label=f"ECC {attr[4:].replace('_', ' ')}"))
        # Ampere and newer remap rows; older GPUs retire pages. Each answers NotSupported for the other.
        rows = call("nvmlDeviceGetRemappedRows", handle)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetRemappedRows
        if rows is not None:
            corr, unc, pending, failure = rows
            sample.remapped_correctable, sample.remapped_uncorrectable = int(corr), int(unc)
            sample.remap_pending, sample.remap_failure = bool(pending), bool(failure)
        else:
            sbe = call("nvmlDeviceGetRetiredPages", handle, RETIRE_SBE, label="retired pages SBE")  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetRetiredPages
            dbe = call("nvmlDeviceGetRetiredPages", handle, RETIRE_DBE, label="retired pages DBE")  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetRetiredPages
            if sbe is not None or dbe is not None:
                sample.retired_pages = len(sbe or []) + len(dbe or [])
                pending = call("nvmlDeviceGetRetiredPagesPendingStatus", handle)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetRetiredPagesPendingStatus
                sample.retired_pending = None if pending is None else bool(pending)

    def _fields(self, call: _Caller, handle, sample: GpuSample) -> None:
        wanted = [FI_MEMORY_TEMP, FI_NVLINK_LINK_COUNT, (FI_NVLINK_DATA_TX, SCOPE_ALL_LINKS),
                  (FI_NVLINK_DATA_RX, SCOPE_ALL_LINKS), FI_PCIE_TX_BYTES, FI_PCIE_RX_BYTES, FI_RECOVERY_ACTION]
        values = call("nvmlDeviceGetFieldValues", handle, wanted)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlFieldValueQueries.html#nvmlDeviceGetFieldValues
        if values is None:
            return
        got, failed = _field_map(values)
        for fid, ret in failed.items():
            if ret == NVML_ERROR_NO_PERMISSION:
                sample.denied.append(f"field {fid}")
            else:
                call._absent(f"field {fid}", f"NVML return {ret}")
        sample.memory_temperature = _int(got.get(FI_MEMORY_TEMP))
        sample.nvlink_links = _int(got.get(FI_NVLINK_LINK_COUNT))
        # A GPU without NVLink may still answer 0 for the counters, so 0 links means none;
        # a link count NVML does not answer (some drivers) leaves the counters to decide.
        if sample.nvlink_links or (sample.nvlink_links is None and FI_NVLINK_LINK_COUNT not in got):
            sample.nvlink_tx_kib = _int(got.get(FI_NVLINK_DATA_TX))
            sample.nvlink_rx_kib = _int(got.get(FI_NVLINK_DATA_RX))
        sample.pcie_tx_bytes = _int(got.get(FI_PCIE_TX_BYTES))
        sample.pcie_rx_bytes = _int(got.get(FI_PCIE_RX_BYTES))
        sample.recovery_action = _int(got.get(FI_RECOVERY_ACTION))

    def _pcie(self, call: _Caller, handle, sample: GpuSample) -> None:
        if sample.pcie_tx_bytes is None or sample.pcie_rx_bytes is None:
            # Without byte counters, NVML's own 20 ms sample is the only throughput there is.
            sample.pcie_tx_kbs = call("nvmlDeviceGetPcieThroughput", handle, PCIE_TX, label="PCIe TX throughput")  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetPcieThroughput
            sample.pcie_rx_kbs = call("nvmlDeviceGetPcieThroughput", handle, PCIE_RX, label="PCIe RX throughput")  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetPcieThroughput
        sample.pcie_replays = call("nvmlDeviceGetPcieReplayCounter", handle)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetPcieReplayCounter

    def _processes(self, call: _Caller, handle, sample: GpuSample) -> None:
        compute = call("nvmlDeviceGetComputeRunningProcesses", handle)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetComputeRunningProcesses_v3
        graphics = call("nvmlDeviceGetGraphicsRunningProcesses", handle)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetGraphicsRunningProcesses_v3
        if compute is None and graphics is None:
            return
        by_pid: dict[int, ProcessInfo] = {}
        for kind, procs in (("compute", compute or []), ("graphics", graphics or [])):
            for p in procs:
                pid = int(p.pid)
                used = p.usedGpuMemory if p.usedGpuMemory is None else int(p.usedGpuMemory)
                old = by_pid.get(pid)
                if old is None:
                    by_pid[pid] = ProcessInfo(pid, used, kind)
                else:  # one process with both contexts: NVML reports the same memory twice
                    by_pid[pid] = ProcessInfo(pid, max(old.used_bytes or 0, used or 0), "compute+graphics")
        sample.processes = sorted(by_pid.values(), key=lambda p: p.pid)

    def _mig(self, call: _Caller, handle, sample: GpuSample) -> None:
        # MIG handles become invalid after a reconfiguration, so enumerate them every scan.
        slots = call("nvmlDeviceGetMaxMigDeviceCount", handle) or 0  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlMultiInstanceGPU.html#nvmlDeviceGetMaxMigDeviceCount
        nv = self.nv
        for slot in range(int(slots)):
            try:
                mig = nv.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlMultiInstanceGPU.html#nvmlDeviceGetMigDeviceHandleByIndex
            except nv.NVMLError_NotFound:
                continue  # an empty slot
            except nv.NVMLError as exc:
                call.classify("nvmlDeviceGetMigDeviceHandleByIndex", exc)
                continue
            gi = call("nvmlDeviceGetGpuInstanceId", mig)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlMultiInstanceGPU.html#nvmlDeviceGetGpuInstanceId
            ci = call("nvmlDeviceGetComputeInstanceId", mig)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlMultiInstanceGPU.html#nvmlDeviceGetComputeInstanceId
            uuid = call("nvmlDeviceGetUUID", mig, label="MIG UUID")  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetUUID
            mem = call("nvmlDeviceGetMemoryInfo", mig, version=MEMORY_V2, label="MIG memory")  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html#nvmlDeviceGetMemoryInfo_v2
            memory = None if mem is None else MemoryInfo(int(mem.total), int(mem.reserved), int(mem.free), int(mem.used))
            sample.mig_instances.append(MigInstance(slot, _int(gi), _int(ci), _text(uuid) if uuid else None, memory))

    def _gpm(self, call: _Caller, handle, sample: GpuSample, window: float,
             sleep: Callable[[float], None]) -> None:
        """SM and tensor activity from GPM (Hopper+): two samples ``window`` seconds apart."""
        nv = self.nv
        support = call("nvmlGpmQueryDeviceSupport", handle)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlGpmFunctions.html#nvmlGpmQueryDeviceSupport
        if support is None or not int(support.isSupportedDevice):
            if support is not None:
                call._absent("GPM", "not a GPM device (Hopper or newer needed)")
            return
        first = call("nvmlGpmSampleAlloc")  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlGpmFunctions.html#nvmlGpmSampleAlloc
        second = call("nvmlGpmSampleAlloc")  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlGpmFunctions.html#nvmlGpmSampleAlloc
        try:
            if first is None or second is None:
                return
            if call("nvmlGpmSampleGet", handle, first) is None:  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlGpmFunctions.html#nvmlGpmSampleGet
                return
            sleep(window)
            if call("nvmlGpmSampleGet", handle, second) is None:  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlGpmFunctions.html#nvmlGpmSampleGet
                return
            request = nv.c_nvmlGpmMetricsGet_t()
            request.version = GPM_METRICS_GET_VERSION
            request.numMetrics = 2
            request.sample1, request.sample2 = first, second
            request.metrics[0].metricId = GPM_SM_UTIL
            request.metrics[1].metricId = GPM_TENSOR_UTIL
            if call("nvmlGpmMetricsGet", request) is None:  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlGpmFunctions.html#nvmlGpmMetricsGet
                return
            values = {}
            for i in range(2):
                metric = request.metrics[i]
                if int(metric.nvmlReturn) == NVML_SUCCESS:
                    values[int(metric.metricId)] = float(metric.value)
            sample.sm_activity = values.get(GPM_SM_UTIL)
            sample.tensor_activity = values.get(GPM_TENSOR_UTIL)
        finally:
            for s in (first, second):
                if s is not None:
                    call("nvmlGpmSampleFree", s)  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlGpmFunctions.html#nvmlGpmSampleFree


def _field_map(values) -> tuple[dict[int, Any], dict[int, int]]:
    """Split ``nvmlDeviceGetFieldValues`` entries into values and per-field return codes.

    The call succeeds when ANY field was filled: each entry carries its own return code.
    """
    got: dict = {}
    failed: dict[int, int] = {}
    for v in values:
        ret, fid = int(v.nvmlReturn), int(v.fieldId)
        if ret == NVML_SUCCESS:
            got[fid] = getattr(v.value, _VALUE_MEMBERS[int(v.valueType)])
        else:
            failed[fid] = ret
    return got, failed


def _int(value) -> int | None:
    return None if value is None else int(value)


def _init_error(nv, exc: Exception) -> SensorError:
    """Turn an ``nvmlInit`` failure into a whole-sensor error with a hint."""
    if isinstance(exc, nv.NVMLError_LibraryNotFound):
        return SensorError("The NVML library (libnvidia-ml.so.1 / nvml.dll) was not found.",
                           "Install the NVIDIA driver on this host; inside a container, run it with the "
                           "NVIDIA container toolkit (--gpus all).")
    if isinstance(exc, nv.NVMLError_DriverNotLoaded):
        return SensorError("The NVIDIA kernel driver is not loaded.",
                           "Check `lsmod | grep nvidia` and `nvidia-smi`; load the driver (modprobe nvidia) "
                           "or reinstall it for the running kernel.")
    if isinstance(exc, nv.NVMLError_LibRmVersionMismatch):
        return SensorError("The NVML library and the loaded NVIDIA kernel driver are different versions.",
                           "This follows a driver upgrade without a reboot: reboot the node (or reload the "
                           "nvidia kernel modules).")
    if isinstance(exc, nv.NVMLError_NoPermission):
        return SensorError("No permission to initialise NVML.",
                           "Run the sensor as a user allowed to open /dev/nvidia* (group video or root).")
    return SensorError(f"NVML did not start ({_text(exc)}).", "Check the NVIDIA driver with nvidia-smi.")


def parse_selector(selector: str, param: str = "gpu") -> tuple[str, Any]:
    """Parse ``--gpu``: a non-negative index or a ``GPU-<uuid>``.

    Returns:
        ``("index", int)`` or ``("uuid", str)``.

    Raises:
        ConfigError: the text is neither (checked before NVML starts).
    """
    text = str(selector).strip()
    if text.isdigit():
        return "index", int(text)
    if _UUID.match(text):
        return "uuid", text
    if text.upper().startswith("MIG-"):
        raise ConfigError(param, f"{text!r} is a MIG device UUID; give the parent GPU's index or GPU-… UUID "
                                 "(MIG instances are reported as channels of their GPU)")
    raise ConfigError(param, f"{text[:80]!r} is neither a GPU index (0, 1, …) nor a GPU UUID "
                             "(GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, as nvidia-smi -L shows)")


def probe() -> tuple[bool, str]:
    """Say whether NVML answers on this host, for ``prtg-ai doctor``."""
    try:
        import pynvml  # https://docs.nvidia.com/deploy/nvml-api/group__nvmlInitializationAndCleanup.html
    except ImportError:
        return False, "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return False, f"NVML did not start ({exc}): is the NVIDIA driver installed on this host?"
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        count = pynvml.nvmlDeviceGetCount()
        driver = driver.decode() if isinstance(driver, bytes) else driver
        return True, f"driver {driver}, {count} GPU(s)"
    except pynvml.NVMLError as exc:
        return False, f"NVML started but did not answer ({exc})"
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass
