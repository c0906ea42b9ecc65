"""NVML access through nvidia-ml-py (``import pynvml``); the only module that imports it.

Reads: the NVIDIA driver's NVML library (``libnvidia-ml.so.1`` / ``nvml.dll``).
Needs: an installed NVIDIA driver; no root for the metrics the pack reads.
"""

from __future__ import annotations


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
