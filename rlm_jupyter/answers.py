"""Typed answers: a run whose final answer must match a schema.

``RLM(...).completion(query, context, answer_schema=Schema)`` (or ``%%rlm VAR --schema NAME``):
the root LM is told the JSON schema; its ``FINAL(<json>)`` / ``FINAL_VAR(name)`` of a dict is
validated when it answers, and a mismatch is refused with what is wrong (the run goes on, see
``RunSettings.answer_validator`` in :mod:`rlm_jupyter.core.loop`). The result's ``answer`` is the
validated object, ``answer_text`` the answer as the model gave it.

Schemas: a pydantic model class (or any type pydantic validates: ``list[int]``, a dataclass, a
``TypedDict``; validated with ``pydantic.TypeAdapter``, lax mode) → an instance of it; a JSON
schema ``dict`` (validated with ``jsonschema``, the schema's own draft) → the parsed JSON.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from typing import Any

from .core.prompts import answer_format_text
from .result import RLMResult

MAX_ERRORS = 8  # mismatches listed to the model
MAX_SCHEMA_CHARS = 8_000  # characters of the schema put into the prompt


class AnswerSchema:
    """A schema for a run's final answer.

    Args:
        schema: a pydantic model class, another type pydantic can validate, or a JSON schema
            (``dict``).

    Attributes:
        schema_json: the JSON schema's text (for the root's prompt).

    Raises:
        TypeError: ``schema`` is none of these (e.g. an instance, a str).
        ValueError: a dict that is not a valid JSON schema (the first problem is named).
    """

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        if isinstance(schema, dict):
            from jsonschema import exceptions, validators

            cls = validators.validator_for(schema)
            try:
                cls.check_schema(schema)
            except exceptions.SchemaError as exc:
                where = "/".join(str(p) for p in exc.absolute_path) or "(top)"
                raise ValueError(f"answer_schema is not a valid JSON schema: at {where}: {_short(exc.message)}") from None
            self._validator = cls(schema)
            self._adapter = None
            schema_json = json.dumps(schema, indent=1)
        else:
            if not isinstance(schema, type) and not hasattr(schema, "__origin__"):
                raise TypeError(
                    f"answer_schema must be a pydantic model class, a type pydantic can validate (list[int], a dataclass), "
                    f"or a JSON schema dict; not {type(schema).__name__} {str(schema)[:60]!r}"
                )
            from pydantic import PydanticSchemaGenerationError, TypeAdapter

            try:
                self._adapter = TypeAdapter(schema)
            except (PydanticSchemaGenerationError, TypeError) as exc:
                raise TypeError(f"answer_schema {schema!r} cannot be validated by pydantic: {_short(str(exc))}") from None
            self._validator = None
            try:
                schema_json = json.dumps(self._adapter.json_schema(), indent=1)
            except Exception:  # a type without a JSON schema (arbitrary classes): its name
                schema_json = json.dumps({"description": f"a value of Python type {getattr(schema, '__name__', schema)}"})
        if len(schema_json) > MAX_SCHEMA_CHARS:
            schema_json = json.dumps(json.loads(schema_json))
        self.schema_json = schema_json

    def prompt(self) -> str:
        """The system prompt's paragraph on the answer's form."""
        return answer_format_text(self.schema_json)

    def validate(self, text: str) -> tuple[Any, str | None]:
        """Check a final answer: ``(value, None)`` if it matches, else ``(None, message)`` where
        the message tells the model what is wrong (at most :data:`MAX_ERRORS` mismatches).

        ``text`` is parsed as JSON, else as a Python literal (``FINAL_VAR`` of a dict gives its
        ``repr``); a schema for a string also takes ``text`` itself.
        """
        parsed, parse_error = _parse(text)
        candidates = [parsed] if parse_error is None else []
        if parse_error is not None or not isinstance(parsed, str):
            candidates.append(text.strip())
        first_error = None
        for value in candidates:
            result, error = self._check(value)
            if error is None:
                return result, None
            first_error = first_error or error
        note = f" (it is not JSON: {parse_error})" if parse_error is not None else ""
        return None, (
            f"Your final answer was refused: it does not match the required JSON schema{note}.\n{first_error}\n"
            "Fix it (build the value in the REPL and check it) and answer again with FINAL_VAR(name) or FINAL(<JSON>)."
        )

    def _check(self, value: Any) -> tuple[Any, str | None]:
        if self._adapter is not None:
            from pydantic import ValidationError

            try:
                return self._adapter.validate_python(value), None
            except ValidationError as exc:
                lines = []
                for e in exc.errors(include_url=False)[:MAX_ERRORS]:
                    loc = ".".join(str(p) for p in e.get("loc", ())) or "(the whole answer)"
                    lines.append(f"- {loc}: {e.get('msg')} (got {_short(repr(e.get('input')), 80)})")
                more = exc.error_count() - len(lines)
                return None, "\n".join(lines) + (f"\n- ... and {more} more" if more > 0 else "")
        try:  # JSON's own types (a Python literal's tuples become arrays)
            value = json.loads(json.dumps(value))
        except (TypeError, ValueError):
            pass
        errors = sorted(self._validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
        if not errors:
            return value, None
        lines = [
            f"- {'.'.join(str(p) for p in e.absolute_path) or '(the whole answer)'}: {_short(e.message)}"
            for e in errors[:MAX_ERRORS]
        ]
        more = len(errors) - len(lines)
        return None, "\n".join(lines) + (f"\n- ... and {more} more" if more > 0 else "")


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse(text: str) -> tuple[Any, str | None]:
    """``text`` (fences stripped) as JSON, else as a Python literal; ``(value, None)`` or
    ``(None, why not)``."""
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0].strip()
    try:
        return json.loads(body), None
    except ValueError as exc:
        json_error = f"{exc.msg} at line {exc.lineno} column {exc.colno}" if hasattr(exc, "msg") else str(exc)
    try:
        return ast.literal_eval(body), None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None, json_error


@dataclasses.dataclass(repr=False)
class TypedRLMResult(RLMResult):
    """An :class:`RLMResult` of a run with an answer schema.

    Attributes:
        answer: the validated answer (an instance of the pydantic model / type, or the parsed
            JSON for a dict schema); ``None`` if the run ended without an answer matching it.
        answer_text: the final answer as the model gave it (text), also when it did not match.
        schema: the schema (as given).
    """

    answer_text: str | None = None
    schema: Any = None

    def __repr__(self) -> str:
        u = self.usage
        return (
            f"TypedRLMResult(status={self.status!r}, answer={_short(repr(self.answer), 60)}, "
            f"iterations={len(self.trajectory.iterations)}, tokens={u.total_tokens}, usd={u.usd:.4f}, "
            f"wall_seconds={self.wall_seconds:.1f})"
        )


def typed_result(result: RLMResult, schema: AnswerSchema) -> TypedRLMResult:
    """``result`` with its answer validated: ``answer`` the object, ``answer_text`` the text. An
    answer that does not match (a forced one, at the iteration limit) leaves ``answer`` ``None``
    and says why in ``message``."""
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(RLMResult)}
    text = result.answer
    value, message = None, result.message
    if text is not None:
        value, error = schema.validate(text)
        if error is not None:
            first = error.splitlines()[1] if len(error.splitlines()) > 1 else error
            message = f"{message}; " if message else ""
            message += f"the answer does not match the schema ({first.lstrip('- ')})"
    fields.update(answer=value, message=message)
    return TypedRLMResult(**fields, answer_text=text, schema=schema.schema)
