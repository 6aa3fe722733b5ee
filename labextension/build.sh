#!/usr/bin/env bash
# Build the JupyterLab extension into ../rlm_jupyter/labextension/ (what the wheel ships under
# share/jupyter/labextensions/rlm-jupyter-cells/). Needs Node >= 18, the npm registry, and
# jupyterlab installed in the Python on PATH (its staging/ folder is the builder's core path).
#   bash labextension/build.sh          install + build
#   bash labextension/build.sh --test   also run the TypeScript unit tests (jest)
set -euo pipefail
cd "$(dirname "$0")"
command -v jlpm >/dev/null || { echo "jlpm not found: pip install jupyterlab" >&2; exit 1; }
jlpm install
jlpm build:prod
if [[ "${1:-}" == "--test" ]]; then
    jlpm test
fi
echo "built: $(cd .. && pwd)/rlm_jupyter/labextension"
