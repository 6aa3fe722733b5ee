"""rlm_jupyter: Recursive Language Models (arXiv 2512.24601) with a Jupyter kernel as the REPL.

Public names are imported lazily so that the environment kernel can import
``rlm_jupyter.environment.kernel_side`` without pulling in litellm.
"""

from __future__ import annotations

import logging

# Quiet by default (rlm_jupyter.logs: %config RLM.log_level / --log-level show the records).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = ["RLM", "RLMResult", "Trajectory", "load_jsonl", "show", "load_ipython_extension", "__version__"]


def __getattr__(name: str):
    if name == "RLM":
        from .rlm import RLM

        return RLM
    if name == "RLMResult":
        from .result import RLMResult

        return RLMResult
    if name in ("Trajectory", "load_jsonl"):
        from .core import trajectory

        return getattr(trajectory, name)
    if name == "show":  # the player over a recorded run (issue 11)
        from .jupyter.player import show

        return show
    raise AttributeError(f"module 'rlm_jupyter' has no attribute {name!r}")


def load_ipython_extension(ipython) -> None:
    """``%load_ext rlm_jupyter``: register the ``%%rlm`` cell magic and ``%rlm`` line magic."""
    from .jupyter.magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython) -> None:
    from .jupyter.magics import unload_ipython_extension as _unload

    _unload(ipython)
