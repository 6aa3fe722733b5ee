"""Context transfer: how ``context`` gets from the parent into the kernel.

Both ways encode the value the same way in the parent (:func:`encode_context`: ``str`` as
UTF-8 text, ``bytes`` raw, anything else pickled with protocol 5 — nothing is ever unpickled
from the kernel) and end in ``kernel_side.load_bytes``/``load_context``, which binds
``context`` in the kernel:

* :class:`FileTransfer` (a local kernel): a private file in the work dir, read by the kernel
  and deleted right after, so the code string never carries the data;
* :class:`ChunkTransfer` (a remote kernel on a gateway, with no shared file system): base64
  chunks of :data:`CHUNK_BYTES` through the kernel channel.

A transfer is given the environment's ``silent(code, timeout=...)`` coroutine (runs code with
no outputs and returns the ``execute_reply`` content).
"""

from __future__ import annotations

import asyncio
import base64
import os
import pickle
import tempfile
from typing import Any, Awaitable, Callable

from ..core.context import ContextError, unpicklable

CONTEXT_WRITE_CHARS = 8_000_000  # characters encoded at a time (a 400 MB str needs no second copy)
CHUNK_BYTES = 4 * 1024 * 1024  # context bytes per execute request (ChunkTransfer)
LOAD_TIMEOUT = 600.0  # seconds the kernel may take to read or decode the context

Silent = Callable[..., Awaitable[dict]]


def encode_context(context: Any) -> tuple[bytes, str]:
    """``(data, kind)`` of ``context``: kind ``"text"`` (UTF-8), ``"bytes"`` or ``"pickle"``.

    Raises:
        ContextError: the value cannot be pickled.
    """
    if isinstance(context, str):
        return context.encode("utf-8", errors="surrogatepass"), "text"
    if isinstance(context, (bytes, bytearray, memoryview)):
        return bytes(context), "bytes"
    try:
        return pickle.dumps(context, protocol=5), "pickle"
    except Exception as exc:
        raise unpicklable(context, f"{type(exc).__name__}: {exc}") from None


def prepare_context(context: Any, directory: str) -> tuple[str, str]:
    """Write ``context`` to a private file (mode 0600) in ``directory``; returns ``(path, kind)``
    with kind as for :func:`encode_context`. A ``str`` is encoded in slices of
    :data:`CONTEXT_WRITE_CHARS` characters, and a pickle streamed to the file, so the parent
    never holds a second full copy.

    Raises:
        ContextError: the value cannot be pickled.
    """
    fd, path = tempfile.mkstemp(prefix="context-", dir=directory)
    with os.fdopen(fd, "wb") as f:
        if isinstance(context, str):
            for i in range(0, len(context), CONTEXT_WRITE_CHARS):
                f.write(context[i : i + CONTEXT_WRITE_CHARS].encode("utf-8", errors="surrogatepass"))
            return path, "text"
        if isinstance(context, (bytes, bytearray, memoryview)):
            f.write(bytes(context))
            return path, "bytes"
        try:
            pickle.dump(context, f, protocol=5)
        except Exception as exc:
            raise unpicklable(context, f"{type(exc).__name__}: {exc}") from None
    return path, "pickle"


def _failed(where: str, reply: dict) -> ContextError:
    return ContextError(f"the {where} could not load the context: {reply.get('ename')}: {reply.get('evalue')}")


class FileTransfer:
    """Through a private file in ``directory`` (which the kernel can read); ``give(path)`` hands
    the file to the sandbox's uid before the kernel reads it."""

    def __init__(self, directory: str, give: Callable[[str], None] | None = None) -> None:
        self.directory = directory
        self.give = give

    async def load(self, silent: Silent, context: Any) -> None:
        """Write, have the kernel read, delete the file (no copy of the user's data outlives the
        load, even if this process is killed right after).

        Raises:
            ContextError: the value cannot be pickled, or the kernel could not load it.
        """
        path, kind = await asyncio.to_thread(prepare_context, context, self.directory)
        try:
            if self.give is not None:
                self.give(path)
            reply = await silent(f"_rlm_ks.load_context({path!r}, {kind!r})", timeout=LOAD_TIMEOUT)
        finally:
            if os.path.exists(path):
                os.unlink(path)
        if reply.get("status") != "ok":
            raise _failed("REPL environment", reply)


class ChunkTransfer:
    """Through the kernel channel, in base64 chunks of ``chunk_bytes`` bytes."""

    def __init__(self, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.chunk_bytes = chunk_bytes

    async def load(self, silent: Silent, context: Any) -> None:
        """Send the encoded context chunk by chunk, then have the kernel join and load it.

        Raises:
            ContextError: the value cannot be pickled, or the kernel could not load it.
        """
        data, kind = encode_context(context)
        reply = await silent("import base64 as _rlm_b64\n_rlm_buf = []")
        for i in range(0, len(data), self.chunk_bytes):
            chunk = base64.b64encode(data[i : i + self.chunk_bytes]).decode("ascii")
            reply = await silent(f"_rlm_buf.append(_rlm_b64.b64decode('{chunk}'))", timeout=LOAD_TIMEOUT)
            if reply.get("status") != "ok":
                break
        if reply.get("status") == "ok":
            reply = await silent(f"_rlm_ks.load_bytes(b''.join(_rlm_buf), {kind!r})\ndel _rlm_buf, _rlm_b64", timeout=LOAD_TIMEOUT)
        if reply.get("status") != "ok":
            raise _failed("remote REPL environment", reply)
