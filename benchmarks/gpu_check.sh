#!/usr/bin/env bash
# GPU check (a few minutes on one GPU): the attention probe under sdpa and flash_attention_2 (if flash-attn is
# installed), then one bf16 training cell of a Qwen2-0.5B-shaped model at sequence length 512 with tokens/s and
# MFU. Details in benchmarks/gpu_check.py; results in benchmarks/results/gpu_check.json.
#   benchmarks/gpu_check.sh [--batch 64] [--steps 5] [--attention bidirectional|causal]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU here (nvidia-smi missing or sees no device); run it on a GPU node" >&2
    exit 2
fi
nvidia-smi -L
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$PYTHON" benchmarks/gpu_check.py "$@"
