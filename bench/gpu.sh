#!/usr/bin/env bash
# Run the --quick benchmark on a GPU machine and write its JSON into OUTDIR.
#
#   bench/gpu.sh OUTDIR
#
# The classifier picks CUDA and a half-precision dtype by itself (accelerator
# 'auto', dtype 'auto'). Budget: under 8 minutes on one H200. Python packages
# the machine lacks (ray[serve], starlette, fastapi, uvicorn, litserve, ...)
# can be installed from wheels carried in .whl/ (see the device tool's notes);
# everything else comes from the machine's own PyTorch/transformers.
set -euo pipefail
OUT=${1:?usage: bench/gpu.sh OUTDIR}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} OMP_WAIT_POLICY=PASSIVE RAY_USAGE_STATS_ENABLED=0
"$PY" - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
# Long enough to show the GPU's batch throughput, short enough for the budget.
# The served batching k8s gives a GPU (k8s/rayservice.yaml): large passes, the fewest of them.
timeout 470 "$PY" -m bench --quick --cases 2000 --threads 8 --out "$OUT/gpu-quick.json" \
  --app-arg batching.max_batch_tokens=8192 --app-arg batching.yield_batch_tokens=8192 \
  --app-arg batching.pass_cost_tokens=8192 2>&1 | tee "$OUT/gpu-quick.log"
