"""Guards of the environment kernel, run INSIDE it (stdlib only): the per-cell output cap,
the traceback filter that hides the helpers' own frames, and (unsandboxed kernels) the watch
that kills the kernel and what it forked when the parent process dies.

Loaded by :mod:`.kernel_side` (imported from the package by a local kernel; a gateway kernel
gets its source first, as module ``rlm_jupyter_kernel_guard``, see :mod:`.bootstrap`).
"""

from __future__ import annotations

import threading


class OutputCap:
    """Caps what one cell writes to ``sys.stdout``/``sys.stderr``, so that ``print`` of
    hundreds of MB never travels to the parent: the first 2/3 of ``limit`` characters pass,
    the last 1/3 is kept and written when the cell ends, after a marker saying how many
    characters were dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.head = limit * 2 // 3
        self.tail_len = limit - self.head
        self.streams: dict[str, list] = {}  # name -> [original write, seen, dropped, tail]
        self.targets: dict[str, object] = {}  # name -> the stream object wrapped

    def wrap(self, stream, name: str) -> None:
        # IPython 9 re-wraps ``stream.write`` (its output "tee"): check the function, not the stream
        if stream is None or getattr(stream.write, "_rlm_cap", False):
            return
        original = stream.write
        entry = [original, 0, 0, ""]
        self.streams[name] = entry
        self.targets[name] = stream

        def write(text):
            # a wrapper that was wrapped again (see pre_run_cell) only passes text through
            if not isinstance(text, str) or self.streams.get(name) is not entry:
                return original(text)
            room = self.head - entry[1]
            if room >= len(text):
                entry[1] += len(text)
                return original(text)
            if room > 0:
                original(text[:room])
                entry[1] += room
                text = text[room:]
            entry[2] += len(text)
            entry[3] = (entry[3] + text[-self.tail_len :])[-self.tail_len :]
            return len(text)

        write._rlm_cap = True
        stream.write = write

    def pre_run_cell(self, *args) -> None:
        # IPython 9 re-wraps the streams' write between cells: wrap them again if so
        for name, stream in list(self.targets.items()):
            self.wrap(stream, name)
        for entry in self.streams.values():
            entry[1:] = [0, 0, ""]

    def post_run_cell(self, *args) -> None:
        for entry in self.streams.values():
            original, _, dropped, tail = entry
            if dropped:
                kept = len(tail)
                original(
                    f"\n... [{dropped - kept:,} characters of output dropped by the REPL environment: print less] ...\n"
                    + tail
                )
            entry[1:] = [0, 0, ""]


def without_frames_of(tb, filename: str):
    """``tb`` with the frames of the module compiled from ``filename`` unlinked (in place):
    the model's tracebacks show its own code, not the helpers' insides (IPython's
    ``__tracebackhide__`` never hides the innermost frame)."""
    while tb is not None and tb.tb_frame.f_code.co_filename == filename:
        tb = tb.tb_next
    t = tb
    while t is not None:
        while t.tb_next is not None and t.tb_next.tb_frame.f_code.co_filename == filename:
            t.tb_next = t.tb_next.tb_next
        t = t.tb_next
    return tb


def hide_frames_of(shell, filename: str, marker: str) -> None:
    """Wrap the shell's traceback formatter so that every traceback it renders (errors of
    cells, interrupts) leaves the frames of ``filename`` out; ``marker`` (an attribute set on
    the wrapper) makes a second call for the same module a no-op. Also used by
    :mod:`.kernel_side` and :mod:`.tools_side` for its own frames."""
    formatter = shell.InteractiveTB
    original = formatter.structured_traceback
    if getattr(original, marker, False):
        return

    def structured_traceback(etype, evalue, etb=None, *args, **kwargs):
        try:
            etb = without_frames_of(etb, filename)
        except Exception:
            pass
        return original(etype, evalue, etb, *args, **kwargs)

    setattr(structured_traceback, marker, True)
    formatter.structured_traceback = structured_traceback


def warm_tracebacks(shell) -> None:
    """Render one traceback with a separate formatter in a background thread: IPython's
    first traceback of a process imports ``stack_data`` and loads its highlighter (about
    0.5 s), which would otherwise delay the first error or interrupt the model sees."""

    def run():
        try:
            from IPython.core import ultratb

            formatter = ultratb.AutoFormattedTB(mode=shell.xmode, theme_name=shell.colors)
            try:
                raise KeyboardInterrupt()
            except KeyboardInterrupt as exc:
                formatter.structured_traceback(type(exc), exc, exc.__traceback__)
        except Exception:
            pass

    threading.Thread(target=run, name="rlm-warm-tracebacks", daemon=True).start()


def marked_processes(marker: str) -> list:
    """PIDs of other processes whose environment holds ``marker`` (``NAME=value``; Linux /proc)."""
    import os

    needle = marker.encode()
    found = []
    me = os.getpid()
    try:
        names = os.listdir("/proc")
    except OSError:  # no /proc (macOS): nothing found; the parent sweeps with psutil
        return found
    for d in names:
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(int(d))
    return found


def watch_parent(marker: str, interval: float = 0.5) -> None:
    """Unsandboxed kernels only: when the parent process dies (a notebook kernel restarted
    mid-run), SIGKILL every process carrying ``marker`` in its environment (this kernel and
    anything the model's code forked or daemonised), then this kernel's process group."""
    import os
    import signal
    import time

    parent = os.getppid()

    def run():
        while os.getppid() == parent:
            time.sleep(interval)
        for pid in marked_processes(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.killpg(os.getpgid(0), signal.SIGKILL)
        finally:
            os._exit(1)

    threading.Thread(target=run, name="rlm-parent-watch", daemon=True).start()
