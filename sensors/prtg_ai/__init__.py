"""prtg-ai: a PRTG custom sensor pack for AI infrastructure.

The package in layers, lowest first; a module imports only its own layer or lower
ones (tests/contract/test_layers.py fails on anything else; docs/development.md
explains each layer):

0. ``prtg`` (PRTG's wire contract, pure), ``data`` (package data folders)
1. ``maths`` (counters, trends, baselines, records: pure), ``catalog`` (every channel)
2. ``core`` (runtime, context, parameters, state, deadlines, logging)
3. ``backends`` (the only modules that touch the world: NVML, sysfs, procfs, disks,
   sockets, HTTP, the clouds' SDKs)
4. a package per sensor family, with what serves only it: ``gpu`` (gpu, gpu_host,
   k8s_gpu), ``gpu_spend``, ``inference``, ``node_security``, ``checkpoint_volume``,
   ``east_west``; no sensor package imports another
5. ``agent`` (HTTP Data Advanced server, push client), ``actions`` (stop-idle-gpus)
6. ``build`` (renders README/doc tables, lookups and device templates)
7. ``prtg_ai_installer`` (the installer, a separate top-level package)
8. ``cli`` (the console script), ``run_cli`` (``prtg-ai run``), ``commands``, ``doctor``
"""

__version__ = "0.1.0"
