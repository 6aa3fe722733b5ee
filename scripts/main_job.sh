#!/usr/bin/env bash
# Set everything up, then run the main job: an RLM with the embedded offline model answers a
# question about the Python documentation shipped with every Python (pydoc_data.topics,
# about 757,000 characters), and saves its trajectory as a notebook.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
if [[ -n "${VIRTUAL_ENV:-}" ]]; then BIN="$VIRTUAL_ENV/bin"; else BIN="$PWD/.venv/bin"; fi
DOCS="$("$BIN/python" -c 'import pydoc_data.topics as t; print(t.__file__)')"
"$BIN/rlm-jupyter" run \
    --context "$DOCS" \
    --query "${RLM_QUERY:-What exception does the assert statement raise when its expression is false?}" \
    --max-iterations 6 \
    --out "${RLM_OUT:-rlm_runs/main_job.ipynb}"
