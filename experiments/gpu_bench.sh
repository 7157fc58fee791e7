#!/usr/bin/env bash
# GPU throughput of jax_rnnlm against PyTorch on cuDNN: bench configs 1-4 at B = 20 and
# B = 128, one JSON per batch size, in about 8 minutes on one modern GPU; then the
# parallel-in-time cells (configs 5-10) against the LSTM of their size (2 and 3).
#
#   bash experiments/gpu_bench.sh [OUT_DIR]            # on the GPU machine
#   INSTALL=0 DEVICE=cpu QUICK=1 bash experiments/gpu_bench.sh /tmp/gpu_dry   # CPU dry run
#
# INSTALL=1 (default) installs the CUDA builds first: jax's CUDA extra at the version
# of the jax already installed, and a CUDA build of torch. The data comes from
# $JAX_RNNLM_DATA (ptb/); the machine needs no network beyond the package index.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu_bench}
DEVICE=${DEVICE:-gpu}
mkdir -p "$OUT"

if [ "${INSTALL:-1}" = 1 ]; then
    JAX_VERSION=$(python -c 'import jax; print(jax.__version__)')
    python -m pip install -q "jax[cuda12]==${JAX_VERSION}"
    python -m pip install -q torch --index-url https://download.pytorch.org/whl/cu126
fi
python - <<'PY'
import jax, torch
print("jax", jax.__version__, jax.default_backend(), jax.devices())
print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "no cuda",
      torch.backends.cudnn.version() if torch.cuda.is_available() else "")
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true

if [ "${QUICK:-0}" = 1 ]; then
    ARGS=(--quick --repeats 2 --profile 1)
    BATCHES=(4 8)
    CONFIGS=()
else
    ARGS=(--repeats 5 --profile 2 --windows 20 --eval-tokens 20000)
    BATCHES=(20 128)
    CONFIGS=(--configs 2,3,5,6,7,8,9,10)
fi
for B in "${BATCHES[@]}"; do
    # --threads stays at its default; on the GPU it only sizes the host thread pools
    python -m jax_rnnlm bench "${ARGS[@]}" --device "$DEVICE" --batch-size "$B" \
        --peers jax_rnnlm,jax_rnnlm-bf16,torch --convergence 0 --json "$OUT/b${B}.json" \
        | tee "$OUT/b${B}.txt"
done
if [ ${#CONFIGS[@]} -gt 0 ]; then
    python -m jax_rnnlm bench "${ARGS[@]}" "${CONFIGS[@]}" --device "$DEVICE" \
        --peers jax_rnnlm,jax_rnnlm-bf16 --convergence 0 --json "$OUT/parallel_cells.json" \
        | tee "$OUT/parallel_cells.txt"
fi
echo "results: $OUT/b*.json $OUT/parallel_cells.json"
