"""Model code that misbehaves: the run goes on, the model is told what happened, the
trajectory keeps every cell, and no process outlives the run."""

from __future__ import annotations

import pytest

from faults.faultkit import model, prompt_of_turn, record, repl, require_sandbox
from faults import faultkit
from rlm_jupyter import RLM

CTX = "The quick brown fox.\n" * 1000
TIMEOUT = 3.0


def run(replies, context=CTX, sub=None, **kw):
    """A scripted run; the per-block timeout is generous (machines under load) except in the
    tests of time-outs, which pass ``timeout=TIMEOUT``."""
    root = model("root", replies)
    kw = {"timeout": 30.0, "retry_backoff": 0.01, "max_iterations": 8, **kw}
    res = RLM(model=root, sub_model=sub or root, **{**faultkit.TEST_LIMITS, **kw}).completion("q", context)
    return res, root


def cell(res, turn, block=0):
    return res.trajectory.iterations[turn - 1].cells[block]


def test_infinite_loop_is_interrupted_and_variables_survive():
    res, root = run([repl("keep = 41"), repl("while True: pass"), repl("print(keep + 1, len(context))"), "FINAL(done)"], timeout=TIMEOUT)
    c = cell(res, 2)
    assert c.status == "timeout" and "KeyboardInterrupt" in c.text
    msg = prompt_of_turn(root, 3)
    assert f"ran longer than {TIMEOUT:g} s and was interrupted" in msg
    assert cell(res, 3).text.strip() == f"42 {len(CTX)}" and res.status == "done"
    record("loop forever (while True)", True, next(ln for ln in msg.splitlines() if "ran longer" in ln), c.seconds - TIMEOUT)


def test_loop_that_swallows_interrupts_gets_the_kernel_restarted():
    code = "import time\nwhile True:\n    try:\n        time.sleep(60)\n    except KeyboardInterrupt:\n        pass"
    res, root = run([repl("keep = 1"), repl(code), repl("print(len(context), 'keep' in globals())"), "FINAL(done)"], timeout=TIMEOUT)
    c = cell(res, 2)
    assert c.status == "timeout"
    msg = prompt_of_turn(root, 3)
    assert "did not stop when interrupted" in msg and "environment was restarted" in msg
    assert cell(res, 3).text.strip() == f"{len(CTX)} False" and res.status == "done"
    record("loop forever, ignoring KeyboardInterrupt", True, "did not stop when interrupted ... restarted; context reloaded", c.seconds - TIMEOUT)


@pytest.mark.parametrize(
    "case,code",
    [
        ("os._exit(1)", "import os\nos._exit(1)"),
        ("segfault (ctypes.string_at(0))", "import ctypes\nctypes.string_at(0)"),
        ("SIGKILL itself", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),
        ("signal.alarm(1), then sleep", "import signal, time\nsignal.alarm(1)\ntime.sleep(10)"),
    ],
)
def test_kernel_death_is_survived(case, code):
    res, root = run([repl(code), repl("print(len(context))"), "FINAL(done)"])
    c = cell(res, 1)
    assert c.status == "died"
    msg = prompt_of_turn(root, 2)
    assert "kernel died while running this code" in msg and "`context` was reloaded" in msg
    assert cell(res, 2).text.strip() == str(len(CTX)) and res.status == "done"
    record(case, True, next(ln for ln in msg.splitlines() if "died" in ln).strip("[]"), c.seconds)


def test_allocation_far_beyond_the_memory_limit_is_a_memory_error():
    grow = "chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 1024**2))"
    res, root = run([repl("big = bytearray(50 * 1024**3)"), repl(grow), repl("del chunks\nprint(len(context))"), "FINAL(done)"])
    assert cell(res, 1).status == "error" and "MemoryError" in cell(res, 1).text
    assert cell(res, 2).status == "error" and "MemoryError" in cell(res, 2).text
    assert "MemoryError" in prompt_of_turn(root, 2) and "MemoryError" in prompt_of_turn(root, 3)
    assert cell(res, 3).text.strip() == str(len(CTX)) and res.status == "done"
    record("allocate 50 GB / grow until the limit", True, "MemoryError traceback (RLIMIT_AS 1536 MB); kernel and variables kept",
           cell(res, 2).seconds)


@pytest.mark.parametrize(
    "case,code",
    [
        ("print 200 MB at once", "print('x' * 200_000_000)"),
        ("print 200 MB in 1 MB lines", "for _ in range(200):\n    print('y' * 1_000_000)"),
    ],
)
def test_printing_200_mb_is_capped_in_the_kernel(case, code):
    res, root = run([repl(code), "FINAL(done)"], max_output_chars=20_000)
    c = cell(res, 1)
    assert c.status == "ok" and len(c.text) < 1_100_000
    assert "characters of output dropped by the REPL environment" in c.text
    msg = prompt_of_turn(root, 2)
    assert len(msg) < 25_000 and "characters truncated" in msg
    record(case, True, "kept 1 MB (head+tail) with 'characters of output dropped'; model sees 20,000 chars", c.seconds)


def test_fork_bomb_hits_the_process_limit_and_dies_with_the_sandbox(envs):
    mode = require_sandbox()  # unsandboxed, RLIMIT_NPROC does not bind root
    code = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    for i in range(10_000):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(600)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "except OSError as e:\n"
        "    print('fork failed after', n, type(e).__name__)\n"
    )
    res, root = run([repl(code), repl("print(len(context))"), "FINAL(done)"])
    assert envs[0].sandboxed
    c = cell(res, 1)
    assert "fork failed after" in c.text and "BlockingIOError" in c.text
    n = int(c.text.split("fork failed after")[1].split()[0])
    assert n < 128
    assert cell(res, 2).text.strip() == str(len(CTX)) and res.status == "done"
    record(f"fork 10,000 sleeping children ({mode})", True, f"BlockingIOError after {n} forks (RLIMIT_NPROC 128); all gone at shutdown",
           c.seconds)


def test_forked_daemons_are_killed_at_shutdown_without_sandbox(envs):
    code = (
        "import os, time\n"
        "for i in range(5):\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(600)\n"
        "        os._exit(0)\n"
        "print('spawned')"
    )
    import rlm_jupyter.environment.kernel as k

    orig = k.KernelREPL.__init__

    def no_sandbox(self, *a, **kw):
        kw["sandbox"] = False
        orig(self, *a, **kw)

    k.KernelREPL.__init__ = no_sandbox
    try:
        res, root = run([repl(code), "FINAL(done)"])
    finally:
        k.KernelREPL.__init__ = orig
    assert not envs[0].sandboxed and "spawned" in cell(res, 1).text
    record("double-forked daemons (sandbox=False)", True, "killed at shutdown by their RLM_ENV_ID marker", None, "plain")


def test_deleting_or_rebinding_context_and_helpers_is_repaired_and_reported():
    sub = model("sub", lambda m: "pong")
    res, root = run(
        [
            repl("del context\ndel llm_query\nFINAL_VAR = None"),
            repl("print(len(context), llm_query('ping'))"),
            repl("context = 'tiny'"),
            repl("print(len(context))\ndel context"),
            repl("print(len(context))"),
            "FINAL(done)",
        ],
        sub=sub,
    )
    m2 = prompt_of_turn(root, 2)
    assert "deleted or replaced llm_query, FINAL_VAR" in m2 and "deleted `context`; it was restored" in m2
    assert cell(res, 2).text.strip() == f"{len(CTX)} pong"
    assert "`context` now holds a str your code assigned" in prompt_of_turn(root, 4)
    assert cell(res, 4).text.strip() == "4" and cell(res, 5).text.strip() == str(len(CTX))
    record("del/rebind context, llm_query, FINAL_VAR", True, "helpers restored + told; deleted context restored; rebound context noted once", 0.0)


def test_ten_thousand_llm_queries_stop_at_max_subcalls():
    sub = model("sub", lambda m: "ok")
    res, root = run([repl("for i in range(10_000):\n    llm_query(str(i))"), "FINAL(never)"], sub=sub, max_subcalls=50)
    assert res.status == "limit" and "sub-call limit reached" in res.message
    c = cell(res, 1)
    assert c.status == "error" and "sub-call limit reached" in c.text and "do not make more sub-calls" in c.text
    assert len(res.trajectory.subcalls) == 50
    record("llm_query 10,000 times (max_subcalls=50)", True, res.message, c.seconds)


def test_ten_thousand_llm_queries_swallowing_errors_still_stop():
    sub = model("sub", lambda m: "ok")
    code = "errors = 0\nfor i in range(10_000):\n    try:\n        llm_query(str(i))\n    except SubcallError:\n        errors += 1\nprint(errors)"
    res, root = run([repl(code), "FINAL(never)"], sub=sub, max_subcalls=50)
    assert res.status == "limit" and cell(res, 1).text.strip() == str(10_000 - 50)
    record("llm_query 10,000 times, errors swallowed", True, res.message, cell(res, 1).seconds)


def test_endless_recursion_is_bounded_by_max_depth():
    def every_node_recurses(msgs):
        turns = sum(1 for m in msgs if m["role"] == "assistant")
        return repl("r = rlm_query('go deeper', context='x')\nprint(r)") if turns == 0 else "FINAL_VAR(r)"

    sub = model("leaf", lambda m: "leaf")
    res, root = run(every_node_recurses, sub=sub, max_depth=3)
    assert res.status == "done" and res.answer == "leaf"
    depths = sorted(n.depth for n in res.trajectory.nodes.values())
    assert depths == [0, 1, 2]
    record("rlm_query recursing without end (max_depth=3)", True, "children stop at depth 2: rlm_query becomes llm_query", res.wall_seconds)


def test_syntax_errors_and_exceptions_reach_the_model():
    res, root = run([repl("def f(:\n  pass"), repl("1/0"), "FINAL(done)"])
    assert "SyntaxError" in prompt_of_turn(root, 2) and "ZeroDivisionError" in prompt_of_turn(root, 3)
    assert res.status == "done"


def test_c_level_loop_holding_the_gil_gets_the_kernel_restarted():
    res, root = run([repl("sum(range(10**14))"), repl("print(len(context))"), "FINAL(done)"], timeout=TIMEOUT)
    c = cell(res, 1)
    assert c.status == "timeout" and "environment was restarted" in prompt_of_turn(root, 2)
    assert cell(res, 2).text.strip() == str(len(CTX)) and res.status == "done"
    record("C-level loop holding the GIL (sum(range(10**14)))", True, "not interruptible: kernel restarted after the grace period", c.seconds - TIMEOUT)


def test_cpu_time_limit_kills_and_restarts_the_kernel(monkeypatch):
    from faults import faultkit

    monkeypatch.setitem(faultkit.TEST_LIMITS, "cpu_seconds", 2)
    res, root = run([repl("while True: pass"), repl("print(len(context))"), "FINAL(done)"], timeout=20)
    c = cell(res, 1)
    msg = prompt_of_turn(root, 2)
    assert c.status == "died" and "CPU-time limit" in msg, msg
    assert cell(res, 2).text.strip() == str(len(CTX)) and res.status == "done"
    record("busy loop past cpu_seconds=2", True, next(ln for ln in msg.splitlines() if "died" in ln).strip("[]"), c.seconds)


@pytest.mark.parametrize(
    "case,body",
    [
        ("FINAL_VAR of an object whose __str__ loops", "while True: pass"),
        ("FINAL_VAR of an object whose __str__ exits", "import os; os._exit(1)"),
    ],
)
def test_a_hostile_str_in_final_var_neither_hangs_nor_ends_the_run(case, body):
    define = f"class Evil:\n    def __str__(self):\n        {body}\n        return 'x'\nevil = Evil()\nok = 'fine'"
    res, root = run([repl(define), "FINAL_VAR(evil)", repl("ok = 'fine'"), "FINAL_VAR(ok)"], timeout=TIMEOUT)
    assert res.status == "done" and res.answer == "fine"
    assert "FINAL_VAR(evil) failed" in prompt_of_turn(root, 3)
    record(case, True, "FINAL_VAR(evil) failed (told to the model); the run goes on", res.wall_seconds)


@pytest.mark.parametrize(
    "case,sig",
    [("SIGTERM to os.getppid()", "SIGTERM"), ("SIGKILL to os.getppid()", "SIGKILL"), ("SIGINT to os.getppid()", "SIGINT")],
)
def test_signals_to_the_kernel_s_parent_never_reach_the_user_s_process(case, sig):
    """The kernel's parent is bwrap's init or the supervisor, never this process: a signal sent
    to os.getppid() is ignored (or, for SIGKILL, takes the kernel down and it is restarted)."""
    import os

    code = f"import os, signal\nparent = os.getppid()\nos.kill(parent, signal.{sig})\nimport time; time.sleep(1)\nprint('parent', parent)"
    res, root = run([repl(code), repl("print(len(context))"), "FINAL(done)"])
    c = cell(res, 1)
    assert f"parent {os.getpid()}" not in c.text
    denied = c.status == "error" and "PermissionError" in c.text  # bwrap's init runs as another uid
    assert c.status in ("ok", "died") or denied, (c.status, c.text)
    assert cell(res, 2).text.strip() == str(len(CTX)) and res.status == "done"
    outcome = {"ok": "ignored", "died": "kernel died, restarted, context reloaded"}.get(c.status, "PermissionError")
    record(case, True, f"this process untouched; {outcome}", c.seconds)


def test_fd_level_output_is_captured_capped_and_never_reaches_our_stdout(capfd):
    code = (
        "import os, subprocess\n"
        "subprocess.run(['sh', '-c', 'printf ZZZ-from-a-subprocess'])\n"
        "os.write(1, b'X' * 3_000_000)\n"
        "os.write(2, b'Y' * 3_000_000)\n"
        "print('done')"
    )
    res, root = run([repl(code), "FINAL(done)"], max_output_chars=20_000)
    c = cell(res, 1)
    out, err = capfd.readouterr()
    assert "XXXXXXXXXX" not in out and "YYYYYYYYYY" not in err and "ZZZ-from" not in out, "kernel output reached our fds"
    assert c.status == "ok" and "XXXXXXXXXX" in c.text and "done" in c.text
    # capped at 1,000,000 per stream in the kernel; what is still in the fd pipe when the cell
    # ends (at most the 64 KiB pipe buffer) arrives after the cap's reset
    assert c.text.count("X") < 1_100_000 and c.text.count("Y") < 1_100_000, "fd output was not capped in the kernel"
    # (fd output written just before a cell ends may arrive after it: ipykernel reads the pipe
    # in a thread; the subprocess writes first so that its line is surely in this cell)
    assert "characters of output dropped by the REPL environment" in c.text and "ZZZ-from-a-subprocess" in c.text
    assert len(prompt_of_turn(root, 2)) < 25_000
    record("os.write(1/2, 3 MB) + a subprocess's output", True, "on IOPub, capped to 1 MB per stream in the kernel; nothing on our fds",
           c.seconds)


def test_deleting_builtins_print_does_not_stop_the_run():
    res, root = run([repl("import builtins\ndel builtins.print"), repl("print(len(context))"), repl("x = len(context)\nx"), "FINAL(done)"])
    assert "NameError" in prompt_of_turn(root, 3)
    assert cell(res, 3).text.strip() == str(len(CTX)) and res.status == "done"
    record("del builtins.print", True, "NameError shown to the model; the kernel and the run go on", cell(res, 1).seconds)
