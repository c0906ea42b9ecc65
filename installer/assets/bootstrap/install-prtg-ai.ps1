<#
.SYNOPSIS
  Bootstrap prtg-ai on a Windows PRTG probe (and/or core server).

.DESCRIPTION
  Creates a virtual environment, installs the prtg-ai wheel into it, then runs
  "prtg_ai_installer install" so PRTG's Custom Sensors folders get wrappers that
  call this venv's python.exe by its absolute path. Re-running is safe.
  The venv defaults to %ProgramData%\prtg-ai\venv so that the PRTG probe service
  account (LocalSystem by default) can read it.

.EXAMPLE
  .\install-prtg-ai.ps1 -Package .\prtg_ai-0.1.0-py3-none-any.whl -Roles probe,core
.EXAMPLE
  .\install-prtg-ai.ps1 -Package .\prtg_ai-0.1.0-py3-none-any.whl -DryRun
#>
[CmdletBinding()]
param(
    # Wheel file or package spec for pip.
    [Parameter(Mandatory = $true)][string]$Package,
    [string]$Venv = (Join-Path $env:ProgramData 'prtg-ai\venv'),
    # PRTG program folder; empty = detected by the installer (registry, then the standard folder).
    [string]$PrtgDir = '',
    [string[]]$Roles = @('probe'),
    # A Python 3.10+ to create the venv with (python.exe path, or "py" for the launcher).
    [string]$Python = 'py',
    [switch]$DryRun
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

# Print the command in a dry run, run it (and stop on a non-zero exit) otherwise.
function Invoke-Step {
    param([string]$Exe, [string[]]$Arguments)
    if ($DryRun) {
        $shown = @($Exe) + $Arguments | ForEach-Object { if ($_ -match '\s') { '"' + $_ + '"' } else { $_ } }
        Write-Output ('+ ' + ($shown -join ' '))
        return
    }
    & $Exe @Arguments
    if ($LASTEXITCODE -ne 0) { throw "$Exe exited with code $LASTEXITCODE" }
}

$venvArgs = @('-m', 'venv', $Venv)
if ($Python -eq 'py') { $venvArgs = @('-3') + $venvArgs }
Invoke-Step $Python $venvArgs

$venvPython = Join-Path $Venv 'Scripts\python.exe'
Invoke-Step $venvPython @('-m', 'pip', 'install', '--upgrade', $Package)

$installArgs = @('-m', 'prtg_ai_installer', 'install', '--role', ($Roles -join ','), '--python', $venvPython)
if ($PrtgDir) { $installArgs += @('--prtg-dir', $PrtgDir) }
Invoke-Step $venvPython $installArgs

Write-Output "prtg-ai is installed in $Venv; try: & '$venvPython' -m prtg_ai.cli run gpu --format table"
