"""What model code can see and touch, in the sandbox of this run (bubblewrap or unshare) and in
the plain mode. Each probe runs in a real environment kernel; the table printed at the end of
the session (and ISOLATION) says what each mode blocks."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys

import pytest

from faults import faultkit
from rlm_jupyter.environment import kernel as kernel_mod
from rlm_jupyter.environment import launch

SECRET = "sk-fault-suite-DO-NOT-LEAK-1234"
SENTINEL = "parent-sentinel-value-5678"

PROBES = {
    # name: code printing one JSON value
    "environment": "import os, json; print(json.dumps(dict(os.environ)))",
    "uid": "import os, json; print(json.dumps(os.getuid()))",
    "os.getppid() is the user's process": "import os, json; print(json.dumps(os.getppid() == {ppid}))",
    "parent /proc/<pid>/environ": (
        "import json\ntry:\n    d = open('/proc/{ppid}/environ', 'rb').read()\n    print(json.dumps('readable: %d bytes' % len(d)))\n"
        "except OSError as e:\n    print(json.dumps('blocked: ' + type(e).__name__))"
    ),
    "signal the parent (kill -0)": (
        "import os, json\ntry:\n    os.kill({ppid}, 0)\n    print(json.dumps('allowed'))\n"
        "except OSError as e:\n    print(json.dumps('blocked: ' + type(e).__name__))"
    ),
    "processes visible": "import os, json; print(json.dumps(len([p for p in os.listdir('/proc') if p.isdigit()])))",
    "read parent's file": (
        "import json\ntry:\n    print(json.dumps('readable: ' + open({secret_file!r}).read()))\n"
        "except OSError as e:\n    print(json.dumps('blocked: ' + type(e).__name__))"
    ),
    "read the project checkout": (
        "import json\ntry:\n    print(json.dumps('readable: %d bytes' % len(open({readme!r}).read())))\n"
        "except OSError as e:\n    print(json.dumps('blocked: ' + type(e).__name__))"
    ),
    "list parent's ~/.config": (
        "import json, os\ntry:\n    print(json.dumps('readable: %d entries' % len(os.listdir({config!r}))))\n"
        "except OSError as e:\n    print(json.dumps('blocked: ' + type(e).__name__))"
    ),
    "write into parent's /tmp dir": (
        "import json\ntry:\n    open({written!r}, 'w').write('x')\n    print(json.dumps('wrote'))\n"
        "except OSError as e:\n    print(json.dumps('blocked: ' + type(e).__name__))"
    ),
    "write /etc": (
        "import json, tempfile\ntry:\n    tempfile.NamedTemporaryFile(dir='/etc').close()\n    print(json.dumps('allowed'))\n"
        "except OSError as e:\n    print(json.dumps('blocked: ' + type(e).__name__))"
    ),
    "TCP to the parent's localhost": (
        "import json, socket\ns = socket.socket()\ns.settimeout(2)\ntry:\n    s.connect(('127.0.0.1', {port}))\n"
        "    print(json.dumps('connected'))\nexcept OSError as e:\n    print(json.dumps('blocked: ' + (e.strerror or type(e).__name__)))"
    ),
    "TCP to the internet": (
        "import json, socket\ns = socket.socket()\ns.settimeout(2)\ntry:\n    s.connect(('1.1.1.1', 80))\n"
        "    print(json.dumps('connected'))\nexcept OSError as e:\n    print(json.dumps('blocked: ' + (e.strerror or type(e).__name__)))"
    ),
}


async def _echo(op, payload):
    return "ok"


def run_probes(sandbox: bool | None, tmp_path, monkeypatch) -> dict:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("RLM_FAULT_SENTINEL", SENTINEL)
    secret_file = tmp_path / "notes.txt"
    secret_file.write_text(SENTINEL)
    written = tmp_path / "written-by-model"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    readme = os.path.join(os.path.dirname(kernel_mod.PACKAGE_DIR), "pyproject.toml")
    fmt = dict(ppid=os.getpid(), secret_file=str(secret_file), readme=readme, written=str(written),
               config=os.path.expanduser("~/.config") if os.path.isdir(os.path.expanduser("~/.config")) else os.path.expanduser("~"),
               port=listener.getsockname()[1])

    async def main():
        env = kernel_mod.KernelREPL(timeout=10, sandbox=sandbox)
        await env.start(_echo)
        try:
            await env.load_context("ctx")
            out = {"sandboxed": env.sandboxed, "mode": env.sandbox_mode}
            for name, code in PROBES.items():
                r = await env.execute(code.format(**fmt))
                assert r.status == "ok", (name, r.text)
                out[name] = json.loads(r.text.strip().splitlines()[-1])
            return out
        finally:
            await env.shutdown()

    try:
        out = asyncio.run(main())
    finally:
        listener.close()
    out["write into parent's /tmp dir"] += " (appeared in the parent's dir)" if written.exists() else " (not seen by the parent)"
    return out


def summarise(name, value):
    if name == "environment":
        keys = sorted(value)
        return f"{len(keys)} vars; API key {'LEAKED' if SECRET in json.dumps(value) else 'absent'}; parent's vars {'visible' if SENTINEL in json.dumps(value) else 'absent'}"
    return str(value)


def test_sandbox_blocks_the_parent_s_secrets_files_processes_and_network(tmp_path, monkeypatch):
    mode = faultkit.require_sandbox()
    out = run_probes(True, tmp_path, monkeypatch)
    assert out["sandboxed"] and out["mode"] == mode
    assert out["os.getppid() is the user's process"] is False
    env = out["environment"]
    assert SECRET not in json.dumps(env) and SENTINEL not in json.dumps(env)
    assert out["uid"] != 0 or os.geteuid() != 0
    for name in ("parent /proc/<pid>/environ", "signal the parent (kill -0)", "read parent's file", "read the project checkout",
                 "write /etc", "TCP to the parent's localhost", "TCP to the internet"):
        assert out[name].startswith("blocked"), (name, out[name])
    assert out["processes visible"] <= 5
    assert "not seen by the parent" in out["write into parent's /tmp dir"]
    assert not out["list parent's ~/.config"].startswith("readable") or "0 entries" in out["list parent's ~/.config"] or \
        os.path.expanduser("~") == "/"
    for name in PROBES:
        faultkit.ISOLATION.setdefault(name, {})[mode] = summarise(name, out[name])


def test_plain_mode_hides_api_keys_and_the_user_s_process(tmp_path, monkeypatch):
    """What plain mode still allows (files, signals by PID, network) is what the warning says;
    it does hide the keys, and the kernel is not the user's process's child."""
    out = run_probes(False, tmp_path, monkeypatch)
    assert not out["sandboxed"] and out["mode"] == "plain"
    assert SECRET not in json.dumps(out["environment"])
    assert out["os.getppid() is the user's process"] is False
    for name in PROBES:
        faultkit.ISOLATION.setdefault(name, {})["plain"] = summarise(name, out[name])


def test_missing_bubblewrap_and_unshare_fall_back_with_a_clear_warning(monkeypatch):
    from rlm_jupyter.environment import sandbox as sb

    monkeypatch.setattr(sb.shutil, "which", lambda name: None)
    monkeypatch.delenv("RLM_JUPYTER_SANDBOX_MODE", raising=False)

    async def main():
        env = kernel_mod.KernelREPL(timeout=10)
        with pytest.warns(sb.SandboxWarning, match="WITHOUT a sandbox .*bubblewrap .*not installed.*unshare is not installed.*"
                          "read your files, signal your processes and use the network.*apt-get install bubblewrap"):
            await env.start(_echo)
        try:
            r = await env.execute("print(6 * 7)")
            return env.sandboxed, env.sandbox_reason, r.text
        finally:
            await env.shutdown()

    sandboxed, reason, text = asyncio.run(main())
    assert not sandboxed and "not installed" in reason and text.strip() == "42"
    faultkit.record("bubblewrap and unshare missing", True, "SandboxWarning: runs WITHOUT a sandbox ... can read your files, signal ...",
                    None, "plain")


def test_broken_bubblewrap_falls_back_with_the_reason(monkeypatch, tmp_path):
    from rlm_jupyter.environment import sandbox as sb

    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sb, "bwrap_path", lambda: str(fake))
    monkeypatch.setattr(launch, "unshare_path", lambda: None)
    monkeypatch.delenv("RLM_JUPYTER_SANDBOX_MODE", raising=False)

    async def main():
        env = kernel_mod.KernelREPL(timeout=10)
        with pytest.warns(sb.SandboxWarning, match="does not work here: bwrap: No permissions"):
            await env.start(_echo)
        try:
            return env.sandboxed, (await env.execute("print(1)")).text
        finally:
            await env.shutdown()

    sandboxed, text = asyncio.run(main())
    assert not sandboxed and text.strip() == "1"
    faultkit.record("bubblewrap present but failing (no unshare)", True, "SandboxWarning: bubblewrap does not work here: <its stderr>",
                    None, "plain")


def test_without_bubblewrap_the_unshare_sandbox_is_used(monkeypatch, tmp_path, recwarn):
    if launch.unshare_path() is None or launch._why_not("unshare", sys.executable, kernel_mod.PACKAGE_DIR):
        if os.environ.get("RLM_JUPYTER_REQUIRE_SANDBOX") and sys.platform.startswith("linux"):
            pytest.fail(f"RLM_JUPYTER_REQUIRE_SANDBOX is set but {launch._why_not('unshare', sys.executable, kernel_mod.PACKAGE_DIR)}")
        pytest.skip("util-linux unshare does not work here")
    from rlm_jupyter.environment import sandbox as sb

    monkeypatch.setattr(sb, "bwrap_path", lambda: None)
    monkeypatch.delenv("RLM_JUPYTER_SANDBOX_MODE", raising=False)

    async def main():
        env = kernel_mod.KernelREPL(timeout=10)
        await env.start(_echo)
        try:
            r = await env.execute("import os\nprint(os.getpid(), os.getppid(), sorted(os.listdir('/tmp')))")
            return env.sandbox_mode, env.sandbox_reason, r.text.split(maxsplit=2)
        finally:
            await env.shutdown()

    mode, reason, (pid, ppid, tmp) = asyncio.run(main())
    assert mode == "unshare" and "unshare" in reason and (pid, ppid) == ("2", "1")
    assert not [w for w in recwarn if issubclass(w.category, sb.SandboxWarning)]
    faultkit.record("bubblewrap missing, unshare works", True, "kernel in unshare namespaces (PID 2), no warning", None, "unshare")


def test_required_sandbox_with_neither_bubblewrap_nor_unshare_is_an_error(monkeypatch):
    from rlm_jupyter.environment import sandbox as sb

    monkeypatch.setattr(sb, "bwrap_path", lambda: None)
    monkeypatch.setattr(launch, "unshare_path", lambda: None)
    monkeypatch.delenv("RLM_JUPYTER_SANDBOX_MODE", raising=False)

    async def main():
        env = kernel_mod.KernelREPL(timeout=10, sandbox=True)
        with pytest.raises(kernel_mod.EnvironmentError_, match="sandbox was required but bubblewrap .*unshare is not installed"):
            await env.start(_echo)

    asyncio.run(main())


def test_sandbox_false_is_silent_and_limits_still_apply(recwarn):
    async def main():
        env = kernel_mod.KernelREPL(timeout=10, sandbox=False, memory_limit_mb=1024)
        await env.start(_echo)
        try:
            return (await env.execute("x = bytearray(3 * 1024**3)")).text
        finally:
            await env.shutdown()

    text = asyncio.run(main())
    assert "MemoryError" in text
    from rlm_jupyter.environment.sandbox import SandboxWarning

    assert not [w for w in recwarn if issubclass(w.category, SandboxWarning)]
