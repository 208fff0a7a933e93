"""Model-written tool-call arguments, checked in bounded time and memory.

A tool call's arguments are whatever the model (or a hostile server) wrote. Before they are
validated against the bound tool's JSON schema they must fit :data:`MAX_DEPTH` levels of
nesting and :data:`MAX_NODES` values (:func:`args_problem`, iterative: no recursion on the
model's data). The schema's regular expressions (``pattern``, ``patternProperties`` and the
property names ``additionalProperties`` tests against them) run on the ``regex`` module's
engine, each search within :data:`REGEX_TIMEOUT_S` and the whole validation within
:data:`VALIDATION_BUDGET_S` (:func:`schema_problem`): ``^(a+)+$`` against ``"aaaa…b"`` doubles
its time per character on Python's ``re``. A bound or a timeout exceeded is a problem (the
answer is not accepted), never a crash. :func:`dumps` serializes arguments too deep for
``json.dumps`` (for token counts).

Example:
    >>> args_problem({"a": [[[]]]})
    >>> args_problem({"a": 1}, max_depth=0)
    'nested deeper than 0 levels'
"""

from __future__ import annotations

import contextvars
import functools
import json
import time
from collections.abc import Iterator
from typing import Any

import regex

#: Levels of nesting a tool call's arguments may have.
MAX_DEPTH = 64
#: Values (objects, arrays, scalars) a tool call's arguments may hold.
MAX_NODES = 100_000
#: Seconds one regular-expression search of a schema may take.
REGEX_TIMEOUT_S = 0.05
#: Seconds all of one validation's searches may take together.
VALIDATION_BUDGET_S = 0.5

_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("tool_args_deadline", default=0.0)


class RegexTimeoutError(Exception):
    """A schema's regular expression ran out of time on the model's text (or cannot be read)."""


def args_problem(args: Any, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> str | None:
    """Why ``args`` is too deep or too large to check (None: within the bounds)."""
    stack: list[tuple[Any, int]] = [(args, 0)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            return f"more than {max_nodes} values"
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        if depth >= max_depth and children:
            return f"nested deeper than {max_depth} levels"
        stack.extend((child, depth + 1) for child in children)
    return None


def schema_problem(schema: dict[str, Any], args: Any) -> Any:
    """The best :class:`jsonschema.ValidationError` of ``args`` against ``schema`` (None: valid),
    with regular expressions bounded in time. Raises :class:`jsonschema.exceptions.SchemaError`
    for a schema jsonschema cannot read and :class:`RegexTimeoutError` when out of time."""
    from jsonschema.exceptions import best_match

    token = _deadline.set(time.monotonic() + VALIDATION_BUDGET_S)
    try:
        return best_match(_validator_class()(schema).iter_errors(args))
    finally:
        _deadline.reset(token)


def dumps(value: Any) -> str:
    """``json.dumps(value, ensure_ascii=False)``, also for values nested too deep for it."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except RecursionError:
        return "".join(_iter_json(value))


def _iter_json(value: Any) -> Iterator[str]:
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Raw):
            yield item.text
        elif isinstance(item, dict):
            parts: list[Any] = [_Raw("{")]
            for index, (key, child) in enumerate(item.items()):
                parts += [_Raw((", " if index else "") + json.dumps(str(key), ensure_ascii=False) + ": "), child]
            stack.extend(reversed([*parts, _Raw("}")]))
        elif isinstance(item, (list, tuple)):
            parts = [_Raw("[")]
            for index, child in enumerate(item):
                parts += [_Raw(", ")] if index else []
                parts.append(child)
            stack.extend(reversed([*parts, _Raw("]")]))
        else:
            yield json.dumps(item, ensure_ascii=False, default=str)


class _Raw:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _search(pattern: str, text: str) -> bool:
    left = _deadline.get() - time.monotonic()
    if left <= 0:
        raise RegexTimeoutError(f"the schema's patterns ran out of time ({VALIDATION_BUDGET_S:g} s)")
    try:
        return _compiled(pattern).search(text, timeout=min(REGEX_TIMEOUT_S, left)) is not None
    except TimeoutError:
        raise RegexTimeoutError(f"pattern {pattern!r:.60} ran out of time") from None
    except regex.error as err:
        raise RegexTimeoutError(f"pattern {pattern!r:.60} cannot be read: {err}") from None


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> regex.Pattern[str]:
    return regex.compile(pattern)


@functools.cache
def _validator_class() -> Any:
    """Draft 2020-12 with its regex keywords on the ``regex`` engine, bounded in time."""
    from jsonschema import Draft202012Validator, ValidationError, validators

    def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[Any]:
        if validator.is_type(instance, "string") and not _search(patrn, instance):
            yield ValidationError(f"does not match {patrn!r}")

    def pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any, schema: Any) -> Iterator[Any]:
        if not validator.is_type(instance, "object"):
            return
        for patrn, subschema in patterns.items():
            for key, value in instance.items():
                if _search(patrn, key):
                    yield from validator.descend(value, subschema, path=key, schema_path=patrn)

    base_additional = Draft202012Validator.VALIDATORS["additionalProperties"]

    def additional_properties(validator: Any, additional: Any, instance: Any, schema: Any) -> Iterator[Any]:
        if not validator.is_type(instance, "object") or not schema.get("patternProperties"):
            yield from base_additional(validator, additional, instance, schema)
            return
        known = schema.get("properties", {})
        extras = [k for k in instance if k not in known
                  and not any(_search(p, k) for p in schema["patternProperties"])]
        if validator.is_type(additional, "object"):
            for extra in extras:
                yield from validator.descend(instance[extra], additional, path=extra)
        elif not additional and extras:
            yield ValidationError(f"additional properties are not allowed ({len(extras)} unexpected)")

    return validators.extend(Draft202012Validator, {
        "pattern": pattern, "patternProperties": pattern_properties, "additionalProperties": additional_properties})
