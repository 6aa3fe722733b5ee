"""Read the JSONL logs of the official implementation (PyPI ``rlms``, github alexzhang13/rlm)
into a :class:`~rlm_jupyter.core.trajectory.Trajectory`.

Format (``rlm/logger/rlm_logger.py`` and ``rlm/core/types.py`` of rlms 0.1.3): one JSON object
per line; first ``{"type": "metadata", "timestamp", "root_model", "max_depth",
"max_iterations", "backend", "backend_kwargs", "environment_type", "environment_kwargs",
"other_backends"}``, then one ``{"type": "iteration", "iteration": n, "timestamp", "prompt"
(the message history sent to the root LM), "response", "code_blocks": [{"code", "result":
{"stdout", "stderr", "locals", "execution_time", "rlm_calls": [{"root_model", "prompt",
"response", "usage_summary", "execution_time", "metadata"?, "error"?}], "final_answer"}}],
"final_answer", "iteration_time"}`` per root turn. A sub-call with ``metadata`` was a child
RLM (``rlm_query``); its ``metadata`` is that child's ``{"run_metadata", "iterations"}``. One
logger may log several completions to one file: the iteration count restarts at 1.

The log is turned into this project's events (``run_started``, ``iteration_started`` with the
root ``messages``, ``root_reply``, ``code_started``/``code_finished`` with stdout/stderr as
nbformat stream outputs, ``subcall_*``, child runs, ``final``, ``run_finished``), so every
view of a trajectory (notebook export, player) works on it. Unknown per-call usage is 0.
"""

from __future__ import annotations

import datetime
import json
import pathlib
from typing import Any

from . import events as ev
from .trajectory import Trajectory


class OfficialLogError(ValueError):
    """The file is not a JSONL log of the official ``rlms`` package (message says where)."""


def is_official_log(path: str | pathlib.Path) -> bool:
    """True if the first record of ``path`` is an ``rlms`` logger record."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    obj = json.loads(line)
                    return isinstance(obj, dict) and obj.get("type") in ("metadata", "iteration") and "kind" not in obj
    except (OSError, ValueError):
        return False
    return False


def _records(path: str | pathlib.Path) -> list[dict]:
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise OfficialLogError(f"{path}:{n}: not JSON ({exc})") from None
            if not isinstance(obj, dict) or obj.get("type") not in ("metadata", "iteration"):
                raise OfficialLogError(f"{path}:{n}: not an rlms log record (type metadata/iteration)")
            out.append(obj)
    return out


def _usage(summary: dict | None) -> dict:
    models = (summary or {}).get("model_usage_summaries") or {}
    inp = sum(int(m.get("total_input_tokens") or 0) for m in models.values())
    out = sum(int(m.get("total_output_tokens") or 0) for m in models.values())
    costs = [m.get("total_cost") for m in models.values()]
    usd = sum(float(c) for c in costs if c is not None)
    known = bool(models) and all(c is not None for c in costs)
    return {"input_tokens": inp, "output_tokens": out, "usd": usd, "calls": 1, "cost_known": known}


class _Builder:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.events: list[ev.Event] = []
        self.t0: datetime.datetime | None = None
        self.t = 0.0

    def clock(self, stamp: str | None) -> None:
        try:
            now = datetime.datetime.fromisoformat(stamp) if stamp else None
        except ValueError:
            now = None
        if now is None:
            return
        if self.t0 is None:
            self.t0 = now
        self.t = max(self.t, (now - self.t0).total_seconds())

    def emit(self, kind: str, node: str, parent: str | None, depth: int, **data: Any) -> None:
        self.events.append(ev.Event(kind, node, parent, depth, round(self.t, 6), data, self.run_id))

    def run(self, node: str, parent: str | None, depth: int, meta: dict, iterations: list[dict], query: str | None) -> None:
        first = iterations[0] if iterations else {}
        self.clock(meta.get("timestamp") or first.get("timestamp"))
        self.emit(
            ev.RUN_STARTED, node, parent, depth,
            query=query if query is not None else _query_of(first.get("prompt")),
            context_info={"source": "rlms"},
            model=str(meta.get("root_model") or ""),
            sub_model=str((meta.get("other_backends") or [None])[0] or meta.get("root_model") or ""),
            limits={"max_iterations": meta.get("max_iterations"), "max_depth": meta.get("max_depth")},
            imported_from="rlms",
            rlms_metadata=_redacted(meta),
        )
        answer, subs, kids = None, 0, 0
        for it in iterations:
            n = int(it.get("iteration") or 0)
            self.clock(it.get("timestamp"))
            self.emit(ev.ITERATION_STARTED, node, parent, depth, iteration=n, messages=it.get("prompt"))
            self.emit(ev.ROOT_REPLY, node, parent, depth, iteration=n, text=str(it.get("response") or ""), usage=None)
            for b, block in enumerate(it.get("code_blocks") or []):
                res = block.get("result") or {}
                self.emit(ev.CODE_STARTED, node, parent, depth, iteration=n, block=b, code=str(block.get("code") or ""))
                for call in res.get("rlm_calls") or []:
                    if call.get("metadata"):
                        kids += 1
                        child = call["metadata"]
                        cid = f"{node}.c{kids}"
                        self.run(cid, node, depth + 1, child.get("run_metadata") or {}, child.get("iterations") or [], str(call.get("prompt") or ""))
                        continue
                    subs += 1
                    sid = f"{node}.s{subs}"
                    self.emit(ev.SUBCALL_STARTED, sid, node, depth + 1, op="llm_query", model=str(call.get("root_model") or ""), prompt=_text(call.get("prompt")), batch=None)
                    self.t += float(call.get("execution_time") or 0.0)
                    self.emit(ev.SUBCALL_FINISHED, sid, node, depth + 1, answer=call.get("response"), usage=_usage(call.get("usage_summary")), error=call.get("error"), cached=False)
                stdout, stderr = str(res.get("stdout") or ""), str(res.get("stderr") or "")
                outputs = [{"output_type": "stream", "name": name, "text": text} for name, text in (("stdout", stdout), ("stderr", stderr)) if text]
                self.emit(
                    ev.CODE_FINISHED, node, parent, depth, iteration=n, block=b, outputs=outputs, text=stdout + stderr,
                    status="error" if stderr.strip() else "ok", seconds=float(res.get("execution_time") or 0.0), execution_count=None,
                )
            if it.get("final_answer") is not None:
                answer = str(it["final_answer"])
                forced = not it.get("code_blocks")
                self.emit(ev.FINAL, node, parent, depth, answer=answer, source="forced" if forced else "answer", iteration=n)
        status = "done" if answer is not None else "error"
        if answer is not None and iterations and not iterations[-1].get("code_blocks"):
            status = "max_iterations"
        self.emit(ev.RUN_FINISHED, node, parent, depth, status=status, answer=answer, message="imported from an rlms log", usage=None)


SECRET_WORDS = ("key", "token", "secret", "password", "authorization")


def _redacted(value: Any) -> Any:
    """``value`` with every dict entry whose name mentions a key, token, secret or password
    replaced by ``"<redacted>"`` (rlms logs its ``backend_kwargs``, which may hold an API key)."""
    if isinstance(value, dict):
        return {k: "<redacted>" if any(w in str(k).lower() for w in SECRET_WORDS) else _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def _text(prompt: Any) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)


def _query_of(messages: Any) -> str:
    """The first user message of an official message history (it holds the root prompt)."""
    if isinstance(messages, list):
        for m in messages:
            if isinstance(m, dict) and m.get("role") == "user":
                return str(m.get("content") or "")
    return _text(messages) if messages else ""


def official_runs(path: str | pathlib.Path) -> list[Trajectory]:
    """Every completion logged in an ``rlms`` JSONL file, as trajectories, in order.

    Raises:
        OfficialLogError: a line is not JSON or not an ``rlms`` log record (with its number).
        FileNotFoundError: no such file.
    """
    records = _records(path)
    meta = next((r for r in records if r["type"] == "metadata"), {})
    runs: list[list[dict]] = []
    for r in records:
        if r["type"] != "iteration":
            continue
        if not runs or int(r.get("iteration") or 0) <= int(runs[-1][-1].get("iteration") or 0):
            runs.append([])
        runs[-1].append(r)
    stem = pathlib.Path(path).stem
    out = []
    for i, its in enumerate(runs or [[]]):
        b = _Builder(f"rlms-{stem.rsplit('_', 1)[-1]}" + (f"-{i + 1}" if len(runs) > 1 else ""))
        b.run("0", None, 0, meta, its, None)
        out.append(Trajectory.from_events(b.events))
    return out


def load_official_jsonl(path: str | pathlib.Path, run: int = 0) -> Trajectory:
    """The ``run``-th completion (0-based) of an ``rlms`` JSONL log as a :class:`Trajectory`.

    Raises:
        OfficialLogError: not an rlms log; IndexError: fewer runs in the file.
    """
    runs = official_runs(path)
    if not 0 <= run < len(runs):
        raise IndexError(f"{path} holds {len(runs)} run(s); run={run} asked")
    return runs[run]
