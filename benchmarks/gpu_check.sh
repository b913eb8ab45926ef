#!/usr/bin/env bash
# Embedding throughput on one GPU, decoding included, in well under 5 minutes.
#
#   bash benchmarks/gpu_check.sh            # results in benchmarks/results/ (and in $OUT when set)
#
# Runs benchmarks/embed_throughput.py with --device cuda on 16384 DECaLS-sized JPEGs (424 px;
# 1024 distinct files cycled, each row decoded from its file): efficientnet_b0 and MaxViT Tiny at
# 224 px, the eager fp32 baseline (single-process decoding, first 2048 images) against raregal's path (DataLoader
# with cores-1 decoding workers, pinned memory, channels_last, bf16/fp16 autocast). Goal:
# >= 3,000 images/s for efficientnet_b0 on one H100.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
N=${N_IMAGES:-16384}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" - <<'PYEOF'
import torch, sys
if not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device (torch %s)" % torch.__version__)
print("torch", torch.__version__, "on", torch.cuda.get_device_name(), "| CPU cores:", __import__("os").cpu_count())
PYEOF
RESULT=benchmarks/results/embed_throughput_cuda.json
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-/tmp/numba_cache}
timeout 230 "$PY" benchmarks/embed_throughput.py --device cuda --n-images "$N" --batch-size 256 --baseline-images 2048 \
    --archs efficientnet_b0 maxvit_tiny_rw_224 --out "$RESULT"
if [ -n "${OUT:-}" ]; then cp "$RESULT" "$OUT/"; fi
# cuML labels against the CPU path (skipped with a note when cuML is not installed)
timeout 50 "$PY" benchmarks/cuml_agreement.py --n 10000 || echo "cuml_agreement failed (see above)"
if [ -n "${OUT:-}" ] && [ -f benchmarks/results/cuml_agreement.json ]; then cp benchmarks/results/cuml_agreement.json "$OUT/"; fi
