"""A persistent cache of LM calls (root and sub-calls), on disk with ``diskcache``.

Only greedy calls are cached: a call is cacheable when its sampling parameters say
``temperature=0`` (the embedded model always runs so; pass ``completion_kwargs={"temperature":
0}`` for a network model). The key is a SHA-256 of the model id, the messages and every
sampling parameter (``api_key``, ``timeout`` and other transport settings excluded). A hit
costs 0 USD; its time is reported apart (``Usage.cached_seconds``, ``Usage.cache_hits``), its
tokens are those of the recorded reply, so token limits end a re-run where they ended the
original.

Why ``diskcache`` and not litellm's own ``litellm.Cache(type="disk")`` (which is diskcache
underneath): litellm's cache is one process-wide setting (``litellm.cache``) that would also
cache the user's own litellm calls in the same kernel, and it caches every call whatever its
temperature; here the policy is per run (``RLM.cache``). diskcache is SQLite-backed, safe for
many threads and processes at once, size-bounded with least-recently-used eviction, and
already a dependency of llama-cpp-python.

Scripted and replayed models (``scripted/...``, ``replay/...``) are not cached unless the cache
is made with ``cache_scripted=True``: tests rely on a script's replies coming in order.

A cache that cannot be opened or read (a corrupted ``cache.db``) is moved aside to
``<dir>.corrupt-<time>`` (kept, not deleted) with a warning, and a fresh one replaces it; the
run goes on. The cache never makes a call fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import sqlite3
import threading
import time
import warnings
from typing import Any

DEFAULT_SIZE_LIMIT = 1 << 30  # bytes (1 GiB)
KEY_VERSION = 1
# Arguments that change how a call travels, not what the model answers.
NON_SAMPLING = frozenset(
    {"timeout", "request_timeout", "api_key", "num_retries", "max_retries", "metadata", "extra_headers", "stream", "caching"}
)
UNCACHED_PROVIDERS = ("scripted/", "replay/")
OFF = ("off", "false", "no", "0", "")


class CacheWarning(UserWarning):
    """The LM cache had a problem (corrupted file, unreadable entry) and recovered."""


def default_directory() -> pathlib.Path:
    """``$RLM_JUPYTER_LM_CACHE`` (a folder), else ``$RLM_JUPYTER_CACHE/lm-cache``, else
    ``$XDG_CACHE_HOME/rlm_jupyter/lm-cache`` (default ``~/.cache/rlm_jupyter/lm-cache``)."""
    own = os.environ.get("RLM_JUPYTER_LM_CACHE", "")
    if own and own.strip().lower() not in OFF:
        return pathlib.Path(own).expanduser()
    if os.environ.get("RLM_JUPYTER_CACHE"):
        return pathlib.Path(os.environ["RLM_JUPYTER_CACHE"]) / "lm-cache"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "rlm_jupyter" / "lm-cache"


def is_greedy(params: dict) -> bool:
    """True if ``params`` ask for greedy decoding (``temperature`` given and 0)."""
    t = params.get("temperature")
    try:
        return t is not None and float(t) == 0.0
    except (TypeError, ValueError):
        return False


class LMCache:
    """Greedy LM replies on disk, shared by threads and processes.

    Args:
        directory: the cache folder (created on first use); default :func:`default_directory`.
        size_limit: bytes on disk before least-recently-used entries are evicted.
        cache_scripted: also cache ``scripted/`` and ``replay/`` models (tests of the cache).

    Attributes:
        hits, misses, stores: counters of this object (this process).
    """

    def __init__(
        self,
        directory: str | os.PathLike | None = None,
        size_limit: int = DEFAULT_SIZE_LIMIT,
        cache_scripted: bool = False,
    ) -> None:
        self.directory = pathlib.Path(directory) if directory else default_directory()
        self.size_limit = int(size_limit)
        self.cache_scripted = cache_scripted
        self.hits = self.misses = self.stores = 0
        self._dc: Any = None
        self._lock = threading.Lock()

    # -- keys -----------------------------------------------------------------------------
    def key(self, model: str, messages: list[dict], params: dict) -> str | None:
        """The cache key of a call, or ``None`` if the call is not cacheable (not greedy, or
        a scripted/replayed model)."""
        if not is_greedy(params):
            return None
        if not self.cache_scripted and model.startswith(UNCACHED_PROVIDERS):
            return None
        sampling = {k: v for k, v in params.items() if k not in NON_SAMPLING}
        sampling["temperature"] = 0.0  # 0, 0.0 and "0" are one setting
        ident: dict[str, Any] = {"v": KEY_VERSION, "model": model, "messages": messages, "params": sampling}
        if model.startswith("local/"):  # other weights under the same id
            ident["gguf"] = os.environ.get("RLM_JUPYTER_GGUF", "")
        blob = json.dumps(ident, sort_keys=True, ensure_ascii=False, default=repr)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    # -- storage --------------------------------------------------------------------------
    def _open(self) -> Any:
        import diskcache

        self.directory.mkdir(parents=True, exist_ok=True)
        return diskcache.Cache(
            str(self.directory),
            size_limit=self.size_limit,
            eviction_policy="least-recently-used",
            cull_limit=2,  # evict the oldest two per store while over the limit (diskcache's 10 can drop the new entry)
            timeout=60,
        )

    def _cache(self) -> Any:
        with self._lock:
            if self._dc is None:
                try:
                    self._dc = self._open()
                except sqlite3.DatabaseError as exc:
                    if isinstance(exc, sqlite3.OperationalError):
                        raise
                    self._dc = self._recover(exc)
            return self._dc

    def _recover(self, exc: BaseException) -> Any:
        """Move the broken cache folder aside (kept for inspection) and open a fresh one."""
        if self._dc is not None:
            try:
                self._dc.close()
            except Exception:
                pass
            self._dc = None
        aside = self.directory.with_name(f"{self.directory.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        try:
            self.directory.rename(aside)
            where = f"moved to {aside}"
        except OSError as move_exc:
            where = f"could not be moved aside ({move_exc})"
        warnings.warn(
            f"the LM cache at {self.directory} is damaged ({type(exc).__name__}: {exc}); it was {where} "
            "and a new, empty cache replaces it",
            CacheWarning,
            stacklevel=3,
        )
        return self._open()

    def _do(self, op: str, *args: Any) -> Any:
        """Run a diskcache operation; a damaged database is replaced (:meth:`_recover`) and the
        operation retried once; a busy or unreachable one is skipped with a warning (``None``)."""
        import diskcache

        for attempt in (1, 2):
            try:
                return getattr(self._cache(), op)(*args)
            except (sqlite3.OperationalError, diskcache.Timeout, OSError) as exc:  # locked, I/O
                warnings.warn(f"LM cache at {self.directory} unavailable for this call: {exc}", CacheWarning, stacklevel=3)
                return None
            except sqlite3.DatabaseError as exc:  # not a database, malformed image
                if attempt == 2:
                    raise
                with self._lock:
                    self._dc = self._recover(exc)
        return None

    def get(self, key: str) -> dict | None:
        """The entry stored under ``key`` (``text``, ``input_tokens``, ``output_tokens``,
        ``usd``, ``seconds`` of the original call, ``model``), or ``None``. An unreadable
        entry is dropped with a :class:`CacheWarning`."""
        raw = self._do("get", key)
        if raw is None:
            self.misses += 1
            return None
        try:
            entry = json.loads(raw)
            if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
                raise ValueError("not a cache entry")
        except (ValueError, TypeError) as exc:
            warnings.warn(f"dropping an unreadable LM cache entry {key[:12]}…: {exc}", CacheWarning, stacklevel=2)
            self.delete(key)
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def set(self, key: str, entry: dict) -> None:
        """Store ``entry`` (JSON-serialisable dict with a ``text`` str) under ``key``."""
        if self._do("set", key, json.dumps(entry, ensure_ascii=False)):
            self.stores += 1

    def delete(self, key: str) -> None:
        self._do("delete", key)

    def volume(self) -> int:
        """Bytes the cache takes on disk (as diskcache counts them)."""
        return int(self._cache().volume())

    def __len__(self) -> int:
        return len(self._cache())

    def clear(self) -> None:
        """Remove every entry."""
        self._cache().clear()

    def close(self) -> None:
        with self._lock:
            if self._dc is not None:
                self._dc.close()
                self._dc = None


_shared: dict[str, LMCache] = {}
_shared_lock = threading.Lock()


def cache_for(setting: bool | str | os.PathLike | None) -> LMCache | None:
    """The :class:`LMCache` for an ``RLM.cache`` setting, one per folder per process.

    Args:
        setting: ``True`` = the default folder (:func:`default_directory`), or no cache if
            the environment variable ``RLM_JUPYTER_LM_CACHE`` is ``off`` (the test suite sets
            it); ``False``/``None``/``""`` = no cache; a path (str) = that folder. The strings
            ``"on"``/``"off"`` (and ``"true"``/``"false"``) are read as booleans.
    """
    if isinstance(setting, str) and setting.strip().lower() in ("on", "true", "yes", "1"):
        setting = True
    if isinstance(setting, str) and setting.strip().lower() in OFF:
        setting = False
    env = os.environ.get("RLM_JUPYTER_LM_CACHE")
    if setting is True and env is not None and env.strip().lower() in OFF:
        return None
    if not setting:
        return None
    directory = default_directory() if setting is True else pathlib.Path(os.fspath(setting)).expanduser()
    key = str(directory.resolve())
    with _shared_lock:
        if key not in _shared:
            _shared[key] = LMCache(directory)
        return _shared[key]
