"""The sandbox layer of the REPL environment (rlm_jupyter.environment.sandbox) and the
kernel-side output cap, checked piece by piece."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import warnings

import pytest

from rlm_jupyter.environment import kernel as kmod
from rlm_jupyter.environment import launch
from rlm_jupyter.environment import sandbox as sb
from rlm_jupyter.environment.kernel_side import _OutputCap

@pytest.fixture
def needs_bwrap():
    """Skip without bubblewrap (or when RLM_JUPYTER_SANDBOX_MODE forces another mode), or fail
    if ``RLM_JUPYTER_REQUIRE_SANDBOX`` is set (CI)."""
    if launch.forced_mode() not in (None, "bwrap"):
        pytest.skip(f"{launch.MODE_ENV}={launch.forced_mode()}")
    if sb.bwrap_path() is None:
        if os.environ.get("RLM_JUPYTER_REQUIRE_SANDBOX"):
            pytest.fail("RLM_JUPYTER_REQUIRE_SANDBOX is set but bubblewrap (bwrap) is not installed")
        pytest.skip("bubblewrap is not installed")


@pytest.fixture
def needs_sandbox():
    """Skip when this run has no sandbox (bubblewrap or unshare), or fail if
    ``RLM_JUPYTER_REQUIRE_SANDBOX`` is set (CI) and the run does not force plain mode."""
    if launch.forced_mode() == "plain":
        pytest.skip(f"{launch.MODE_ENV}=plain")
    try:
        launch.resolve_mode(True, sys.executable, kmod.PACKAGE_DIR)
    except sb.SandboxUnavailable as exc:
        if os.environ.get("RLM_JUPYTER_REQUIRE_SANDBOX"):
            pytest.fail(f"RLM_JUPYTER_REQUIRE_SANDBOX is set but {exc}")
        pytest.skip(str(exc))


async def _echo(op, payload):
    return "ok"


def test_bwrap_argv_confines_the_kernel(tmp_path):
    argv = sb.bwrap_argv(sys.executable, str(tmp_path), {"A": "1"}, kmod.PACKAGE_DIR)
    joined = " ".join(argv)
    for flag in ("--die-with-parent", "--unshare-net", "--unshare-pid", "--clearenv", "--new-session"):
        assert flag in argv
    assert f"--bind {tmp_path} {tmp_path}" in joined  # the only writable bind
    assert joined.count("--bind ") == 1
    assert f"--ro-bind {kmod.PACKAGE_DIR} {kmod.PACKAGE_DIR}" in joined
    checkout = os.path.dirname(kmod.PACKAGE_DIR)
    assert f"--ro-bind {checkout} " not in joined, "the package's checkout must not be visible"
    assert "--ro-bind / /" not in joined and "/etc/shadow" not in joined
    assert "--setenv A 1" in joined and "--tmpfs /tmp" in joined


def test_launcher_applies_rlimits_before_exec():
    limits = sb.Limits(memory_limit_mb=700, cpu_seconds=30, max_processes=None)
    probe = "import resource as r; print(r.getrlimit(r.RLIMIT_AS)[0], r.getrlimit(r.RLIMIT_CPU)[0], r.getrlimit(r.RLIMIT_CORE)[0])"
    argv = sb.limits_argv(sys.executable, limits, [sys.executable, "-c", probe])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert out.stdout.split() == [str(700 << 20), "30", "0"], out.stderr


def test_sandbox_false_needs_no_bwrap_and_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert launch.resolve_mode(False, sys.executable, kmod.PACKAGE_DIR) == ("plain", "sandbox disabled")


def test_marked_processes_are_found_and_killed():
    marker = f"RLM_ENV_ID=test{os.getpid()}"
    env = {**os.environ, "RLM_ENV_ID": marker.split("=", 1)[1]}
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        deadline = time.monotonic() + 5
        while p.pid not in sb.marked_processes(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert p.pid in sb.marked_processes(marker)
        assert sb.kill_marked_processes(marker) == 1
        assert p.wait(5) == -9
    finally:
        if p.poll() is None:
            p.kill()


def test_stale_work_dirs_of_dead_parents_are_swept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / "rlm-env-stale"
    live = tmp_path / "rlm-env-live"
    for d, pid in ((stale, dead.pid), (live, os.getpid())):
        d.mkdir()
        (d / "owner.json").write_text(json.dumps({"pid": pid, "env_id": "nothing-runs-with-this"}))
    assert kmod.sweep_stale_workdirs(str(tmp_path)) == 1
    assert not stale.exists() and live.exists()


def _capped_stream(limit: int):
    """(what reached the stream, a stream object, an _OutputCap of ``limit`` wrapping it)."""
    written = []

    class Stream:
        def write(self, s):
            written.append(s)
            return len(s)

    stream = Stream()
    cap = _OutputCap(limit)
    cap.wrap(stream, "stdout")
    return written, stream, cap


def test_output_cap_keeps_head_and_tail_with_a_marker():
    written, stream, cap = _capped_stream(30)
    cap.pre_run_cell()
    for i in range(100):
        stream.write(f"{i:03d}\n")
    cap.post_run_cell()
    text = "".join(written)
    assert text.startswith("000\n001\n002\n003\n004\n") and text.endswith("098\n099\n")
    assert "characters of output dropped by the REPL environment" in text
    written.clear()
    cap.pre_run_cell()
    stream.write("short\n")
    cap.post_run_cell()
    assert written == ["short\n"]


def _with_env(body, **kw):
    async def main():
        env = kmod.KernelREPL(timeout=10, **kw)
        await env.start(_echo)
        try:
            return await body(env)
        finally:
            await env.shutdown()

    return asyncio.run(main())


@pytest.mark.usefixtures("needs_bwrap")
def test_sandboxed_kernel_uses_message_interrupts_and_keeps_no_context_file():
    async def body(env):
        await env.load_context("private data")
        spec = json.load(open(os.path.join(env.basedir, "kernels", "rlm-env", "kernel.json")))
        files = os.listdir(env.workdir)
        r = await env.execute("import os; print(os.getpid(), len(context), os.environ['HOME'], os.environ['IPYTHONDIR'])")
        return env, spec, files, r.text.split()

    env, spec, files, (pid, n, home, ipdir) = _with_env(body)
    assert env.sandboxed and env.sandbox_reason == "bubblewrap"
    assert spec["interrupt_mode"] == "message" and spec["argv"][0].endswith("bwrap")
    assert not [f for f in files if f.startswith("context-")]
    assert pid == "2" and n == "12" and home.startswith(env.workdir) and ipdir.startswith(env.workdir)


@pytest.mark.usefixtures("needs_sandbox")
def test_sandboxed_kernel_can_import_the_scientific_stack_and_write_its_home():
    pytest.importorskip("pandas")

    async def body(env):
        r = await env.execute(
            "import pandas, numpy, os, tempfile\n"
            "open(os.path.expanduser('~/x.txt'), 'w').write('ok')\n"
            "tempfile.NamedTemporaryFile().close()\n"
            "print(pandas.DataFrame({'a': [1, 2]}).a.sum())"
        )
        return r

    r = _with_env(body)
    assert r.status == "ok" and r.text.strip() == "3", r.text


@pytest.mark.usefixtures("needs_sandbox")
def test_restart_in_the_sandbox_reloads_context_and_helpers():
    async def body(env):
        await env.load_context([1, 2, 3])
        await env.restart()
        return await env.execute("print(context, llm_query('x'))")

    r = _with_env(body)
    assert r.text.strip() == "[1, 2, 3] ok"


@pytest.mark.usefixtures("needs_sandbox")
@pytest.mark.skipif(os.geteuid() != 0, reason="run_as applies to a root parent")
def test_root_parent_kernel_runs_as_a_private_uid_or_capless_root():
    async def probe(env):
        r = await env.execute("import os\nprint(os.getuid(), open('/proc/self/status').read().split('CapEff:')[1].split()[0])")
        return r.text.split()

    uid, caps = _with_env(probe)
    assert sb.RUN_AS_RANGE[0] <= int(uid) < sb.RUN_AS_RANGE[1] and int(caps, 16) == 0
    uid, caps = _with_env(probe, run_as=None)
    assert uid == "0" and int(caps, 16) == 0


def test_required_sandbox_that_is_missing_is_an_error_not_a_silent_fallback(monkeypatch):
    monkeypatch.setattr(sb.shutil, "which", lambda name: None)
    monkeypatch.delenv(launch.MODE_ENV, raising=False)

    async def main():
        env = kmod.KernelREPL(timeout=10, sandbox=True)
        with pytest.raises(kmod.EnvironmentError_, match="sandbox was required but bubblewrap .*not installed"):
            await env.start(_echo)
        return env

    env = asyncio.run(main())
    assert not os.path.exists(env.workdir)


def test_output_cap_rewraps_a_stream_whose_write_was_replaced_between_cells():
    # IPython 9 wraps sys.stdout.write with its own output "tee" after ours
    written, stream, cap = _capped_stream(30)
    inner = stream.write
    stream.write = lambda s, _inner=inner: _inner(s)  # another layer on top of ours
    cap.pre_run_cell()
    for i in range(100):
        stream.write(f"{i:03d}\n")
    cap.post_run_cell()
    text = "".join(written)
    assert "characters of output dropped by the REPL environment" in text and len(text) < 200


def test_sandbox_plan_has_one_writable_bind_and_hides_the_checkout(tmp_path):
    ops = sb.sandbox_plan(sys.executable, str(tmp_path), kmod.PACKAGE_DIR)
    assert [op for op in ops if op[0] == "bind"] == [["bind", str(tmp_path), str(tmp_path)]]
    assert ["ro-bind", kmod.PACKAGE_DIR, kmod.PACKAGE_DIR] in ops
    checkout = os.path.dirname(kmod.PACKAGE_DIR)
    assert not [op for op in ops if op[0].endswith("bind") and op[1] in ("/", checkout)]
    assert ["proc", "/proc"] in ops and ["tmpfs", "/tmp", "1777"] in ops


def test_an_unknown_forced_mode_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(launch.MODE_ENV, "docker")
    with pytest.raises(sb.SandboxUnavailable, match="RLM_JUPYTER_SANDBOX_MODE='docker' names no sandbox mode"):
        launch.resolve_mode(None, sys.executable, kmod.PACKAGE_DIR)


def test_exit_reasons_name_the_signal_from_the_supervisor_s_status():
    assert launch.exit_reason(128 + 11, None).startswith("SIGSEGV: a segmentation fault")
    assert "CPU-time limit of 2 s" in launch.exit_reason(128 + 24, 2)
    assert launch.exit_reason(-9, None).startswith("SIGKILL")
    assert "exited with status 3" in launch.exit_reason(3, None)


@pytest.mark.parametrize("mode", ["bwrap", "unshare"])
def test_the_ownership_record_is_outside_the_sandbox_and_cannot_be_forged(mode, monkeypatch):
    """The sweep trusts owner.json to decide whose processes to kill: model code must not be
    able to rewrite it (it lived in the kernel's writable work dir before)."""
    why = launch._why_not(mode, sys.executable, kmod.PACKAGE_DIR)
    if why:
        if os.environ.get("RLM_JUPYTER_REQUIRE_SANDBOX") and sys.platform.startswith("linux"):
            pytest.fail(f"RLM_JUPYTER_REQUIRE_SANDBOX is set but {why}")
        pytest.skip(why)
    monkeypatch.setenv(launch.MODE_ENV, mode)

    async def body(env):
        owner = getattr(env, "owner_file", os.path.join(env.workdir, "owner.json"))
        code = (
            "import json, os\n"
            f"paths = [{owner!r}, os.path.join({env.workdir!r}, 'owner.json'), os.path.join(os.path.dirname({env.workdir!r}), 'owner.json')]\n"
            "done = []\n"
            "for p in paths:\n"
            "    try:\n"
            "        try:\n"
            "            os.unlink(p)\n"
            "        except OSError:\n"
            "            pass\n"
            "        with open(p, 'w') as f:\n"
            "            json.dump({'pid': 1, 'env_id': 'forged'}, f)\n"
            "        done.append('wrote')\n"
            "    except OSError as e:\n"
            "        done.append(type(e).__name__)\n"
            "print(done)"
        )
        r = await env.execute(code)
        with open(owner) as f:
            record = json.load(f)
        kmod.sweep_stale_workdirs()
        return env, owner, r, record, os.path.isdir(env.workdir)

    env, owner, r, record, still_there = _with_env(body)
    assert env.sandbox_mode == mode and r.status == "ok", r.text
    assert not owner.startswith(env.workdir + os.sep)
    assert record == {"pid": os.getpid(), "env_id": env.env_id}, f"forged: {record} ({r.text.strip()})"
    assert still_there
