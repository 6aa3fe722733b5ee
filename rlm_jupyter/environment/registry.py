"""Which REPL environment an RLM runs in: a registry of backends by name.

A backend is a factory ``factory(rlm, python) -> REPLEnvironment``: ``rlm`` is the
:class:`~rlm_jupyter.rlm.RLM` whose traits configure it (``timeout``, ``sandbox``, ...),
``python`` the kernel interpreter (``None`` = this one); it returns an unstarted object
implementing :class:`~rlm_jupyter.core.protocols.REPLEnvironment`. ``RLM(environment=name)``
picks one.

Backends come from, in this order:

1. :func:`register_environment` in this process (tests, notebooks);
2. the built-ins: ``"kernel"`` (a local ipykernel, confined as ``RLM.sandbox`` says:
   bubblewrap, ``unshare`` or plain; :mod:`.kernel`) and ``"gateway"`` (a kernel on a Jupyter
   Kernel/Enterprise Gateway, ``RLM.gateway_url``; :mod:`.gateway`);
3. entry points of group :data:`GROUP` of installed distributions, e.g. in a third party's
   ``pyproject.toml``::

       [project.entry-points."rlm_jupyter.environments"]
       docker = "my_package.env:make_docker_environment"

The built-ins are declared the same way in this project's ``pyproject.toml``; they are also
known here so that a source checkout without installed metadata works.
"""

from __future__ import annotations

import threading
from importlib import metadata
from typing import Any, Callable

from ..plugins import entry_points

GROUP = "rlm_jupyter.environments"

EnvironmentFactory = Callable[[Any, "str | None"], Any]


def kernel_environment(rlm, python: str | None = None):
    """Built-in ``"kernel"``: a local :class:`~.kernel.KernelREPL` with ``rlm``'s sandbox settings."""
    from . import kernel  # looked up at call time: tests may replace kernel.KernelREPL

    return kernel.KernelREPL(
        timeout=rlm.timeout,
        python=python,
        sandbox={"auto": None, "on": True, "off": False}[rlm.sandbox],
        memory_limit_mb="auto" if rlm.memory_limit_mb is None else (rlm.memory_limit_mb or None),
        cpu_seconds=rlm.cpu_seconds,
        max_processes=rlm.max_processes,
        sandbox_paths=list(rlm.sandbox_paths),
    )


def gateway_environment(rlm, python: str | None = None):
    """Built-in ``"gateway"``: a :class:`~.gateway.GatewayREPL` on ``rlm.gateway_url``
    (``python`` does not apply: the gateway's kernelspec ``rlm.gateway_kernel_name`` does).

    Raises:
        ValueError: ``rlm.gateway_url`` is not set.
    """
    from .gateway import GatewayREPL

    if not rlm.gateway_url:
        raise ValueError("environment 'gateway' needs RLM.gateway_url (the gateway's http://host:port)")
    return GatewayREPL(
        rlm.gateway_url,
        kernel_name=rlm.gateway_kernel_name,
        channel_host=rlm.gateway_channel_host,
        auth_token=rlm.gateway_token or None,
        timeout=rlm.timeout,
    )


_lock = threading.Lock()
_factories: dict[str, EnvironmentFactory] = {"kernel": kernel_environment, "gateway": gateway_environment}


def register_environment(name: str, factory: EnvironmentFactory) -> None:
    """Make ``factory`` the backend ``name`` in this process (replacing any other of that name).

    Raises:
        ValueError: ``name`` is empty or ``factory`` is not callable.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("an environment needs a non-empty name")
    if not callable(factory):
        raise ValueError(f"the factory of environment {name!r} is not callable: {factory!r}")
    with _lock:
        _factories[name] = factory


def _installed() -> dict[str, metadata.EntryPoint]:
    return entry_points(GROUP)


def environment_names() -> list[str]:
    """Names of every backend known here (registered, built-in, installed), sorted."""
    return sorted(set(_factories) | set(_installed()))


def environment_factory(name: str) -> EnvironmentFactory:
    """The factory of backend ``name`` (an installed entry point is loaded on first use).

    Raises:
        ValueError: no backend has that name, or its entry point cannot be loaded.
    """
    factory = _factories.get(name)
    if factory is not None:
        return factory
    ep = _installed().get(name)
    if ep is None:
        raise ValueError(f"unknown REPL environment {name!r}; known: {', '.join(environment_names())}")
    try:
        factory = ep.load()
    except Exception as exc:
        raise ValueError(f"REPL environment {name!r} ({ep.value}) cannot be loaded: {type(exc).__name__}: {exc}") from None
    with _lock:
        _factories.setdefault(name, factory)
    return factory


def make_environment(name: str, rlm, python: str | None = None):
    """A new, unstarted REPL environment of backend ``name`` configured by ``rlm``.

    Raises:
        ValueError: unknown backend, or the backend refuses ``rlm``'s settings.
    """
    return environment_factory(name)(rlm, python)
