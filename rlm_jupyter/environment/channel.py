"""The sub-call channel: a socket the parent owns, served on the parent's event loop.

Model code in the environment kernel calls ``llm_query`` & co.; :mod:`.kernel_side` sends
each request over this socket (newline-delimited JSON); the parent makes the LM call and
answers on the same connection. One connection per kernel thread; connections are served
concurrently, requests on one connection in order.

A connection must first authenticate: its first line (at most :data:`HANDSHAKE_BYTES`, within
:data:`HANDSHAKE_SECONDS`) is ``{"token": ...}`` with the run's random token; only then are
request lines of up to :data:`MAX_LINE_BYTES` read, so a client without the token (the TCP
port of a gateway run is reachable by others) is cut off after a few KiB. A client that closes
its connection while a request is served (the model's block was interrupted) gets that
request cancelled: the LM call or child RLM stops.
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

MAX_LINE_BYTES = 256 * 1024 * 1024  # one request line (a batch of prompts) at most, once authenticated
HANDSHAKE_BYTES = 4096  # the first line of a connection: the token
HANDSHAKE_SECONDS = 10.0
READ_CHUNK = 1 << 16


class _Lines:
    """Lines of a stream with a size limit per line (``asyncio.StreamReader`` has one limit
    per connection, fixed when the server starts)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.buf = bytearray()
        self.scanned = 0  # bytes of ``buf`` known to hold no newline

    async def readline(self, limit: int) -> bytes:
        """The next line (with its newline; ``b""`` at end of stream).

        Raises:
            ValueError: the line is longer than ``limit`` bytes (nothing more is buffered).
        """
        while True:
            i = self.buf.find(b"\n", self.scanned)
            if i >= 0:
                if i + 1 > limit:
                    raise ValueError(f"line longer than {limit} bytes")
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                self.scanned = 0
                return line
            self.scanned = len(self.buf)
            if len(self.buf) >= limit:
                raise ValueError(f"line longer than {limit} bytes")
            chunk = await self.reader.read(min(READ_CHUNK, limit - len(self.buf) + 1))
            if not chunk:
                return b""
            self.buf += chunk


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
        self._own_dir = directory is None and not tcp_host  # TCP needs no directory
        self.directory = directory or (None if tcp_host else tempfile.mkdtemp(prefix="rlm-chan-"))
        if self.directory is not None:
            os.chmod(self.directory, 0o700)
        self.path = os.path.join(self.directory, "subcalls.sock") if self.directory else ""
        self.token = secrets.token_hex(16)
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self.requests = 0

    async def start(self) -> None:
        """Bind and listen: a Unix socket (mode 0600), or with ``tcp_host`` a TCP port on that
        address (for a remote kernel; then :attr:`path` becomes ``"tcp://host:port"``)."""
        if self.tcp_host:
            self._server = await asyncio.start_server(self._serve, host=self.tcp_host, port=0)
            port = self._server.sockets[0].getsockname()[1]
            self.path = f"tcp://{self.tcp_host}:{port}"
            return
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        os.chmod(self.path, 0o600)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        lines = _Lines(reader)
        work: asyncio.Future | None = None
        nxt: asyncio.Future | None = None
        try:
            try:
                hello = await asyncio.wait_for(lines.readline(HANDSHAKE_BYTES), HANDSHAKE_SECONDS)
            except (asyncio.TimeoutError, ValueError, ConnectionError):
                return
            if not self._authentic(hello):
                writer.write((json.dumps({"id": None, "ok": False, "error": "bad token"}) + "\n").encode())
                await writer.drain()
                return
            nxt = asyncio.ensure_future(lines.readline(MAX_LINE_BYTES))
            while True:
                try:
                    line = await nxt
                except (ConnectionError, ValueError):
                    break
                if not line:
                    break
                # read on while the request is served, to notice the client leaving
                nxt = asyncio.ensure_future(lines.readline(MAX_LINE_BYTES))
                work = asyncio.ensure_future(self._answer(line))
                await asyncio.wait({work, nxt}, return_when=asyncio.FIRST_COMPLETED)
                if not work.done() and (nxt.exception() is not None or not nxt.result()):
                    break  # the client closed the connection (an interrupted wait): cancel its request
                reply = await work
                work = None
                writer.write((json.dumps(reply) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for t in (work, nxt):
                if t is not None and not t.done():
                    t.cancel()
            if work is not None:
                # let a cancelled child RLM shut its kernel down
                await asyncio.gather(work, return_exceptions=True)
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    def _authentic(self, hello: bytes) -> bool:
        try:
            msg = json.loads(hello)
        except ValueError:
            return False
        token = msg.get("token") if isinstance(msg, dict) else None
        return isinstance(token, str) and secrets.compare_digest(token.encode(), self.token.encode())

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            msg = json.loads(line)
        except ValueError:
            return {"id": None, "ok": False, "error": "malformed request"}
        if not isinstance(msg, dict):
            return {"id": None, "ok": False, "error": "malformed request"}
        rid = msg.get("id")
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
