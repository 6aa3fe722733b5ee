"""The official implementation (PyPI ``rlms==0.1.3``) in the benchmark's OWN virtual
environment, never in the project's environment and never copied into the repo.

The venv lives in ``<bench cache>/rlms-venv`` (see :func:`bench.common.cache_dir`). Workloads
run there as ``<venv python> bench/overhead/official_worker.py <workload> ...``, which prints
one JSON object; :func:`run_worker` returns it.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import venv

from .common import cache_dir

OFFICIAL_SPEC = "rlms==0.1.3"
WORKER = pathlib.Path(__file__).resolve().parent / "overhead" / "official_worker.py"


class OfficialUnavailable(RuntimeError):
    """The official implementation could not be installed or started; the message says why."""


def venv_dir() -> pathlib.Path:
    """Directory of the benchmark's virtual environment holding ``rlms``."""
    return cache_dir() / "rlms-venv"


def venv_python() -> pathlib.Path:
    return venv_dir() / "bin" / "python"


def ensure_official(install: bool = True, timeout: float = 900.0) -> pathlib.Path:
    """The venv's Python with ``rlms==0.1.3`` importable, creating the venv and installing
    the package with pip if needed (``install=False``: only check).

    Raises:
        OfficialUnavailable: the venv cannot be created or ``pip install`` failed (no index, no
            network, incompatible Python), with pip's last lines.
    """
    py = venv_python()
    if py.exists() and _has_rlm(py):
        return py
    if not install:
        raise OfficialUnavailable(f"{OFFICIAL_SPEC} is not installed in {venv_dir()} (run: python -m bench setup-official)")
    try:
        if not py.exists():
            venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir())
        proc = subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", OFFICIAL_SPEC],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise OfficialUnavailable(f"could not create the venv or run pip: {exc}") from None
    if proc.returncode != 0 or not _has_rlm(py):
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise OfficialUnavailable(f"pip install {OFFICIAL_SPEC} failed (exit {proc.returncode}): {tail}")
    return py


def _has_rlm(py: pathlib.Path) -> bool:
    try:
        r = subprocess.run([str(py), "-c", "import rlm, rlm.environments.local_repl"], capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


def official_version(py: pathlib.Path) -> str:
    r = subprocess.run(
        [str(py), "-c", "from importlib.metadata import version; print(version('rlms'))"], capture_output=True, text=True
    )
    return r.stdout.strip() or "unknown"


def run_worker(py: pathlib.Path, *args: str, timeout: float = 1200.0) -> dict:
    """Run one workload of ``official_worker.py`` in the official venv; returns its JSON.

    Raises:
        OfficialUnavailable: the worker failed (its stderr's last lines are in the message).
    """
    try:
        proc = subprocess.run(
            [str(py), str(WORKER), *args], capture_output=True, text=True, timeout=timeout, cwd=str(WORKER.parent)
        )
    except subprocess.TimeoutExpired:
        raise OfficialUnavailable(f"official worker {' '.join(args)} timed out after {timeout:g} s") from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise OfficialUnavailable(f"official worker {' '.join(args)} failed (exit {proc.returncode}): {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":  # python -m bench.official: install and print the venv's python
    try:
        p = ensure_official()
        print(p, official_version(p))
    except OfficialUnavailable as e:
        print(f"official implementation unavailable: {e}", file=sys.stderr)
        sys.exit(1)
