#!/usr/bin/env bash
# The test command of the README (and of CI): installs what the tests need, then runs them.
# The suite builds a tiny VLM offline and starts/stops its own vLLM CPU server.
# Run: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Headless Chromium renders the HTML report in tests/test_report.py (skipped without it).
# Debian's package, installed only where we are root with apt (CI, fresh machines).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "chromium could not be installed; the browser check of the report will skip"
fi
# One thread per process: on 2 shared cores tiny models run 10x slower with more.
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
