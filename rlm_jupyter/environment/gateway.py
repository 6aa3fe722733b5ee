"""A REPL environment in a remote kernel: Jupyter Kernel Gateway or Enterprise Gateway.

For users who outgrow one machine: the environment kernel runs where the gateway starts it
(another host, a Kubernetes pod), driven with jupyter_server's ``GatewayKernelManager`` over
the gateway's REST and websocket API. It shares execution, restarts and the cell report with
the local kernel (:class:`~.jupyter_repl.JupyterREPL`) and composes the rest differently:

* the REPL helpers are sent as source code (:class:`~.bootstrap.SourceBootstrap`; the remote
  Python need not have rlm_jupyter);
* the context travels through the kernel channel (:class:`~.transfer.ChunkTransfer`: base64
  chunks of its UTF-8 text, raw bytes or parent-side pickle), not through a file;
* sub-calls come back over TCP to an address of this machine that the kernel can reach
  (``channel_host``; the random token still authenticates every request), so provider keys
  stay in this process;
* no work dir, sandbox, rlimits or orphan sweeping here: they are the gateway's business (its
  kernel provisioner or pod).

Use it with ``RLM(environment="gateway", gateway_url="http://gateway:8888",
gateway_channel_host="10.0.0.5")`` or ``%config RLM.gateway_url = ...``.
"""

from __future__ import annotations

import logging
import time

from .bootstrap import SourceBootstrap
from .channel import SubcallServer
from .jupyter_repl import EnvironmentError_, JupyterREPL
from .transfer import ChunkTransfer

log = logging.getLogger("rlm_jupyter.environment")


class GatewayREPL(JupyterREPL):
    """A persistent REPL in a kernel started by a Jupyter (Enterprise/Kernel) Gateway.

    Args:
        gateway_url: the gateway's base URL (``http://host:port``).
        kernel_name: kernelspec name on the gateway.
        channel_host: address of THIS machine on which the kernel reaches the sub-call
            channel (TCP, random port; ``127.0.0.1`` when the gateway runs here).
        auth_token: the gateway's token, if it requires one.
        timeout / startup_timeout / max_output_chars: as for :class:`~.kernel.KernelREPL`.

    Attributes:
        sandbox_mode: ``None`` (the gateway's business); sandboxed: ``False`` as far as this
            process knows; sandbox_reason: where the kernel runs.
    """

    sandbox_mode = None
    sandboxed = False

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
        super().__init__(ChunkTransfer(), SourceBootstrap(), timeout=timeout, startup_timeout=startup_timeout, **kwargs)
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
        self.server = SubcallServer(handler, tcp_host=self.channel_host)
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
        log.info("REPL environment kernel started on the gateway %s (kernel %s)", self.gateway_url, self.km.kernel_id)
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

    async def shutdown(self) -> None:
        """Stop the remote kernel and the sub-call server. Idempotent."""
        try:
            if self.kc is not None:
                self.kc.stop_channels()
            if self.km is not None and getattr(self.km, "kernel_id", None):
                try:
                    await self.km.shutdown_kernel(now=True)
                except Exception:  # the gateway is gone or already removed the kernel
                    pass
        finally:
            self.kc = None
            self.km = None
            if self.server is not None:
                await self.server.close()
                self.server = None
