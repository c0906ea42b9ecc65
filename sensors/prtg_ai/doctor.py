"""``prtg-ai doctor``: what this host can monitor, and why not, one check per line.

Every read goes through the backends and the context's injected roots
(``PRTG_AI_SYS_ROOT`` / ``PRTG_AI_PROC_ROOT``), exactly as the sensors read.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import prtg_ai


def run_checks(check_cost_explorer: bool = False) -> list[tuple[str, bool, str]]:
    """(check, ok, detail) for every sensor's needs on this host."""
    from prtg_ai.backends import aws, nvml
    from prtg_ai.core.context import Context
    from prtg_ai.core.paths import default_state_dir

    ctx = Context()
    checks = []
    state_ok, state_detail = _writable(default_state_dir())
    checks.append(("State folder writable", state_ok, state_detail +
                   ("" if state_ok else " (set PRTG_AI_STATE_DIR to a writable folder)")))
    nvml_ok, nvml_detail = nvml.probe()
    checks.append(("NVML (gpu, gpu_host)", nvml_ok, nvml_detail))
    checks.append(_kernel_log_check())
    checks.append(_fabric_check(ctx))
    aws_ok, aws_detail = aws.credentials_status()
    checks.append(("AWS credentials (gpu_spend)", aws_ok, aws_detail))
    if aws_ok:
        checks += aws.permission_status(check_cost_explorer)
    checks.extend(_cloud_credential_checks())
    checks.append(("Filesystem access (checkpoint_volume)", True, "always available"))
    checks += _node_security_checks()
    checks.append(("Python", True, f"{sys.version.split()[0]} at {sys.executable}"))
    checks.append(("prtg-ai", True, f"{prtg_ai.__version__} ({os.path.dirname(os.path.abspath(prtg_ai.__file__))})"))
    return checks


def _writable(folder: Path) -> tuple[bool, str]:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-", delete=True):
            pass
        return True, str(folder)
    except OSError as exc:
        return False, f"{folder}: {exc.strerror or exc}"


def _node_security_checks() -> list[tuple[str, bool, str]]:
    """node_security: can the journal and the auth log files be read? (root for other users' sockets)"""
    from prtg_ai.backends import authlog

    checks = authlog.probe()
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    checks.append(("Process names of listeners (node_security)", root,
                   "running as root" if root else "not root: listeners of other users' processes show no process"))
    return checks


def _kernel_log_check() -> tuple[str, bool, str]:
    """Can this user read XIDs from the kernel log (what the GPU sensors need for XID channels)?"""
    from prtg_ai.backends import xid

    name = "Kernel log for XIDs (gpu, gpu_host)"
    if not sys.platform.startswith("linux"):
        return name, False, "XIDs are read from the Linux kernel log; this host is not Linux"
    read = xid.read_log(xid.KMSG)
    if read.text is None:
        return name, False, (f"{read.problem}. The GPU sensors then say that XIDs cannot be read; "
                             "give the agent CAP_SYSLOG (systemd unit) or point --xid-log at a readable kernel log")
    return name, True, f"{read.source} readable ({len(xid.parse(read.text))} XID line(s) in it now)"


def _fabric_check(ctx) -> tuple[str, bool, str]:
    """east_west: RDMA HCAs under <sys>/class/infiniband, else NIC-only monitoring from <sys>/class/net."""
    from prtg_ai.backends import netdev
    from prtg_ai.core.errors import SensorError

    name = "Fabric (east_west)"
    ib, net = ctx.sys_root / "class" / "infiniband", ctx.sys_root / "class" / "net"
    try:
        hcas = netdev.list_hcas(ctx.sys_root)
    except SensorError:
        hcas = []
    if hcas:
        return name, True, f"InfiniBand / RoCE HCAs under {ib}: {', '.join(hcas)}"
    nics = netdev.physical_nics(ctx.sys_root)
    if nics:
        return name, True, (f"NIC-only monitoring available: no RDMA HCA under {ib}, physical NICs under {net}: "
                            f"{', '.join(nics[:8])}")
    return name, False, f"neither RDMA HCAs under {ib} nor physical NICs under {net} (is PRTG_AI_SYS_ROOT right?)"


def _cloud_credential_checks() -> list[tuple[str, bool, str]]:
    """Azure and Google Cloud credentials for ``gpu_spend --cloud azure|gcp`` (never prints a token)."""
    from prtg_ai.backends import azure, gcp

    azure_ok, azure_detail = azure.credential_status()
    gcp_ok, gcp_detail = gcp.credential_status()
    return [("Azure credentials (gpu_spend --cloud azure)", azure_ok, azure_detail),
            ("Google Cloud credentials (gpu_spend --cloud gcp)", gcp_ok, gcp_detail)]
