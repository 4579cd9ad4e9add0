#!/usr/bin/env bash
# The test command of the README (and of CI): installs what the tests need, then runs them.
# The suite builds a tiny VLM offline and starts/stops its own vLLM CPU server.
# Run: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One thread per process: on 2 shared cores tiny models run 10x slower with more.
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
