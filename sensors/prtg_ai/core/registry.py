"""The registry of sensors: id -> (module, class), imported lazily.

Lazy import keeps start-up small: ``prtg-ai run checkpoint_volume`` never imports
the GPU or AWS code. Sensor ids are the decided contract (design.md) and name the
module, the CLI argument, the HTTP path, the catalogue file and the testcases folder.
"""

from __future__ import annotations

import sys

from prtg_ai.core.errors import ConfigError

SENSORS: dict[str, tuple[str, str]] = {
    "checkpoint_volume": ("prtg_ai.checkpoint_volume.checkpoint_volume", "CheckpointVolumeSensor"),
    "gpu": ("prtg_ai.gpu.gpu", "GpuSensor"),
    "gpu_host": ("prtg_ai.gpu.gpu_host", "GpuHostSensor"),
    "east_west": ("prtg_ai.east_west.east_west", "EastWestSensor"),
    "gpu_spend": ("prtg_ai.gpu_spend.gpu_spend", "GpuSpendSensor"),
    "inference": ("prtg_ai.inference.inference", "InferenceSensor"),
    "node_security": ("prtg_ai.node_security.node_security", "NodeSecuritySensor"),
    "k8s_gpu": ("prtg_ai.gpu.k8s_gpu", "K8sGpuSensor"),
}


def sensor_ids() -> list[str]:
    return sorted(SENSORS)


def get(sensor_id: str):
    """Return the sensor class for ``sensor_id`` or raise ConfigError listing the known ids."""
    entry = SENSORS.get(sensor_id)
    if entry is None:
        shown = sensor_id if len(sensor_id) <= 60 else sensor_id[:57] + "..."
        raise ConfigError(None, f"Unknown sensor {shown!r}. Known sensors: {', '.join(sensor_ids())}")
    module_name, class_name = entry
    # __import__ rather than importlib.import_module: the scan's path does not load
    # importlib's Python layer (and warnings) for one call (start-up rows, benchmarks/).
    __import__(module_name)
    return getattr(sys.modules[module_name], class_name)
