"""The REPL environment on a real Jupyter Kernel Gateway (on loopback), as for a remote host."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import repl
from rlm_jupyter import RLM

pytest.importorskip("kernel_gateway", reason="pip install jupyter_kernel_gateway")


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory):
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
