"""The settings of :class:`~rlm_jupyter.rlm.RLM`: every one a documented, validated trait.

Defaults live here only (the limits' and loop's from :class:`~rlm_jupyter.core.limits.Limits` and
:class:`~rlm_jupyter.core.loop.RunSettings`): :class:`RLMSettings` holds the traits (``%config RLM.<name>``,
``c.RLM.<name>`` in a config file, ``RLM(<name>=...)``), and the command line builds its options
from them (:mod:`rlm_jupyter.cli`). A bad value is a one-line ``TraitError`` naming the setting.
Units: seconds, tokens, characters, US dollars, MiB, as each help text says.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Callable

from traitlets import Any as AnyTrait
from traitlets import Bool, CaselessStrEnum, Dict, Enum, Float, Int, List, TraitError, Unicode, Union, default, observe, validate
from traitlets.config import LoggingConfigurable

from . import logs
from .core.limits import Limits
from .core.loop import RunSettings

# Provider keys checked, in order, when no model is configured: (env var, root, sub).
CLOUD_DEFAULTS = [
    ("OPENAI_API_KEY", "gpt-5", "gpt-5-mini"),
    ("ANTHROPIC_API_KEY", "anthropic/claude-sonnet-4-5", "anthropic/claude-haiku-4-5"),
    ("GEMINI_API_KEY", "gemini/gemini-2.5-pro", "gemini/gemini-2.5-flash"),
]


def default_models(env: dict[str, str] | None = None) -> tuple[str, str]:
    """``(root, sub)`` model ids used when none is configured.

    The first provider whose key is set in ``env`` (default ``os.environ``) wins (see
    :data:`CLOUD_DEFAULTS`; paper setup: GPT-5 root, GPT-5-mini sub-calls); with no key, the
    embedded offline model for both.
    """
    from .lm import local

    env = os.environ if env is None else env
    for key, root, sub in CLOUD_DEFAULTS:
        if env.get(key):
            return root, sub
    return local.MODEL_ID, local.MODEL_ID


DEFAULT_OUTPUT_CHARS = RunSettings.max_output_chars  # 20,000: the official implementation's per-block cap
SMALL_OUTPUT_CHARS = 4_000  # the embedded model reads ~80 tokens/s: keep its feedback short



class RLMSettings(LoggingConfigurable):
    """The traits of :class:`~rlm_jupyter.rlm.RLM` (configure them as ``RLM.<name>``).

    Limits are tree-wide: they cover the root, every sub-call and every child RLM.
    """

    model = Unicode("", help="litellm model id of the root LM ('' = default: a provider key's model, else the embedded model).").tag(config=True)
    sub_model = Unicode("", help="litellm model id for sub-calls (llm_query); '' = the root model, or the provider's smaller model.").tag(config=True)
    max_iterations = Int(Limits.max_iterations, help="Root-LM turns per RLM before a forced final answer.").tag(config=True)
    max_depth = Int(Limits.max_depth, help="Recursion depth; 1 = rlm_query is a plain sub-call (paper).").tag(config=True)
    max_subcalls = Int(Limits.max_subcalls, allow_none=True, help="Sub-calls in the whole tree (None = unlimited).").tag(config=True)
    max_tokens = Int(None, allow_none=True, help="Input+output tokens over the whole tree.").tag(config=True)
    max_usd = Float(None, allow_none=True, help="US dollars over the whole tree.").tag(config=True)
    max_seconds = Float(None, allow_none=True, help="Wall-clock seconds for the whole run.").tag(config=True)
    timeout = Float(RunSettings.block_timeout, help="Per-code-block timeout in seconds (interrupt, then restart the kernel).").tag(config=True)
    max_output_chars = Int(None, allow_none=True, help="REPL output shown to the root LM per block, in characters (None = 20,000; 4,000 for the embedded model).").tag(config=True)
    subcalls = Bool(True, help="False: the paper's 'no sub-calls' ablation (llm_query & co. are not offered and fail if called).").tag(config=True)
    allowed_models = List(Unicode(), help="More litellm model ids the model's code may pass to llm_query(model=...), besides the root model and the sub-model (any other is refused).").tag(config=True)
    concurrency = Int(RunSettings.concurrency, help="Sub-calls in flight at once (llm_query_batched).").tag(config=True)
    prompt_style = Enum(["auto", "standard", "small"], "auto", help="'small' adds a worked example for small models; 'auto' picks it for the embedded model.").tag(config=True)
    constrain_root = Enum(["auto", "on", "off"], "auto", help="Grammar-constrain the embedded root model's replies to one repl block or one FINAL ('auto' = on for the embedded model).").tag(config=True)
    num_retries = Int(4, help="Retries of an LM call on rate limits, 5xx, timeouts.").tag(config=True)
    retry_backoff = Float(1.0, help="First retry delay in seconds (doubles each retry).").tag(config=True)
    lm_timeout = Float(600.0, help="Per-request LM timeout in seconds.").tag(config=True)
    completion_kwargs = Dict(help="Extra keyword arguments for every litellm call (api_base, temperature, ...).").tag(config=True)
    kernel_python = Unicode("", help="Python interpreter of the environment kernel ('' = this one).").tag(config=True)
    sandbox = Enum(["auto", "on", "off"], "auto", help="Run the environment kernel in bubblewrap: 'auto' = when bwrap works (Linux), with a warning otherwise; 'on' = required (error if unavailable); 'off' = plain child process.").tag(config=True)
    memory_limit_mb = Int(None, allow_none=True, help="Address-space limit of the environment kernel in MiB (None = half the RAM, at least 2 GiB; 0 = no limit).").tag(config=True)
    cpu_seconds = Int(None, allow_none=True, help="CPU-time limit of the environment kernel in seconds over its life (None = no limit).").tag(config=True)
    max_processes = Int(512, allow_none=True, help="Process limit inside the sandbox (None = no limit).").tag(config=True)
    sandbox_paths = List(Unicode(), help="Extra host paths bound read-only into the sandbox.").tag(config=True)
    environment = Unicode("kernel", help="REPL environment backend: 'kernel' (a local ipykernel, sandboxed as 'sandbox' says), 'gateway' (a kernel on a Jupyter Kernel/Enterprise Gateway at 'gateway_url'; also chosen by 'kernel' when gateway_url is set), or one registered by rlm_jupyter.environment.registry / an entry point of group rlm_jupyter.environments.").tag(config=True)
    gateway_url = Unicode("", help="Run the environment kernel on a Jupyter Kernel/Enterprise Gateway at this URL ('' = a local kernel).").tag(config=True)
    gateway_kernel_name = Unicode("python3", help="Kernelspec name on the gateway.").tag(config=True)
    gateway_channel_host = Unicode("127.0.0.1", help="Address of this machine that the remote kernel can reach for sub-calls (TCP, token-authenticated).").tag(config=True)
    gateway_token = Unicode("", help="The gateway's auth token, if it needs one.").tag(config=True)
    keep_environment = Bool(False, help="Keep the root's REPL environment kernel alive after the run (RLMResult.environment) to explore or re-run the model's code.").tag(config=True)
    environment_idle_seconds = Float(1800.0, help="A kept environment shuts down after this many idle seconds.").tag(config=True)
    step = Bool(False, help="Pause before each root code block (RLM.start sessions; %%rlm as with --step): run, edit, skip, say, continue or stop.").tag(config=True)
    stream = Bool(True, help="Stream the root LM's replies (root_delta events: the live view shows the reply as it is written).").tag(config=True)
    tools = Union([List(), Dict()], default_value=[], help="Host tools: the user's functions (a list, or a dict name -> function) that the model's code calls by name; they run in this process, with JSON arguments and results (rlm_jupyter.core.tools).")
    answer_schema = AnyTrait(None, allow_none=True, help="Typed answers: a pydantic model class (or type) or a JSON schema dict the final answer must match; RLMResult.answer is then the validated object (rlm_jupyter.answers).")
    cache = Union([Bool(), Unicode()], default_value=True, help="Persistent cache of greedy (temperature 0) LM calls: True = ~/.cache/rlm_jupyter/lm-cache (or $RLM_JUPYTER_CACHE/lm-cache), a folder path, or False. Hits cost 0 USD.").tag(config=True)

    log_level = CaselessStrEnum(["", *logs.LEVELS], "", help="Show rlm_jupyter's log records (kernel start and restarts, LM retries, cache hits, sub-call errors) of this level and above on stderr: DEBUG, INFO, WARNING, ERROR or CRITICAL; '' = quiet (records go only to the host's logging configuration).").tag(config=True)

    # -- validation (a bad value is a TraitError naming the setting, where it is set) --------
    @validate("max_iterations", "max_depth", "concurrency", "max_subcalls", "max_tokens", "max_output_chars",
              "cpu_seconds", "max_processes")
    def _positive_int(self, proposal):
        return _check(proposal, lambda v: v >= 1, "a whole number of at least 1")

    @validate("timeout", "lm_timeout", "max_usd", "max_seconds", "environment_idle_seconds")
    def _positive_float(self, proposal):
        return _check(proposal, lambda v: v > 0 and not math.isnan(v), "a number greater than 0")

    @validate("num_retries", "memory_limit_mb")
    def _non_negative_int(self, proposal):
        return _check(proposal, lambda v: v >= 0, "a whole number of at least 0")

    @validate("retry_backoff")
    def _non_negative_float(self, proposal):
        return _check(proposal, lambda v: v >= 0 and math.isfinite(v), "a finite number of at least 0")

    @validate("environment")
    def _known_environment(self, proposal):
        from .environment.registry import environment_factory

        try:
            environment_factory(proposal["value"])
        except ValueError as exc:
            raise TraitError(f"RLM.environment: {exc}") from None
        return proposal["value"]

    @validate("allowed_models")
    def _model_ids(self, proposal):
        return _check(proposal, lambda v: all(m.strip() for m in v), "a list of non-empty litellm model ids")

    @validate("tools", "answer_schema")
    def _tools_and_schema(self, proposal):
        from .answers import AnswerSchema
        from .core.tools import make_tools
        from .environment.tools_side import RESERVED

        value = proposal["value"]
        try:
            if proposal["trait"].name == "tools":
                make_tools(value, RESERVED)
            elif value is not None:
                AnswerSchema(value)
        except (TypeError, ValueError) as exc:
            raise TraitError(f"RLM.{proposal['trait'].name} is not usable: {exc}") from None
        return value

    @observe("log_level")
    def _apply_log_level(self, change) -> None:
        logs.set_level(change["new"])

    @default("log")
    def _log_default(self) -> logging.Logger:
        return logging.getLogger("rlm_jupyter.rlm")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.log_level:  # set by config (observers fire only on a change)
            logs.set_level(self.log_level)


def _check(proposal, ok: Callable[[Any], bool], what: str) -> Any:
    """A traitlets validator: the proposed value if ``None`` or ``ok``, else a one-line TraitError."""
    value = proposal["value"]
    if value is not None and not ok(value):
        raise TraitError(f"RLM.{proposal['trait'].name} must be {what}, not {value!r}")
    return value
