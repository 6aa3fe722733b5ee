"""The REPL environment on a real Jupyter Kernel Gateway (on loopback), as for a remote host."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import repl
from rlm_jupyter import RLM



@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory):
    pytest.importorskip("kernel_gateway", reason="pip install jupyter_kernel_gateway")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("kg") / "kg.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "kernelgateway", "--KernelGatewayApp.ip=127.0.0.1", f"--KernelGatewayApp.port={port}"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "KG_LIST_KERNELS": "True"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/api/kernelspecs", timeout=2)
            break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("the kernel gateway did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def _kernels(url):
    import json

    return json.loads(urllib.request.urlopen(url + "/api/kernels", timeout=5).read())


@pytest.mark.timeout(180)
def test_a_run_on_the_gateway_gets_its_context_sub_calls_and_survives_a_crash(gateway_url, scripted):
    sub = scripted(lambda m: "sub:" + m[0]["content"])
    root = scripted([
        repl("import os\nprint(len(context), llm_query('hi'), 'rlm_jupyter' in str(type(llm_query)))"),
        repl("import os\nos._exit(1)"),
        repl("print(context[:6], len(context))"),
        "FINAL(survived)",
    ])
    ctx = "abcdef" * 1_000_000  # 6 MB: several chunks through the kernel channel
    res = RLM(model=root, sub_model=sub, gateway_url=gateway_url).completion("q", ctx)
    cells = [c for it in res.trajectory.iterations for c in it.cells]
    errors = [e.data.get("traceback") for e in res.trajectory.events if e.kind == "error"]
    assert res.status == "done" and res.answer == "survived", "\n".join(errors)
    assert cells[0].text.strip() == "6000000 sub:hi False"  # helpers sent as source, not imported
    assert cells[1].status == "died" and "restarted" in scripted.calls(root)[2][-1]["content"]
    assert cells[2].text.strip() == "abcdef 6000000"
    assert _kernels(gateway_url) == []  # the remote kernel was shut down


@pytest.mark.timeout(120)
def test_a_loop_on_the_gateway_is_interrupted(gateway_url, scripted):
    root = scripted([repl("x = 5\nwhile True: pass"), repl("print(x)"), "FINAL(ok)"])
    res = RLM(model=root, sub_model=root, gateway_url=gateway_url, timeout=2).completion("q", "ctx")
    cells = [c for it in res.trajectory.iterations for c in it.cells]
    assert cells[0].status == "timeout" and cells[1].text.strip() == "5"


def test_an_unreachable_gateway_is_a_clear_error(scripted):
    root = scripted(["FINAL(x)"])
    res = RLM(model=root, sub_model=root, gateway_url="http://127.0.0.1:9").completion("q", "ctx")
    assert res.status == "error" and "did not start a kernel" in res.message


def _channel_server(tcp: bool):
    from rlm_jupyter.environment.channel import SubcallServer

    async def handler(op, payload):
        return f"{op}:{payload.get('prompt')}"

    return SubcallServer(handler, tcp_host="127.0.0.1" if tcp else None)


async def _connect(server):
    import asyncio

    if server.path.startswith("tcp://"):
        host, port = server.path[len("tcp://"):].rsplit(":", 1)
        return await asyncio.open_connection(host, int(port), limit=1 << 26)
    return await asyncio.open_unix_connection(server.path, limit=1 << 26)


@pytest.mark.parametrize("tcp", [True, False], ids=["tcp", "unix"])
def test_the_sub_call_channel_authenticates_before_buffering_a_large_line(tcp):
    """A client without the token that sends a huge line is cut off after a few KiB: the
    server never buffers it (issue 10: it used to read up to 256 MiB before the token check)."""
    import asyncio
    import tracemalloc

    async def main():
        server = _channel_server(tcp)
        await server.start()
        try:
            reader, writer = await _connect(server)
            chunk = b"x" * (1 << 20)
            sent, closed = 0, False
            t0 = time.monotonic()
            tracemalloc.start()
            try:
                while sent < 64 * (1 << 20) and time.monotonic() - t0 < 20:
                    writer.write(chunk)
                    await asyncio.wait_for(writer.drain(), 5)
                    sent += len(chunk)
            except (ConnectionError, asyncio.TimeoutError):
                closed = True
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            if not closed:  # the server may close only once it reads: look for EOF
                try:
                    await asyncio.wait_for(reader.read(), 5)
                    closed = True
                except ConnectionError:
                    closed = True
                except asyncio.TimeoutError:
                    closed = False
            writer.close()
            assert server.requests == 0
            assert peak < 16 * (1 << 20), f"{peak / 2**20:.0f} MiB buffered for an unauthenticated client"
            assert closed
            # a client with the token is served, also with a large request line
            reader, writer = await _connect(server)
            writer.write((json.dumps({"token": server.token}) + "\n").encode())
            big = "y" * (8 << 20)
            writer.write((json.dumps({"id": 1, "op": "llm_query", "prompt": big}) + "\n").encode())
            await writer.drain()
            reply = json.loads(await asyncio.wait_for(reader.readline(), 10))
            assert reply == {"id": 1, "ok": True, "result": "llm_query:" + big}
            writer.close()
            # a wrong token gets one refusal line, then the connection is closed
            reader, writer = await _connect(server)
            writer.write(b'{"token": "wrong"}\n{"id": 1, "op": "llm_query", "prompt": "p"}\n')
            await writer.drain()
            reply = json.loads(await asyncio.wait_for(reader.readline(), 10))
            assert reply["ok"] is False and "token" in reply["error"]
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
        finally:
            await server.close()

    asyncio.run(main())


@pytest.mark.timeout(120)
def test_host_tools_reach_a_kernel_on_the_gateway(gateway_url, scripted):
    """The gateway's kernel gets the tool stubs as source (SourceBootstrap), like kernel_side."""

    def lookup(key: str) -> str:
        """The value stored under key."""
        return {"a": "apple"}.get(key, "?")

    root = scripted([repl("print(lookup('a'), type(lookup).__module__)"), "FINAL(ok)"])
    res = RLM(model=root, sub_model=root, gateway_url=gateway_url).completion("q", "ctx", tools=[lookup])
    cells = [c for it in res.trajectory.iterations for c in it.cells]
    assert res.status == "done" and cells[0].text.strip() == "apple rlm_jupyter_tools_side"  # sent as source


@pytest.mark.timeout(120)
def test_task_helpers_reach_a_kernel_on_the_gateway(gateway_url, scripted):
    """grep, chunks, llm_classify and batched llm_map are sent as source too (modules
    rlm_jupyter_repl_helpers and rlm_jupyter_labels)."""
    sub = scripted(lambda m: "1: entity\n2: a human being\n3: Human Being." if "3. bob" in m[-1]["content"]
                   else "entity" if "apple" in m[-1]["content"] else "human being")
    root = scripted([
        repl("import sys\nprint(grep('pear'), len(chunks(context, 12)), 'rlm_jupyter_repl_helpers' in sys.modules)\n"
             "print(llm_classify(context.splitlines(), ['entity', 'human being']))\n"
             "print(llm_map(context.splitlines(), 'label?', labels=['entity', 'human being'], batch=3))"),
        "FINAL(ok)",
    ])
    res = RLM(model=root, sub_model=sub, gateway_url=gateway_url).completion("q", "apple\npear seller\nbob")
    cells = [c for it in res.trajectory.iterations for c in it.cells]
    assert res.status == "done", cells[0].text
    first, second, third = cells[0].text.strip().splitlines()
    assert first == "<line 1> pear seller 3 True"
    assert second == third == "['entity', 'human being', 'human being']"  # batched: labels matched in the kernel
