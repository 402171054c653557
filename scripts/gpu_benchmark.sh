#!/usr/bin/env bash
# The GPU check, one run: diffusers' WanTransformer3DModel (bf16 autocast; first, in its own
# process, so each side has the whole GPU) and Wan 2.1 1.3B's DiT of ours at the same shape on
# the same GPU, side by side: train step in bfloat16 with cuDNN attention (its MFU against the
# bf16 matmul rate measured in the same run) and forward; then our sampler. Needs a CUDA build
# of jax (`pip install -e ".[cuda]"`) and torch with diffusers==0.42.1 (in PEER_PYTHON, default
# the same python). Captions are Wan's shape (512 x 4096) as fixed random states, so no text
# encoder is loaded.
#   bash scripts/gpu_benchmark.sh [OUT_JSON]          (default reference/bench/gpu.json)
# Environment: PYTHON, PEER_PYTHON, CASES (benchmark.py --cases), ATTENTION (cudnn|flash|xla).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
exec "$PYTHON" experiments/benchmark.py --config configs/world.py:variant=1.3B \
    --config.model.dtype=bfloat16 --config.model.attention_backend="${ATTENTION:-cudnn}" \
    --cases "${CASES:-1.3B:9x60x104:1x2x2:1}" --layouts= --text_shape 512:4096 \
    --matmul_size 8192 --sampler_steps 10 \
    --peer_python "${PEER_PYTHON:-$PYTHON}" --peer_device cuda \
    --out "${1:-reference/bench/gpu.json}"
