#!/usr/bin/env bash
# Bootstrap prtg-ai on a Linux GPU node: a virtual environment, the pack, then the
# SSH Script Advanced wrappers in /var/prtg/scriptsxml and/or the HTTP agent's
# systemd unit (when the pack ships one).
#
#   install-prtg-ai.sh [--package WHEEL_OR_SPEC] [--venv DIR] [--prtg-dir DIR]
#                      [--no-ssh-wrappers] [--agent] [--dry-run]
#
# --dry-run prints every command instead of running it. Re-running is safe: pip
# upgrades in place and "install" leaves unchanged files alone.
set -euo pipefail

PACKAGE="prtg-ai"
VENV="/opt/prtg-ai"  # the agent unit runs /opt/prtg-ai/bin/prtg-ai
PRTG_DIR="/var/prtg"
SSH_WRAPPERS=1
AGENT=0
DRY_RUN=0
PYTHON="${PYTHON:-python3}"
SYSTEMD_DIR="${SYSTEMD_DIR:-/etc/systemd/system}"
UNIT="prtg-ai-agent.service"
TOKEN_FILE="${TOKEN_FILE:-/etc/prtg-ai/agent.token}"  # the unit's LoadCredential source

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --package) PACKAGE="$2"; shift 2 ;;
    --venv) VENV="$2"; shift 2 ;;
    --prtg-dir) PRTG_DIR="$2"; shift 2 ;;
    --no-ssh-wrappers) SSH_WRAPPERS=0; shift ;;
    --agent) AGENT=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install-prtg-ai.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

# Print the command (shell-quoted) in a dry run, run it otherwise.
run() {
  if [ "$DRY_RUN" = 1 ]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

VPY="$VENV/bin/python"
run "$PYTHON" -m venv "$VENV"
run "$VPY" -m pip install --upgrade "$PACKAGE"

if [ "$SSH_WRAPPERS" = 1 ]; then
  run "$VPY" -m prtg_ai_installer install --role ssh-target --prtg-dir "$PRTG_DIR"
fi

if [ "$AGENT" = 1 ]; then
  if [ "$DRY_RUN" = 1 ]; then
    unit_src="$VENV/.../prtg_ai_installer/assets/systemd/$UNIT"
  else
    unit_src="$("$VPY" -c 'from prtg_ai_installer.data import assets_dir; print(assets_dir() / "systemd" / "'"$UNIT"'")')"
  fi
  if [ "$DRY_RUN" = 1 ] || [ -f "$unit_src" ]; then
    if [ "$VENV" != "/opt/prtg-ai" ]; then
      echo "install-prtg-ai.sh: warning: $UNIT runs /opt/prtg-ai/bin/prtg-ai, not $VENV" >&2
    fi
    if [ ! -e "$TOKEN_FILE" ]; then
      # One long random token, readable by root only; PRTG sends it as ?token=...
      run install -d -m 0700 "$(dirname "$TOKEN_FILE")"
      if [ "$DRY_RUN" = 1 ]; then
        printf '+ (umask 077; %q -c ...token_urlsafe(32)... > %q)\n' "$VPY" "$TOKEN_FILE"
      else
        (umask 077; "$VPY" -c 'import secrets; print(secrets.token_urlsafe(32))' > "$TOKEN_FILE")
        echo "created $TOKEN_FILE: put its token into PRTG's HTTP Data Advanced URLs"
      fi
    fi
    run install -m 0644 "$unit_src" "$SYSTEMD_DIR/$UNIT"
    run systemctl daemon-reload
    run systemctl enable --now "$UNIT"
  else
    echo "install-prtg-ai.sh: this release ships no $UNIT; skipped the agent" >&2
  fi
fi

echo "prtg-ai is installed in $VENV; try: $VPY -m prtg_ai.cli run gpu --format table"
