"""The sub-call channel: a Unix socket the parent owns, served on the parent's event loop.

Model code in the environment kernel calls ``llm_query`` & co.; :mod:`.kernel_side` sends
each request over this socket (newline-delimited JSON with a random token); the parent
makes the LM call and answers on the same connection. One connection per kernel thread;
connections are served concurrently, requests on one connection in order.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import tempfile
from typing import Any

from ..core.limits import LimitExceeded
from ..core.protocols import SubcallHandler

MAX_LINE_BYTES = 256 * 1024 * 1024  # one request line (a batch of prompts) at most


class SubcallServer:
    """Serves sub-call requests from one environment kernel.

    Args:
        handler: ``await handler(op, payload)`` produces the result (JSON-serialisable) of a
            request; exceptions become ``{"ok": false, "error": ...}`` replies, which
            :mod:`.kernel_side` raises as ``SubcallError`` in the model's code.
        directory: where to create the socket (a private 0700 temp dir by default).

    Attributes:
        path: the socket's file system path; token: the shared secret (hex str).
    """

    def __init__(self, handler: SubcallHandler, directory: str | None = None, tcp_host: str | None = None) -> None:
        self.handler = handler
        self.tcp_host = tcp_host
        self._own_dir = directory is None
        self.directory = directory or tempfile.mkdtemp(prefix="rlm-chan-")
        os.chmod(self.directory, 0o700)
        self.path = os.path.join(self.directory, "subcalls.sock")
        self.token = secrets.token_hex(16)
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self.requests = 0

    async def start(self) -> None:
        """Bind and listen: a Unix socket (mode 0600), or with ``tcp_host`` a TCP port on that
        address (for a remote kernel; then :attr:`path` becomes ``"tcp://host:port"``)."""
        if self.tcp_host:
            self._server = await asyncio.start_server(self._serve, host=self.tcp_host, port=0, limit=MAX_LINE_BYTES)
            port = self._server.sockets[0].getsockname()[1]
            self.path = f"tcp://{self.tcp_host}:{port}"
            return
        self._server = await asyncio.start_unix_server(self._serve, path=self.path, limit=MAX_LINE_BYTES)
        os.chmod(self.path, 0o600)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ConnectionError, ValueError):
                    break
                if not line:
                    break
                reply = await self._answer(line)
                writer.write((json.dumps(reply) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            msg = json.loads(line)
        except ValueError:
            return {"id": None, "ok": False, "error": "malformed request"}
        rid = msg.get("id")
        if not secrets.compare_digest(str(msg.get("token", "")), self.token):
            return {"id": rid, "ok": False, "error": "bad token"}
        self.requests += 1
        try:
            result = await self.handler(msg.get("op", ""), msg)
            return {"id": rid, "ok": True, "result": result}
        except LimitExceeded as exc:
            return {"id": rid, "ok": False, "error": f"{exc.message}. The run is stopping; do not make more sub-calls."}
        except Exception as exc:
            return {"id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}"}

    async def close(self) -> None:
        """Stop listening, drop open connections and remove the socket (and private dir)."""
        if self._server is not None:
            self._server.close()
            for t in list(self._tasks):
                t.cancel()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2)
            except (asyncio.TimeoutError, Exception):
                pass
            self._server = None
        if not self.path.startswith("tcp://") and os.path.exists(self.path):
            os.unlink(self.path)
        if self._own_dir and os.path.isdir(self.directory):
            try:
                os.rmdir(self.directory)
            except OSError:
                pass
