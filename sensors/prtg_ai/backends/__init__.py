"""The only modules that touch the world (filesystems, sysfs/procfs, NVML, AWS)."""
