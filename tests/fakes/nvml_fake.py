"""A scenario-driven fake of the ``pynvml`` module, and a recorder that writes real captures.

The fake is a module object built from the real ``pynvml``: constants, error classes and
ctypes structures are the real ones; every ``nvml*`` function is replaced. Functions the
fake serves check their arguments against the real function's signature, so a wrong
call fails the test; functions it does not serve raise ``AssertionError``; and a name
the real module lacks (``nvmlDeviceGetPowerUsag3``) is an ``AttributeError``, exactly as
with the real module.

Scenario files (``tests/testcases/gpu*/<case>/nvml.json``) hold, per GPU, the answer of
each call keyed ``"<function>"`` or ``"<function>:<arg>,<arg>"`` (arguments after the
handle), e.g. ``"nvmlDeviceGetClockInfo:1": 1980``. An answer ``{"error": "NotSupported"}``
raises ``pynvml.NVMLError_NotSupported`` (any ``NVMLError_<Name>`` works). Field values
live under ``"fields"`` keyed ``"<fieldId>"`` or ``"<fieldId>@<scopeId>"``; MIG devices
under ``"mig"`` by slot; GPM under ``"gpm"``. A call the scenario does not script answers
NotSupported and is listed in ``FakeNvml.unscripted`` (tests assert it stays empty for
complete captures, so a typo in a scenario key cannot hide).

``Recorder`` wraps the real module and writes what the real NVML answered in the same
format: ``tests/device/test_nvml_live.py`` uses it to turn a GPU machine's answers into
a new test case.
"""

from __future__ import annotations

import copy
import ctypes
import importlib
import inspect
import json
import time
import types
from pathlib import Path

REAL = importlib.import_module("pynvml")
if getattr(REAL, "__fake__", False):  # pragma: no cover - the shim imports the real one first
    raise ImportError("nvml_fake must import the real pynvml")

MISSING = object()
MEMORY_V2 = getattr(REAL, "nvmlMemory_v2", 0x02000028)


def load_scenario(path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def call_key(name: str, args: tuple, kwargs: dict) -> str:
    """The scenario key of a call: the function name plus the arguments after the handle."""
    if name == "nvmlDeviceGetMemoryInfo":
        return name + (":v2" if kwargs.get("version") or (args and args[0]) else "")
    return name + (":" + ",".join(str(int(a)) for a in args) if args else "")


def nvml_error(name: str) -> Exception:
    """The real pynvml exception ``NVMLError_<name>``."""
    cls = getattr(REAL, f"NVMLError_{name}", None)
    if cls is None:
        raise AssertionError(f"scenario names an unknown NVML error {name!r}")
    return cls()


class FakeHandle:
    """An opaque device handle: a GPU index and, for a MIG device, its slot."""

    def __init__(self, index: int, slot: int | None = None):
        self.index, self.slot = index, slot

    def __repr__(self) -> str:
        return f"<FakeHandle {self.index}{'' if self.slot is None else f'/mig{self.slot}'}>"


# Device functions answered straight from the scenario, with how to shape the answer.
def _plain(value):
    return value


def _struct(cls_name: str):
    def make(value):
        obj = getattr(REAL, cls_name)()
        for key, val in value.items():
            setattr(obj, key, val.encode() if isinstance(val, str) else val)
        return obj
    return make


def _procs(value):
    return [REAL.nvmlFriendlyObject({"gpuInstanceId": 0xFFFFFFFF, "computeInstanceId": 0xFFFFFFFF, **p})
            for p in value]


SHAPES = {
    "nvmlDeviceGetUUID": _plain, "nvmlDeviceGetName": _plain, "nvmlDeviceGetIndex": _plain,
    "nvmlDeviceGetPciInfo_v3": _struct("nvmlPciInfo_t"),
    "nvmlDeviceGetMigMode": list, "nvmlDeviceGetEccMode": list, "nvmlDeviceGetRemappedRows": tuple,
    "nvmlDeviceGetUtilizationRates": _struct("c_nvmlUtilization_t"),
    "nvmlDeviceGetTemperature": _plain, "nvmlDeviceGetMarginTemperature": _plain,
    "nvmlDeviceGetTemperatureThreshold": _plain, "nvmlDeviceGetFanSpeed": _plain,
    "nvmlDeviceGetPowerUsage": _plain, "nvmlDeviceGetEnforcedPowerLimit": _plain,
    "nvmlDeviceGetTotalEnergyConsumption": _plain, "nvmlDeviceGetClockInfo": _plain,
    "nvmlDeviceGetPerformanceState": _plain, "nvmlDeviceGetCurrentClocksEventReasons": _plain,
    "nvmlDeviceGetCurrentClocksThrottleReasons": _plain, "nvmlDeviceGetTotalEccErrors": _plain,
    "nvmlDeviceGetRetiredPages": list, "nvmlDeviceGetRetiredPagesPendingStatus": _plain,
    "nvmlDeviceGetPcieThroughput": _plain, "nvmlDeviceGetPcieReplayCounter": _plain,
    "nvmlDeviceGetComputeRunningProcesses": _procs, "nvmlDeviceGetGraphicsRunningProcesses": _procs,
    "nvmlDeviceGetMaxMigDeviceCount": _plain, "nvmlDeviceGetGpuInstanceId": _plain,
    "nvmlDeviceGetComputeInstanceId": _plain,
}


class FakeNvml(types.ModuleType):
    """The fake ``pynvml`` module for one scenario."""

    __fake__ = True

    def __init__(self, scenario: dict):
        super().__init__("pynvml")
        self.__dict__.update({k: v for k, v in vars(REAL).items() if not k.startswith("__")})
        self.__fake__ = True
        self.scenario = copy.deepcopy(scenario)
        self.calls: list[str] = []
        self.unscripted: list[str] = []
        self.initialised = 0
        self.served: set[str] = set()
        self._gpm_device: FakeHandle | None = None
        for name, value in vars(REAL).items():
            if name.startswith("nvml") and inspect.isfunction(value):
                setattr(self, name, self._unserved(name))
        for name in SHAPES:
            self._serve(name, self._device_call(name))
        for name in ("nvmlInit", "nvmlShutdown", "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex",
                     "nvmlDeviceGetHandleByUUID", "nvmlDeviceGetMigDeviceHandleByIndex",
                     "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetFieldValues", "nvmlSystemGetDriverVersion",
                     "nvmlSystemGetNVMLVersion", "nvmlSystemGetCudaDriverVersion_v2", "nvmlGpmQueryDeviceSupport",
                     "nvmlGpmSampleAlloc", "nvmlGpmSampleGet", "nvmlGpmMetricsGet", "nvmlGpmSampleFree"):
            self._serve(name, getattr(self, "_" + name))

    # -- plumbing -------------------------------------------------------------------
    def _serve(self, name: str, impl) -> None:
        real = getattr(REAL, name, None)
        if real is None:
            raise AttributeError(f"fake serves {name!r}, which the real pynvml does not have")
        signature = inspect.signature(real)

        def checked(*args, **kwargs):
            signature.bind(*args, **kwargs)  # TypeError on a call the real function would refuse
            self.calls.append(name)
            if name not in ("nvmlInit", "nvmlInitWithFlags") and not self.initialised:
                raise nvml_error("Uninitialized")
            self._maybe_block(name, args)
            return impl(*args, **kwargs)

        checked.__name__ = name
        setattr(self, name, checked)
        self.served.add(name)

    def _maybe_block(self, name: str, args: tuple) -> None:
        """A wedged driver: ``"block": {"function": NAME, "gpu": INDEX, "seconds": S}`` sleeps in that call
        (from the moment the file ``"armed_by"`` exists, when given).

        A GPU that fell off the bus makes NVML calls block (as ``nvidia-smi`` hangs); the
        sleep stands in for a C call that does not return for minutes.
        """
        block = self.scenario.get("block")
        if not block or block.get("function") != name:
            return
        if block.get("armed_by") and not Path(block["armed_by"]).exists():
            return  # not wedged yet: the test arms it after a warm-up scan
        gpu = block.get("gpu")
        if gpu is not None and not (args and isinstance(args[0], FakeHandle) and args[0].index == gpu):
            return
        self.blocked = getattr(self, "blocked", 0) + 1
        time.sleep(float(block.get("seconds", 600)))

    def _unserved(self, name: str):
        def unserved(*args, **kwargs):
            raise AssertionError(f"the NVML fake does not serve {name}; add it to tests/fakes/nvml_fake.py")
        return unserved

    @property
    def devices(self) -> list[dict]:
        return self.scenario.get("devices", [])

    def device(self, handle) -> dict:
        if not isinstance(handle, FakeHandle):
            raise AssertionError(f"not a device handle: {handle!r}")
        dev = self.devices[handle.index]
        if handle.slot is not None:
            dev = dev["mig"][str(handle.slot)]
        return dev

    def _answer(self, dev: dict, key: str):
        if dev.get("lost"):
            raise nvml_error("GpuIsLost")
        value = dev.get(key, MISSING)
        if value is MISSING:
            self.unscripted.append(key)
            raise nvml_error("NotSupported")
        if isinstance(value, dict) and set(value) == {"error"}:
            raise nvml_error(value["error"])
        return value

    def _device_call(self, name: str):
        shape = SHAPES[name]

        def impl(handle, *args, **kwargs):
            return shape(self._answer(self.device(handle), call_key(name, args, kwargs)))
        return impl

    def advance(self, seconds: float) -> None:
        """Move every counter by its scenario ``per_second`` rate (energy, PCIe/NVLink bytes)."""
        for dev in self.devices:
            for key, rate in dev.get("per_second", {}).items():
                target, name = (dev["fields"], key[7:]) if key.startswith("fields.") else (dev, key)
                target[name] = int(target[name] + rate * seconds)

    # -- library and system -----------------------------------------------------------
    def _nvmlInit(self):
        init = self.scenario.get("init")
        if init and init.get("error"):
            raise nvml_error(init["error"])
        self.initialised += 1

    def _nvmlShutdown(self):
        self.initialised = max(0, self.initialised - 1)

    def _system(self, name: str):
        value = self.scenario.get("system", {}).get(name, MISSING)
        if value is MISSING:
            self.unscripted.append(name)
            raise nvml_error("NotSupported")
        return value

    def _nvmlSystemGetDriverVersion(self):
        return self._system("nvmlSystemGetDriverVersion")

    def _nvmlSystemGetNVMLVersion(self):
        return self._system("nvmlSystemGetNVMLVersion")

    def _nvmlSystemGetCudaDriverVersion_v2(self):
        return self._system("nvmlSystemGetCudaDriverVersion_v2")

    def _nvmlDeviceGetCount(self):
        return len(self.devices)

    def _nvmlDeviceGetHandleByIndex(self, index):
        if not 0 <= int(index) < len(self.devices):
            raise nvml_error("InvalidArgument")
        if self.devices[index].get("lost_handle"):
            raise nvml_error("GpuIsLost")
        return FakeHandle(int(index))

    def _nvmlDeviceGetHandleByUUID(self, uuid):
        for i, dev in enumerate(self.devices):
            if dev.get("nvmlDeviceGetUUID") == uuid:
                return FakeHandle(i)
        raise nvml_error("NotFound")

    def _nvmlDeviceGetMigDeviceHandleByIndex(self, device, index):
        dev = self.device(device)
        if dev.get("lost"):
            raise nvml_error("GpuIsLost")
        if str(index) not in dev.get("mig", {}):
            raise nvml_error("NotFound")
        return FakeHandle(device.index, int(index))

    # -- structured answers ---------------------------------------------------------
    def _nvmlDeviceGetMemoryInfo(self, handle, version=None):
        value = self._answer(self.device(handle), call_key("nvmlDeviceGetMemoryInfo", (), {"version": version}))
        if version:
            if version != MEMORY_V2:
                raise nvml_error("ArgumentVersionMismatch")
            return _struct("c_nvmlMemory_v2_t")({"version": version, **value})
        return _struct("c_nvmlMemory_t")({k: value[k] for k in ("total", "free", "used")})

    def _nvmlDeviceGetFieldValues(self, handle, fieldIds):
        dev = self.device(handle)
        if dev.get("lost"):
            raise nvml_error("GpuIsLost")
        fields = dev.get("fields", MISSING)
        if fields is MISSING:
            self.unscripted.append("fields")
            raise nvml_error("NotSupported")
        if isinstance(fields, dict) and set(fields) == {"error"}:
            raise nvml_error(fields["error"])
        values = (REAL.c_nvmlFieldValue_t * len(fieldIds))()
        for i, fid in enumerate(fieldIds):
            fid, scope = (fid if isinstance(fid, tuple) else (fid, None))
            values[i].fieldId = fid
            values[i].scopeId = scope or 0
            key = f"{fid}@{scope}" if scope is not None else str(fid)
            value = fields.get(key, MISSING)
            if value is MISSING:
                values[i].nvmlReturn = REAL.NVML_ERROR_NOT_SUPPORTED
            elif isinstance(value, dict):
                values[i].nvmlReturn = getattr(REAL, "NVMLError_" + value["error"])().value
            elif isinstance(value, float):
                values[i].nvmlReturn, values[i].valueType = REAL.NVML_SUCCESS, REAL.NVML_VALUE_TYPE_DOUBLE
                values[i].value.dVal = value
            else:
                values[i].nvmlReturn, values[i].valueType = REAL.NVML_SUCCESS, REAL.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
                values[i].value.ullVal = int(value)
        return values

    # -- GPM ------------------------------------------------------------------------------
    def _gpm(self, handle) -> dict:
        dev = self.device(handle)
        if dev.get("lost"):
            raise nvml_error("GpuIsLost")
        return dev.get("gpm") or {}

    def _nvmlGpmQueryDeviceSupport(self, device):
        support = REAL.c_nvmlGpmSupport_t()
        support.isSupportedDevice = 1 if self._gpm(device).get("supported") else 0
        return support

    def _nvmlGpmSampleAlloc(self):
        return REAL.c_nvmlGpmSample_t()

    def _nvmlGpmSampleGet(self, device, gpmSample):
        self._gpm(device)
        self._gpm_device = device
        return gpmSample

    def _nvmlGpmMetricsGet(self, metricsGet):
        metrics = self._gpm(self._gpm_device).get("metrics", {})
        for i in range(metricsGet.numMetrics):
            m = metricsGet.metrics[i]
            value = metrics.get(str(m.metricId))
            if value is None:
                m.nvmlReturn = REAL.NVML_ERROR_NOT_SUPPORTED
            else:
                m.nvmlReturn, m.value = REAL.NVML_SUCCESS, float(value)
        return metricsGet

    def _nvmlGpmSampleFree(self, gpmSample):
        return None


def install(monkeypatch, scenario: dict) -> FakeNvml:
    """Put a fake built from ``scenario`` where ``import pynvml`` finds it (for one test)."""
    fake = FakeNvml(scenario)
    monkeypatch.setitem(__import__("sys").modules, "pynvml", fake)
    return fake


# -- recording the real NVML ------------------------------------------------------------
def _plain_value(value):
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, ctypes.Structure):
        return {name: _plain_value(getattr(value, name)) for name, *_ in value._fields_
                if not name.startswith("_")}
    if isinstance(value, (list, tuple)):
        return [_plain_value(v) for v in value]
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return {k: _plain_value(v) for k, v in vars(value).items()}
    return value


class Recorder:
    """Wraps the real ``pynvml`` and writes each answer into a scenario document."""

    __fake__ = False
    SKIP = {"busIdLegacy", "reserved", "version"}

    def __init__(self, real=REAL):
        self._real = real
        self.scenario: dict = {"system": {}, "devices": []}
        self._handles: dict[int, tuple[int, int | None]] = {}
        self._gpm_device = None

    def __getattr__(self, name):
        value = getattr(self._real, name)
        if not (name.startswith("nvml") and callable(value) and inspect.isfunction(value)):
            return value
        return self._wrap(name, value)

    def _address(self, handle) -> int:
        try:
            return ctypes.cast(handle, ctypes.c_void_p).value or 0
        except (TypeError, ctypes.ArgumentError):
            return id(handle)  # recording the fake itself (the recorder's own test)

    def _target(self, handle) -> dict | None:
        where = self._handles.get(self._address(handle))
        if where is None:
            return None
        index, slot = where
        dev = self.scenario["devices"][index]
        return dev if slot is None else dev.setdefault("mig", {}).setdefault(str(slot), {})

    def _wrap(self, name, fn):
        def wrapper(*args, **kwargs):
            try:
                result = fn(*args, **kwargs)
            except self._real.NVMLError as exc:
                self._record(name, args, kwargs, {"error": type(exc).__name__.replace("NVMLError_", "")})
                raise
            self._record(name, args, kwargs, result)
            return result
        return wrapper

    def _record(self, name, args, kwargs, result) -> None:
        failed = isinstance(result, dict) and set(result) == {"error"}
        if name.startswith("nvmlSystem"):
            self.scenario["system"][name] = result if failed else _plain_value(result)
        elif name == "nvmlDeviceGetHandleByIndex" and not failed:
            index = int(args[0])
            while len(self.scenario["devices"]) <= index:
                self.scenario["devices"].append({})
            self._handles[self._address(result)] = (index, None)
        elif name == "nvmlDeviceGetMigDeviceHandleByIndex" and not failed:
            parent = self._handles.get(self._address(args[0]))
            if parent:
                self._handles[self._address(result)] = (parent[0], int(args[1]))
        elif name == "nvmlDeviceGetFieldValues":
            dev = self._target(args[0])
            if dev is not None:
                if failed:
                    dev["fields"] = result
                    return
                fields = dev.setdefault("fields", {})
                for v in result:
                    key = str(v.fieldId) if v.scopeId in (0,) else f"{v.fieldId}@{v.scopeId}"
                    if v.nvmlReturn == self._real.NVML_SUCCESS:
                        member = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")[v.valueType]
                        fields[key] = getattr(v.value, member)
                    else:
                        err = self._real.NVMLError(v.nvmlReturn)
                        fields[key] = {"error": type(err).__name__.replace("NVMLError_", "")}
        elif name == "nvmlGpmQueryDeviceSupport":
            dev = self._target(args[0])
            if dev is not None:
                dev.setdefault("gpm", {})["supported"] = False if failed else bool(result.isSupportedDevice)
        elif name == "nvmlGpmSampleGet":
            self._gpm_device = args[0]
        elif name == "nvmlGpmMetricsGet" and not failed and self._gpm_device is not None:
            dev = self._target(self._gpm_device)
            if dev is not None:
                metrics = dev.setdefault("gpm", {}).setdefault("metrics", {})
                for i in range(result.numMetrics):
                    m = result.metrics[i]
                    if m.nvmlReturn == self._real.NVML_SUCCESS:
                        metrics[str(m.metricId)] = m.value
        elif name in SHAPES or name == "nvmlDeviceGetMemoryInfo":
            dev = self._target(args[0]) if args else None
            if dev is not None:
                value = result if failed else _plain_value(result)
                if isinstance(value, dict) and not failed:
                    value = {k: v for k, v in value.items() if k not in self.SKIP or name == "nvmlDeviceGetMemoryInfo"}
                    value.pop("version", None)
                dev[call_key(name, args[1:], kwargs)] = value
        elif name == "nvmlInit" and failed:
            self.scenario["init"] = result

    def write(self, path) -> None:
        Path(path).write_text(json.dumps(self.scenario, indent=1, sort_keys=True) + "\n", encoding="utf-8")
