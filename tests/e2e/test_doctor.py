"""``prtg-ai doctor`` on real parts: fixture sysfs roots, the real /dev/kmsg with and without
CAP_SYSLOG, and moto's server over HTTP for the AWS identity and permission checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import UNPRIVILEGED, cli_env, is_root

TESTCASES = Path(__file__).resolve().parents[1] / "testcases"


def doctor(env: dict, *args: str, prefix: list[str] | None = None) -> dict:
    proc = subprocess.run([*(prefix or []), sys.executable, "-m", "prtg_ai.cli", "doctor", "--json", *args],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return {c["check"]: c for c in json.loads(proc.stdout)}


def no_aws(env: dict, tmp_path: Path) -> dict:
    env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true")
    return env


def test_doctor_honours_the_sys_root_and_reports_nic_only_fabric(tmp_path):
    fixture = TESTCASES / "east_west" / "ndr_8port" / "sys"
    checks = doctor(no_aws(cli_env(tmp_path / "state", {"PRTG_AI_SYS_ROOT": str(fixture)}), tmp_path))
    fabric = checks["Fabric (east_west)"]
    assert fabric["ok"] and str(fixture / "class" / "infiniband") in fabric["detail"] and "mlx5_7" in fabric["detail"]
    nic_only = tmp_path / "sys"
    (nic_only / "class" / "net" / "eth0" / "device").mkdir(parents=True)
    (nic_only / "class" / "net" / "lo").mkdir(parents=True)  # virtual: no device link
    checks = doctor(no_aws(cli_env(tmp_path / "state", {"PRTG_AI_SYS_ROOT": str(nic_only)}), tmp_path))
    fabric = checks["Fabric (east_west)"]
    assert fabric["ok"] and fabric["detail"].startswith("NIC-only monitoring available") and "eth0" in fabric["detail"]
    assert "lo" not in fabric["detail"].split(": ")[-1].split(", ")


@pytest.mark.skipif(not sys.platform.startswith("linux") or not is_root(), reason="needs root to drop CAP_SYSLOG")
def test_doctor_checks_kernel_log_access_with_and_without_cap_syslog(tmp_path):
    env = no_aws(cli_env(tmp_path / "state"), tmp_path)
    assert doctor(env)["Kernel log for XIDs (gpu, gpu_host)"]["ok"] is True
    restricted = Path("/proc/sys/kernel/dmesg_restrict").read_text().strip() == "1"
    drop = [UNPRIVILEGED[0], "--inh-caps=-all", "--bounding-set=-syslog,-sys_admin", "--"]
    check = doctor(env, prefix=drop)["Kernel log for XIDs (gpu, gpu_host)"]
    assert check["ok"] is (not restricted)
    if restricted:
        assert "CAP_SYSLOG" in check["detail"] and "XIDs cannot be read" in check["detail"]


def test_doctor_checks_aws_identity_and_permissions_against_moto(tmp_path):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = no_aws(cli_env(tmp_path / "state"), tmp_path)
        env.update(AWS_ACCESS_KEY_ID="AKIAIOSFODNN7EXAMPLE", AWS_SECRET_ACCESS_KEY="doctor-secret-value-123",
                   AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=f"http://{host}:{port}")
        checks = doctor(env)
        assert checks["AWS credentials (gpu_spend)"]["ok"]
        assert checks["AWS identity (gpu_spend)"]["ok"] and "account" in checks["AWS identity (gpu_spend)"]["detail"]
        assert checks["AWS ec2:DescribeInstances (gpu_spend fleet)"]["ok"]
        assert "not checked" in checks["AWS ce:GetCostAndUsage (gpu_spend)"]["detail"]
        assert "doctor-secret-value-123" not in json.dumps(checks)
    finally:
        server.stop()
    # Nothing listening any more: the identity check says so, no traceback.
    checks = doctor(env)
    assert checks["AWS identity (gpu_spend)"]["ok"] is False
