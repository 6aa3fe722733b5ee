"""A REPL environment in a remote kernel: Jupyter Kernel Gateway or Enterprise Gateway.

For users who outgrow one machine: the environment kernel runs where the gateway starts it
(another host, a Kubernetes pod), driven with jupyter_server's ``GatewayKernelManager`` over
the gateway's REST and websocket API. What changes compared with :class:`KernelREPL`:

* the REPL helpers are sent as source code (the remote Python need not have rlm_jupyter);
* the context travels through the kernel channel (base64 chunks of its UTF-8 text, raw bytes
  or parent-side pickle), not through a file;
* sub-calls come back over TCP to an address of this machine that the kernel can reach
  (``channel_host``; the random token still authenticates every request), so provider keys
  stay in this process;
* the sandbox, rlimits and orphan sweeping are the gateway's business (its kernel
  provisioner or pod), not ours.

Use it with ``RLM(gateway_url="http://gateway:8888", gateway_channel_host="10.0.0.5")`` or
``%config RLM.gateway_url = ...``.
"""

from __future__ import annotations

import base64
import pickle
import time

from ..core.context import ContextError
from . import kernel_side
from .channel import SubcallServer
from .kernel import EnvironmentError_, KernelREPL

CHUNK_BYTES = 4 * 1024 * 1024  # context bytes per execute request


class GatewayREPL(KernelREPL):
    """A persistent REPL in a kernel started by a Jupyter (Enterprise/Kernel) Gateway.

    Args:
        gateway_url: the gateway's base URL (``http://host:port``).
        kernel_name: kernelspec name on the gateway.
        channel_host: address of THIS machine on which the kernel reaches the sub-call
            channel (TCP, random port; ``127.0.0.1`` when the gateway runs here).
        auth_token: the gateway's token, if it requires one.
        timeout / startup_timeout / max_output_chars: as for :class:`KernelREPL`.
    """

    def __init__(
        self,
        gateway_url: str,
        kernel_name: str = "python3",
        channel_host: str = "127.0.0.1",
        auth_token: str | None = None,
        timeout: float = 120.0,
        startup_timeout: float = 60.0,
        max_output_chars: int | None = None,
    ) -> None:
        kwargs = {} if max_output_chars is None else {"max_output_chars": max_output_chars}
        super().__init__(timeout=timeout, startup_timeout=startup_timeout, sandbox=False, run_as=None, **kwargs)
        self.gateway_url = gateway_url.rstrip("/")
        self.kernel_name = kernel_name
        self.channel_host = channel_host
        self.auth_token = auth_token
        self.sandbox_reason = f"remote kernel at {self.gateway_url}"

    async def start(self, handler) -> None:
        """Start the TCP sub-call server and a kernel on the gateway; install the helpers.

        Raises:
            EnvironmentError_: the gateway could not be reached or did not start a kernel.
        """
        from jupyter_server.gateway.gateway_client import GatewayClient
        from jupyter_server.gateway.managers import GatewayKernelManager

        client = GatewayClient.instance()
        client.url = self.gateway_url
        if self.auth_token:
            client.auth_token = self.auth_token
        self.server = SubcallServer(handler, directory=self.workdir, tcp_host=self.channel_host)
        await self.server.start()
        self.km = GatewayKernelManager(kernel_name=self.kernel_name)
        try:
            await self.km.start_kernel()
            self.kc = self.km.client()
            await self.kc.start_channels()
            await self._wait_ready()
        except Exception as exc:
            await self.shutdown()
            raise EnvironmentError_(f"the gateway at {self.gateway_url} did not start a kernel: {exc}") from None
        await self._bootstrap()

    async def _wait_ready(self) -> None:
        """Until the kernel answers kernel_info (jupyter_client's wait_for_ready asks the
        manager for a local process, which a gateway kernel does not have).

        Raises:
            EnvironmentError_: no answer within ``startup_timeout`` seconds.
        """
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            msg_id = self.kc.kernel_info()
            if await self._shell_reply(msg_id, min(2.0, max(0.1, deadline - time.monotonic()))):
                return
        raise EnvironmentError_(f"the kernel on the gateway did not answer within {self.startup_timeout:g} s")

    async def _alive(self) -> bool:
        # The gateway restarts a dead kernel itself and says so on IOPub (status
        # "restarting"), which execute() handles; jupyter_client's process check does not
        # apply to a remote kernel.
        return self.km is not None

    async def _bootstrap(self) -> None:
        with open(kernel_side.__file__, encoding="utf-8") as f:
            source = f.read()
        code = (
            "import sys as _rlm_sys, types as _rlm_types\n"
            "_rlm_ks = _rlm_types.ModuleType('rlm_jupyter_kernel_side')\n"
            "_rlm_sys.modules['rlm_jupyter_kernel_side'] = _rlm_ks\n"
            f"exec(compile({source!r}, 'rlm_jupyter/environment/kernel_side.py', 'exec'), _rlm_ks.__dict__)\n"
            f"_rlm_ks.install(get_ipython(), {self.server.path!r}, {self.server.token!r}, {self.max_output_chars!r})\n"
            "del _rlm_sys, _rlm_types\n"
        )
        reply = await self._silent(code)
        if reply.get("status") != "ok":
            raise EnvironmentError_(f"REPL bootstrap on the gateway failed: {reply.get('ename')}: {reply.get('evalue')}")

    async def _load_context_file(self) -> None:
        """Send the context through the kernel channel in base64 chunks, then load it."""
        context = self._context
        if isinstance(context, str):
            data, kind = context.encode("utf-8", errors="surrogatepass"), "text"
        elif isinstance(context, (bytes, bytearray, memoryview)):
            data, kind = bytes(context), "bytes"
        else:
            try:
                data, kind = pickle.dumps(context, protocol=5), "pickle"
            except Exception as exc:
                raise ContextError(f"the context ({type(context).__name__}) cannot be pickled: {exc}") from None
        reply = await self._silent("import base64 as _rlm_b64\n_rlm_buf = []")
        for i in range(0, len(data), CHUNK_BYTES):
            chunk = base64.b64encode(data[i : i + CHUNK_BYTES]).decode("ascii")
            reply = await self._silent(f"_rlm_buf.append(_rlm_b64.b64decode('{chunk}'))", timeout=600)
            if reply.get("status") != "ok":
                break
        if reply.get("status") == "ok":
            reply = await self._silent(f"_rlm_ks.load_bytes(b''.join(_rlm_buf), {kind!r})\ndel _rlm_buf, _rlm_b64", timeout=600)
        if reply.get("status") != "ok":
            raise ContextError(f"the remote REPL environment could not load the context: {reply.get('ename')}: {reply.get('evalue')}")

    async def _sweep_processes(self) -> None:
        """Nothing to sweep here: the kernel's processes live where the gateway runs them."""

    async def _stop_kernel(self) -> None:
        if self.km is not None and getattr(self.km, "kernel_id", None):
            try:
                await self.km.shutdown_kernel(now=True)
            except Exception:  # the gateway is gone or already removed the kernel
                pass
