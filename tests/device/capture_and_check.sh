#!/usr/bin/env bash
# One-shot device check for a GPU machine: run both GPU sensors against the real NVML,
# validate them, and record a capture (NVML answers in the scenario format, the sensor
# output, nvidia-smi -q for reference) under $PRTG_AI_CAPTURE_DIR (default $OUT/nvml-capture).
set -uo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export PRTG_AI_CAPTURE_DIR="${PRTG_AI_CAPTURE_DIR:-${OUT:-/tmp}/nvml-capture}"
export PRTG_AI_STATE_DIR="${PRTG_AI_STATE_DIR:-$(mktemp -d)}"
mkdir -p "$PRTG_AI_CAPTURE_DIR"
{ nvidia-smi -q || true; } > "$PRTG_AI_CAPTURE_DIR/nvidia-smi-q.txt" 2>&1
"$PY" -c "import pynvml, sys; print('nvidia-ml-py', getattr(pynvml, '__version__', '?'), sys.version)" \
  > "$PRTG_AI_CAPTURE_DIR/versions.txt" 2>&1
"$PY" -m pytest -q -s -m gpu -p no:cacheprovider tests/device/test_nvml_live.py 2>&1 | tee "$PRTG_AI_CAPTURE_DIR/pytest.txt"
rc=${PIPESTATUS[0]}
for sensor in gpu gpu_host; do
  "$PY" -m prtg_ai.cli run "$sensor" --format table > "$PRTG_AI_CAPTURE_DIR/$sensor.table.txt" 2>&1
  "$PY" -m prtg_ai.cli run "$sensor" > "$PRTG_AI_CAPTURE_DIR/$sensor.json" 2>&1
  "$PY" -m prtg_ai.cli validate "$PRTG_AI_CAPTURE_DIR/$sensor.json" || rc=1
done
echo "capture in $PRTG_AI_CAPTURE_DIR (exit $rc)"
exit "$rc"
