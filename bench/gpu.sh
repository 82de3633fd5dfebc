#!/usr/bin/env bash
# The GPU figures (issue 8, item 4) in one call on a machine with a CUDA GPU, its own python3 holding torch:
#
#   bash bench/gpu.sh              # both parts; writes bench/out/gpu/*.txt, or $OUT/*.txt when OUT is set
#   bash bench/gpu.sh predict      # one part: embed or predict
#
# 1. bench/embed.py with the real ViT-B-16-SigLIP2 architecture (random init, native 224 px): pipeline
#    images/s (PNG decoding, preprocessing, one image per forward pass in float32, as the embed rule runs),
#    batched forward passes, reorder/CPU stability of the embeddings, encoder-only rates in float32 and bf16.
# 2. bench/predict.py --transformers in bfloat16: items/s through the transformers backend against
#    generate() alone, at batch 1, 8 and 32 (plus the OpenAI-compatible client's figures).
#
# Packages the machine lacks (open_clip, pydicom and its JPEG 2000 codec) may come as wheels in .whl/
# (docs/cluster.md says which); they are installed into a private folder, never into the machine's Python.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/out/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/spinebench-site .whl/*.whl || exit 1
    export PYTHONPATH="$PYTHONPATH:/tmp/spinebench-site"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv | tee "$out/gpu.txt"
python3 -c 'import torch, torchvision, open_clip, transformers; print("torch", torch.__version__, "torchvision", torchvision.__version__, "open_clip", open_clip.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available())' | tee -a "$out/gpu.txt"
parts=${*:-embed predict}
status=0
[[ " $parts " == *" embed "* ]] && { timeout 300 python3 bench/embed.py --architecture ViT-B-16-SigLIP2 --dtype bfloat16 --batch-size 64 \
    --images "${EMBED_IMAGES:-384}" --threads "$(nproc)" 2>&1 | tee "$out/embed.txt" || status=1; }
[[ " $parts " == *" predict "* ]] && { timeout 240 python3 bench/predict.py --transformers --torch-dtype bfloat16 \
    --items 128 2>&1 | tee "$out/predict.txt" || status=1; }
exit $status
