"""Bootstrap scripts: the shell one parses and its dry run prints the exact commands; the
PowerShell one is checked for structure (and parsed by pwsh when it is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ASSETS = Path(__file__).resolve().parents[2] / "installer" / "assets"
SH = ASSETS / "bootstrap" / "install-prtg-ai.sh"
PS1 = ASSETS / "bootstrap" / "install-prtg-ai.ps1"


def test_shell_bootstrap_parses():
    subprocess.run(["bash", "-n", str(SH)], check=True, timeout=30)


def test_shell_bootstrap_dry_run_prints_each_command(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "SYSTEMD_DIR": str(tmp_path / "units"), "TOKEN_FILE": str(tmp_path / "t" / "tok")}
    out = subprocess.run(["bash", str(SH), "--dry-run", "--agent", "--venv", "/opt/prtg ai", "--package", "w.whl",
                          "--prtg-dir", str(tmp_path / "var prtg")], capture_output=True, text=True, env=env,
                         timeout=30, check=True)
    lines = out.stdout.splitlines()
    assert lines[:3] == [
        r"+ python3 -m venv /opt/prtg\ ai",
        r"+ /opt/prtg\ ai/bin/python -m pip install --upgrade w.whl",
        rf"+ /opt/prtg\ ai/bin/python -m prtg_ai_installer install --role ssh-target --prtg-dir {tmp_path}/var\ prtg",
    ]
    assert lines[-3:-1] == ["+ systemctl daemon-reload", "+ systemctl enable --now prtg-ai-agent.service"]
    assert "runs /opt/prtg-ai/bin/prtg-ai" in out.stderr  # the unit's ExecStart path differs from --venv
    assert list(tmp_path.iterdir()) == []  # a dry run creates nothing


def test_shell_bootstrap_without_wrappers_or_agent_only_installs(tmp_path):
    out = subprocess.run(["bash", str(SH), "--dry-run", "--no-ssh-wrappers"], capture_output=True, text=True,
                         timeout=30, check=True).stdout.splitlines()
    assert [line.split()[1:4] for line in out if line.startswith("+")] == [
        ["python3", "-m", "venv"], ["/opt/prtg-ai/bin/python", "-m", "pip"]]


def test_shell_bootstrap_rejects_unknown_options():
    proc = subprocess.run(["bash", str(SH), "--frobnicate"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "unknown option --frobnicate" in proc.stderr


def test_powershell_bootstrap_structure():
    text = PS1.read_text(encoding="utf-8")
    assert re.search(r"\[Parameter\(Mandatory = \$true\)\]\[string\]\$Package", text)
    assert "$ErrorActionPreference = 'Stop'" in text and "Set-StrictMode -Version Latest" in text
    assert "@('-m', 'venv', $Venv)" in text
    assert "Join-Path $Venv 'Scripts\\python.exe'" in text
    assert "@('-m', 'pip', 'install', '--upgrade', $Package)" in text
    assert ("@('-m', 'prtg_ai_installer', 'install', '--role', ($Roles -join ','), '--python', $venvPython)"
            in text)
    assert "if ($LASTEXITCODE -ne 0) { throw" in text
    # Brackets and braces balance (a cheap syntax check where pwsh is missing).
    for a, b in ("()", "{}", "[]"):
        assert text.count(a) == text.count(b), (a, b)


@pytest.mark.skipif(not shutil.which("pwsh"), reason="pwsh not installed")
def test_powershell_bootstrap_parses_with_pwsh():
    cmd = ("$e=$null; [System.Management.Automation.Language.Parser]::ParseFile('%s',[ref]$null,[ref]$e) > $null;"
           " if ($e) { $e | ForEach-Object { $_.Message }; exit 1 }" % PS1)
    subprocess.run(["pwsh", "-NoProfile", "-Command", cmd], check=True, timeout=60)
