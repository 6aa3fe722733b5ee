"""Helper bootstrap: the code that installs the REPL helpers in a fresh (or restarted) kernel.

Every kernel gets :mod:`.kernel_side` bound as ``_rlm_ks`` and installed
(``llm_query``, ``FINAL``, the output cap, the sub-call channel at ``server_path``), then the
stubs of the run's host tools (:mod:`.tools_side`). Only how the modules get there differs:

* :class:`ImportBootstrap`: the kernel imports them from this package's checkout (a local
  kernel, sandboxed or not, sees the package read-only);
* :class:`SourceBootstrap`: their source is sent in the code string and executed as modules
  ``rlm_jupyter_kernel_guard``/``rlm_jupyter_labels``/``rlm_jupyter_repl_helpers``/``rlm_jupyter_kernel_side``/
  ``rlm_jupyter_tools_side`` (a remote kernel, whose Python need not have rlm_jupyter; the task
  helpers' ``search`` then needs ``bm25s`` in that kernel).
"""

from __future__ import annotations

import functools
import json
import os

from ..core import labels
from . import kernel_guard, kernel_side, repl_helpers, tools_side

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@functools.lru_cache(maxsize=None)
def _source(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _as_module(module) -> str:
    """Lines that run ``module``'s source as module ``rlm_jupyter_<its name>``, left in
    ``_rlm_m`` (tracebacks name the file by its path inside the package)."""
    name = "rlm_jupyter_" + module.__name__.rsplit(".", 1)[-1]
    filename = os.path.relpath(module.__file__, PACKAGE_PARENT)
    return (
        f"_rlm_m = _rlm_types.ModuleType({name!r})\n"
        f"_rlm_sys.modules[{name!r}] = _rlm_m\n"
        f"exec(compile({_source(module.__file__)!r}, {filename!r}, 'exec'), _rlm_m.__dict__)\n"
    )


class ImportBootstrap:
    """Import the helpers from the checkout at ``package_parent`` (the dir holding ``rlm_jupyter``)."""

    def __init__(self, package_parent: str = PACKAGE_PARENT) -> None:
        self.package_parent = package_parent

    def helpers(self) -> str:
        """Lines that bind ``_rlm_ks`` (the kernel_side module)."""
        return (
            "import sys as _rlm_sys\n"
            f"_rlm_sys.path.append({self.package_parent!r})\n"
            "from rlm_jupyter.environment import kernel_side as _rlm_ks\n"
            "del _rlm_sys\n"
        )

    def tools(self, tools) -> str:
        """Lines that bind the host-tool stubs (``tools``: ``[name, doc]`` pairs; "" if none)."""
        return tools_side.bootstrap_code(tools)


class SourceBootstrap:
    """Send the helpers' source (for a kernel that cannot import this package)."""

    def helpers(self) -> str:
        """Lines that execute the sources of kernel_guard, core.labels, repl_helpers and
        kernel_side (in that order: each may need the ones before) as modules
        ``rlm_jupyter_<name>`` and bind kernel_side as ``_rlm_ks``."""
        return (
            "import sys as _rlm_sys, types as _rlm_types\n"
            + "".join(_as_module(m) for m in (kernel_guard, labels, repl_helpers, kernel_side))
            + "_rlm_ks = _rlm_m\n"
            "del _rlm_sys, _rlm_types, _rlm_m\n"
        )

    def tools(self, tools) -> str:
        """Like :meth:`ImportBootstrap.tools`, with tools_side's source sent along (as module
        ``rlm_jupyter_tools_side``; it finds kernel_side as ``rlm_jupyter_kernel_side``)."""
        if not tools:
            return ""
        return (
            "import sys as _rlm_sys, types as _rlm_types\n"
            + _as_module(tools_side)
            + f"_rlm_m.install(get_ipython(), {json.dumps([list(t) for t in tools])!r})\n"
            "del _rlm_sys, _rlm_types, _rlm_m\n"
        )


def bootstrap_code(loader: ImportBootstrap | SourceBootstrap, server_path: str, token: str,
                   max_output_chars: int | None, tools=None, extra: str = "") -> str:
    """The whole bootstrap cell: the helpers by ``loader``, ``kernel_side.install`` with the
    sub-call channel (``server_path``: Unix socket path or ``tcp://host:port``; ``token``) and
    the per-stream output cap (characters, ``None`` = none), ``extra`` lines, the tools."""
    return (
        loader.helpers()
        + f"_rlm_ks.install(get_ipython(), {server_path!r}, {token!r}, {max_output_chars!r})\n"
        + extra
        + loader.tools(tools)
    )
