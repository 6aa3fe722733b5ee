"""Entry points of installed distributions, shared by the plug-in registries
(:mod:`rlm_jupyter.environment.registry`, :mod:`rlm_jupyter.lm.providers`).

Imports nothing from this project, so any layer may use it.
"""

from __future__ import annotations

import functools
from importlib import metadata


@functools.cache
def entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    """Name -> entry point of every installed distribution's entry points of ``group`` (a str,
    e.g. ``"rlm_jupyter.environments"``), read from package metadata once per process."""
    return {ep.name: ep for ep in metadata.entry_points(group=group)}
