"""Fault suite fixtures: every environment kernel is recorded, given small limits, and
checked for leftovers (processes, work dirs) after each test.

The confinement mode is the automatic choice (bubblewrap, else unshare, else plain) unless
``RLM_JUPYTER_SANDBOX_MODE=bwrap|unshare|plain`` forces one: ``.ci/run`` runs the suite once
per mode and the tables printed at the end are labelled with it."""

from __future__ import annotations

import pytest

from faults import faultkit
from rlm_jupyter.environment import kernel as kernel_mod


@pytest.fixture(autouse=True)
def envs(monkeypatch):
    """The KernelREPL instances a test creates (also those RLM creates); after the test,
    none of them may have left a process or a work dir behind."""
    made = []
    base = kernel_mod.KernelREPL

    class Recorded(base):
        def __init__(self, *args, **kw):
            for k, v in faultkit.TEST_LIMITS.items():
                kw.setdefault(k, v)
            super().__init__(*args, **kw)
            made.append(self)

    monkeypatch.setattr(kernel_mod, "KernelREPL", Recorded)
    monkeypatch.setattr(kernel_mod, "INTERRUPT_GRACE_SECONDS", 2.0)
    first_row = len(faultkit.ROWS)
    yield made
    for row in faultkit.ROWS[first_row:]:
        if not row["mode"] and made:
            row["mode"] = made[0].sandbox_mode or "-"
    left = faultkit.wait_no_leftovers(made)
    assert not left, f"leftovers: {left}"


def pytest_terminal_summary(terminalreporter):
    rows = faultkit.ROWS
    tr = terminalreporter
    if rows:
        tr.section(f"fault suite: case by case (RLM_JUPYTER_SANDBOX_MODE={faultkit.suite_mode()})")
        tr.write_line(f"{'case':<46} {'mode':<9} {'survived':<8} {'recover s':>9}  message")
    for r in rows:
        secs = "" if r["seconds"] is None else f"{r['seconds']:.2f}"
        tr.write_line(f"{r['case']:<46} {r['mode']:<9} {str(r['survived']):<8} {secs:>9}  {r['message']}")
    if faultkit.ISOLATION:
        tr.section(f"fault suite: what model code can reach (RLM_JUPYTER_SANDBOX_MODE={faultkit.suite_mode()})")
        for probe, modes in faultkit.ISOLATION.items():
            tr.write_line(f"{probe:<32} " + "   ".join(f"{m}: {v:<40}" for m, v in modes.items()))
