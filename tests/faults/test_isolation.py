"""What model code can see and touch, in the bubblewrap sandbox and in the unsandboxed
fallback. Each probe runs in a real environment kernel; the table printed at the end of the
session (and ISOLATION) says what each mode blocks."""

from __future__ import annotations

import asyncio
import json
import os
import socket

import pytest

from faults import faultkit
from rlm_jupyter.environment import kernel as kernel_mod

SECRET = "sk-fault-suite-DO-NOT-LEAK-1234"
SENTINEL = "parent-sentinel-value-5678"

PROBES = {
    # name: code printing one JSON value
    "environment": "import os, json; print(json.dumps(dict(os.environ)))",
    "uid": "import os, json; print(json.dumps(os.getuid()))",
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


def run_probes(sandbox: bool, tmp_path, monkeypatch) -> dict:
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
            out = {"sandboxed": env.sandboxed}
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
    faultkit.require_bwrap()
    out = run_probes(True, tmp_path, monkeypatch)
    assert out["sandboxed"]
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
        faultkit.ISOLATION.setdefault(name, {})["sandbox"] = summarise(name, out[name])


def test_fallback_without_sandbox_still_hides_api_keys(tmp_path, monkeypatch):
    out = run_probes(False, tmp_path, monkeypatch)
    assert not out["sandboxed"]
    assert SECRET not in json.dumps(out["environment"])
    for name in PROBES:
        faultkit.ISOLATION.setdefault(name, {})["fallback"] = summarise(name, out[name])


def test_missing_bubblewrap_falls_back_with_a_clear_warning(monkeypatch):
    from rlm_jupyter.environment import sandbox as sb

    monkeypatch.setattr(sb.shutil, "which", lambda name: None)

    async def main():
        env = kernel_mod.KernelREPL(timeout=10)
        with pytest.warns(sb.SandboxWarning, match="WITHOUT a sandbox .*bubblewrap .*not installed.*apt-get install bubblewrap"):
            await env.start(_echo)
        try:
            r = await env.execute("print(6 * 7)")
            return env.sandboxed, env.sandbox_reason, r.text
        finally:
            await env.shutdown()

    sandboxed, reason, text = asyncio.run(main())
    assert not sandboxed and "not installed" in reason and text.strip() == "42"
    faultkit.record("bubblewrap missing", True, "SandboxWarning: runs WITHOUT a sandbox (bubblewrap not installed) ...", None, "fallback")


def test_broken_bubblewrap_falls_back_with_the_reason(monkeypatch, tmp_path):
    from rlm_jupyter.environment import sandbox as sb

    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sb, "bwrap_path", lambda: str(fake))

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
    faultkit.record("bubblewrap present but failing", True, "SandboxWarning: bubblewrap does not work here: <its stderr>", None, "fallback")


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
