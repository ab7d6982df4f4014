#!/usr/bin/env bash
# On the GPU machine, from the repo root: install the carried wheels (scripts/gpu_wheels.sh made them),
# then run every section of scripts/gpu_check.py; results in ${OUT:-gpu_check_out}/gpu_check.{json,md}.
set -uo pipefail
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 WANDB_MODE=offline
python3 scripts/gpu_check.py --out "${OUT:-gpu_check_out}" "$@"
