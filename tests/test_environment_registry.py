"""Pluggable REPL environments and LM providers: a third party's backend, registered from this
test module, runs a whole RLM (scripted root and sub-model) without any Jupyter kernel."""

from __future__ import annotations

import asyncio
import contextlib
import io
import traceback

import pytest
from traitlets import TraitError

from conftest import repl
from rlm_jupyter import RLM
from rlm_jupyter.core.protocols import ExecResult, REPLEnvironment
from rlm_jupyter.environment import registry
from rlm_jupyter.lm import providers


class ExecREPL:
    """A toy REPL environment: ``exec`` in a dict, in a worker thread of this process (no
    isolation at all: only for this test). ``llm_query`` goes to the RLM's handler on its loop."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.ns: dict = {}
        self.started = self.stopped = False
        self.restarts = 0

    async def start(self, handler) -> None:
        loop = asyncio.get_running_loop()

        def call(op, **payload):
            return asyncio.run_coroutine_threadsafe(handler(op, payload), loop).result()

        def final(answer):
            self.ns["__answer__"] = str(answer)

        self.helpers = {"llm_query": lambda prompt, model=None: call("llm_query", prompt=prompt, model=model), "FINAL": final}
        self.ns.update(self.helpers)
        self.started = True

    async def load_context(self, context) -> float:
        self.ns["context"] = self._context = context
        return 0.0

    def _run(self, code: str) -> tuple[str, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                exec(compile(code, "<toy>", "exec"), self.ns)
                return out.getvalue(), "ok"
            except Exception:
                return out.getvalue() + traceback.format_exc(), "error"

    async def execute(self, code: str, timeout: float | None = None) -> ExecResult:
        text, status = await asyncio.to_thread(self._run, code)
        outputs = [{"output_type": "stream", "name": "stdout", "text": text}] if text else []
        return ExecResult(outputs, text, status, 0.0, answer=self.ns.pop("__answer__", None))

    async def variable_text(self, name: str):
        return str(self.ns[name]) if name in self.ns else None

    async def interrupt(self) -> None:
        pass

    async def restart(self, already_restarted: bool = False, reason: str = "requested") -> None:
        self.restarts += 1
        self.ns = {**self.helpers, "context": self._context}

    async def shutdown(self) -> None:
        self.stopped = True


def test_a_registered_environment_runs_an_rlm(scripted):
    made = []

    def factory(rlm, python):
        made.append(ExecREPL(rlm.timeout))
        return made[-1]

    registry.register_environment("toy-exec", factory)
    assert "toy-exec" in registry.environment_names()
    sub = scripted(lambda m: "sub:" + m[0]["content"])
    root = scripted([
        repl("words = context.split()\nprint(len(words), llm_query(words[0]))"),
        "FINAL_VAR(words)",
    ])
    res = RLM(model=root, sub_model=sub, environment="toy-exec").completion("q", "alpha beta gamma")
    cells = [c for it in res.trajectory.iterations for c in it.cells]
    assert res.status == "done", res.message
    assert cells[0].text.strip() == "3 sub:alpha"
    assert res.answer == "['alpha', 'beta', 'gamma']"
    assert isinstance(made[0], REPLEnvironment) and made[0].started and made[0].stopped


def test_the_built_in_backends_are_registered_and_declared_as_entry_points():
    """pyproject.toml declares the built-ins as entry points, pointing at the same callables."""
    import importlib
    import pathlib
    import tomllib

    assert {"kernel", "gateway"} <= set(registry.environment_names())
    toml = tomllib.loads((pathlib.Path(registry.__file__).parents[2] / "pyproject.toml").read_text())
    groups = toml["project"]["entry-points"]

    def load(target):
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    envs = groups[registry.GROUP]
    assert set(envs) == {"kernel", "gateway"}
    assert all(load(t) is registry.environment_factory(n) for n, t in envs.items())
    lms = groups[providers.GROUP]
    assert set(lms) == {"scripted", "replay", "local"}
    assert all(load(t) is providers._resolve(n) for n, t in lms.items())


def test_an_unknown_environment_is_a_one_line_error():
    with pytest.raises(TraitError, match="RLM.environment: unknown REPL environment 'nope'; known: .*kernel"):
        RLM(environment="nope")


def test_gateway_url_still_selects_the_gateway_and_the_gateway_needs_one():
    from rlm_jupyter.environment.gateway import GatewayREPL

    env = RLM(gateway_url="http://127.0.0.1:9")._environment(None)
    local = RLM(sandbox="off")._environment(None)
    asyncio.run(local.shutdown())  # never started: removes its work dir
    assert isinstance(env, REPLEnvironment) and isinstance(local, REPLEnvironment) and local.sandbox is False
    assert isinstance(env, GatewayREPL) and not hasattr(env, "workdir") and not hasattr(env, "limits")
    with pytest.raises(ValueError, match="needs RLM.gateway_url"):
        RLM(environment="gateway")._environment(None)


def test_a_registered_lm_provider_is_prepared_once_and_serves_an_rlm(scripted):
    """A third party's provider "toyprov/<name>": its prepare() registers a litellm handler
    (here the scripted one, which answers by model name) before the first call."""
    from rlm_jupyter.lm._litellm import register_provider, registered_handler

    seen = []

    def prepare(model_id):
        seen.append(model_id)
        register_provider("toyprov", registered_handler("scripted"))

    providers.register_lm_provider("toyprov", prepare)
    assert {"toyprov", "scripted", "replay", "local"} <= set(providers.lm_provider_names())
    with pytest.raises(ValueError, match="without '/'"):
        providers.register_lm_provider("a/b", prepare)
    name = scripted([repl("print(6 * 7)"), "FINAL(42)"]).split("/", 1)[1]
    res = RLM(model=f"toyprov/{name}", sub_model=f"toyprov/{name}").completion("q", "ctx")
    assert res.status == "done" and res.answer == "42", res.message
    providers.prepare_model("openai/gpt-4o")  # litellm's own provider: nothing to prepare
    assert seen == [f"toyprov/{name}"]
