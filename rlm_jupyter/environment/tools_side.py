"""Host-tool stubs INSIDE the environment kernel (stdlib only; imported by the bootstrap after
:mod:`.kernel_side`, and by :mod:`rlm_jupyter.interop.dspy_kernel_side`).

A stub (:class:`HostTool`) holds only the tool's name and its description (signature and
docstring): calling it sends ``{"op": "tool", "name": str, "call": "<JSON [args, kwargs]>"}``
over the sub-call channel; the function runs in the host process and its result comes back as
a JSON string (:mod:`rlm_jupyter.core.tools`). A failure of the tool (or of the channel) is
raised in the model's code as :class:`ToolError` with the tool's error as the message. The
stub is not a function: ``inspect.getsource`` has nothing to show, and the host function's code
never enters the kernel.

On the host, :func:`bootstrap_code` is the line the kernel's bootstrap adds when a run has
tools, and :data:`RESERVED` the names a tool may not take.
"""

from __future__ import annotations

import json
import sys

try:
    from . import kernel_side as _ks
except ImportError:  # sent as source to a remote kernel (gateway), where kernel_side was sent the same way
    _ks = sys.modules["rlm_jupyter_kernel_side"]

# names the REPL binds itself: a tool may not take them
RESERVED = _ks._PROTOCOL | {"context", "get_ipython", "In", "Out", "exit", "quit", "ToolError"}


class ToolError(RuntimeError):
    """A host tool raised (its error is the message), is unknown, or cannot be reached."""


class HostTool:
    """The kernel-side stand-in of a host tool: calling it calls the tool in the host process
    (JSON arguments and result). ``__doc__`` is the tool's signature and docstring."""

    def __init__(self, name: str, doc: str, request) -> None:
        self.__name__ = self.__qualname__ = name
        self.__doc__ = doc
        self._request = request

    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True  # noqa: F841 - IPython leaves this frame out of tracebacks
        name = self.__name__
        try:
            call = json.dumps([args, kwargs])
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"the arguments of {name}() must be JSON values (str, int, float, bool, None, list, dict): {exc}"
            ) from None
        try:
            result = self._request("tool", name=name, call=call)
        except _ks.SubcallError as exc:
            raise ToolError(f"{name}(): {exc}") from None
        return json.loads(result)

    def __repr__(self) -> str:
        first = (self.__doc__ or self.__name__).splitlines()[0]
        return f"<host tool {first}>"


def _request(op: str, **payload):
    __tracebackhide__ = True  # noqa: F841
    channel = _ks._state.channel
    if channel is None:
        raise ToolError("the REPL is not connected to its host (no sub-call channel)")
    return channel.request(op, **payload)


def make_stubs(tools_json: str, request=_request) -> dict:
    """``{name: HostTool}`` for the JSON list of ``[name, doc]`` pairs ``tools_json``."""
    return {name: HostTool(name, doc, request) for name, doc in json.loads(tools_json)}


def install(shell, tools_json: str) -> None:
    """Bind the stubs into the kernel's namespace as REPL helpers (restored after every cell if
    the model's code deletes or rebinds one, like ``llm_query``), and ``ToolError``."""
    stubs = make_stubs(tools_json)
    stubs["ToolError"] = ToolError
    _ks._HELPERS.update(stubs)
    shell.user_ns.update(stubs)
    _hide_own_frames(shell)


def _hide_own_frames(shell) -> None:
    """Leave this module's frames (the stub's insides, where ``ToolError`` is raised) out of
    every traceback the shell renders."""
    _ks._hide_frames_of(shell, _request.__code__.co_filename, "_rlm_tools_hide")


def bootstrap_code(tools) -> str:
    """Host side: the bootstrap lines that bind the stubs of ``tools`` (a list of ``[name, doc]``
    pairs; ``""`` when there are none)."""
    if not tools:
        return ""
    return (
        "from rlm_jupyter.environment import tools_side as _rlm_tools\n"
        f"_rlm_tools.install(get_ipython(), {json.dumps([list(t) for t in tools])!r})\n"
        "del _rlm_tools\n"
    )


def attach(env, tools):
    """Host side: give the (unstarted) environment ``env`` the stubs to bind at its bootstrap
    (``tools``: ``[name, doc]`` pairs; :meth:`KernelREPL._bootstrap` reads ``env.tools``); returns
    ``env``."""
    if tools:
        env.tools = [list(t) for t in tools]
    return env
