"""What the root LM is told about ``context`` (it never sees the context itself).

Paper arXiv 2512.24601 §2: the root LM gets the context's type, its total length and the
lengths of its parts ("chunk sizes"). This module computes that description from the Python
object and normalises notebook values (``pathlib.Path`` of a file or a folder) into plain
objects the REPL environment can hold.
"""

from __future__ import annotations

import pathlib
import pickle
from typing import Any


class ContextError(ValueError):
    """The context cannot be given to the REPL environment (e.g. it cannot be pickled, or
    the kernel cannot load it)."""


# Folder contexts: files larger than this are skipped (characters), as are binary files.
MAX_FILE_CHARS = 5_000_000
MAX_LISTED_PARTS = 12


def normalize_context(obj: Any) -> Any:
    """Turn a ``pathlib.Path`` into text; every other value is returned unchanged.

    Args:
        obj: any notebook value. A ``Path`` to a file becomes its text (UTF-8, undecodable
            bytes replaced); a ``Path`` to a folder becomes a ``dict`` mapping each text file's
            relative path (sorted) to its text, skipping hidden entries, ``__pycache__``,
            binary files and files over :data:`MAX_FILE_CHARS` characters.

    Raises:
        FileNotFoundError: the path does not exist.
    """
    if not isinstance(obj, pathlib.PurePath):
        return obj
    path = pathlib.Path(obj).expanduser()
    if path.is_file():
        return path.read_text(encoding="utf-8", errors="replace")
    if path.is_dir():
        out: dict[str, str] = {}
        for f in sorted(path.rglob("*")):
            rel = f.relative_to(path)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts) or not f.is_file():
                continue
            try:
                raw = f.read_bytes()
            except OSError:
                continue
            if b"\0" in raw[:8192] or len(raw) > MAX_FILE_CHARS * 4:
                continue
            text = raw.decode("utf-8", errors="replace")
            if len(text) <= MAX_FILE_CHARS:
                out[rel.as_posix()] = text
        return out
    raise FileNotFoundError(f"context path does not exist: {path}")


def _length(x: Any) -> int:
    if isinstance(x, (str, bytes)):
        return len(x)
    return len(str(x))


def describe_context(obj: Any) -> dict:
    """Metadata about a context value, for the root LM's first message.

    Args:
        obj: the (normalised) context.

    Returns:
        A JSON-serialisable dict: ``type`` (qualified type name), ``total_chars`` (characters
        of its text form, summed over parts for containers), ``n_parts`` and ``part_lengths``
        (characters of the first :data:`MAX_LISTED_PARTS` parts) for containers, ``columns``
        and ``n_rows`` for data frames, ``keys`` (first few) for dicts.
    """
    typ = type(obj)
    info: dict[str, Any] = {"type": f"{typ.__module__}.{typ.__qualname__}".replace("builtins.", "")}
    if isinstance(obj, (str, bytes)):
        info["total_chars"] = len(obj)
        info["n_lines"] = obj.count("\n" if isinstance(obj, str) else b"\n") + 1
        return info
    if hasattr(obj, "columns") and hasattr(obj, "shape"):  # pandas / polars data frame
        info["n_rows"] = int(obj.shape[0])
        info["columns"] = [str(c) for c in list(obj.columns)[:50]]
        info["total_chars"] = len(obj.to_csv(index=False)) if hasattr(obj, "to_csv") else None
        return info
    if isinstance(obj, dict):
        lengths = [_length(v) for v in obj.values()]
        info["n_parts"] = len(obj)
        info["keys"] = [str(k) for k in list(obj)[:MAX_LISTED_PARTS]]
    elif isinstance(obj, (list, tuple)):
        lengths = [_length(v) for v in obj]
        info["n_parts"] = len(obj)
    else:
        info["total_chars"] = _length(obj)
        return info
    info["total_chars"] = sum(lengths)
    info["part_lengths"] = lengths[:MAX_LISTED_PARTS]
    return info


def render_context_info(info: dict) -> str:
    """One or two sentences describing ``info`` (from :func:`describe_context`) for a prompt."""
    parts = [f"Your context is a {info['type']}"]
    if info.get("total_chars") is not None:
        parts.append(f"with {info['total_chars']:,} total characters")
    if "n_lines" in info:
        parts.append(f"in {info['n_lines']:,} lines")
    if "n_parts" in info:
        lens = ", ".join(f"{n:,}" for n in info.get("part_lengths", []))
        more = ", ..." if info["n_parts"] > len(info.get("part_lengths", [])) else ""
        parts.append(f"made of {info['n_parts']:,} parts of these lengths (characters): [{lens}{more}]")
    if "keys" in info:
        parts.append(f"with keys such as {info['keys'][:6]}")
    if "columns" in info:
        parts.append(f"with {info['n_rows']:,} rows and columns {info['columns']}")
    return " ".join(parts) + "."


def check_picklable(context: Any) -> None:
    """Check that ``context`` can be sent to the REPL environment (pickle protocol 5; str and
    bytes are sent as they are).

    Raises:
        ContextError: it cannot be pickled (one line naming its type and the pickling error).
    """
    if isinstance(context, (str, bytes, bytearray)):
        return
    error = pickling_error(context)
    if error is not None:
        raise unpicklable(context, error)


def unpicklable(context: Any, error: str) -> ContextError:
    """The one-line :class:`ContextError` for a ``context`` that failed to pickle with
    ``error`` (``"<ExceptionType>: <message>"``)."""
    return ContextError(
        f"the context ({type(context).__name__}) cannot be pickled to send it to the REPL environment: "
        f"{error}. Convert it to a str, list or dict first."
    )


def pickling_error(value: Any) -> str | None:
    """``None`` if ``value`` pickles (protocol 5), else the pickling error as one line
    ``"<ExceptionType>: <message>"``. Also used by :mod:`rlm_jupyter.interop.dspy_support`."""
    try:
        pickle.dumps(value, protocol=5)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
