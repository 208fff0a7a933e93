"""Every problem of a policy file in one run: what a stage rejected is set aside so the next
stages still run on the rest.

Loading has three stages: located checks of entries (confidence checks, rule ``set`` keys),
the schema (pydantic), and cross-references (a cascade naming a model, a tier, a rule relaxing
privacy). Each used to stop at its own problems, so a file with a misspelt check, an unknown key
and a cascade typo took three runs to fix. Here a part a stage rejected is dropped from a copy
of the data (an unknown key or a bad value: its default applies; a bad check entry: the entry),
the schema is validated again, and the cross-references run on what is left. Problems found
at or under a dropped part are not reported again; when dropping cannot make the data valid
(a required key with a bad value), the later stages are skipped, as before.

Example:
    >>> set_aside({"policy": {"cascade": ["a"], "privcy": True}}, [("policy", "privcy")])
    {'policy': {'cascade': ['a']}}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

Path = tuple[str | int, ...]

#: Rounds of drop-and-revalidate before giving up on the later stages (each round drops every
#: part the schema rejected, so a second round is rarely needed).
MAX_ROUNDS = 4


def _dropped(node: Any, path: Path, stand_in: Any) -> Any:
    """``node`` without the part at ``path``; containers along the path are copied, the rest shared."""
    if not path:
        return node
    head, rest = path[0], path[1:]
    if isinstance(node, dict) and head in node:
        if not rest:
            return {k: v for k, v in node.items() if k != head}
        return {**node, head: _dropped(node[head], rest, stand_in)}
    if isinstance(node, list) and isinstance(head, int) and 0 <= head < len(node):
        # A list item is replaced, not removed: the others keep their index (and location).
        item = stand_in if not rest else _dropped(node[head], rest, stand_in)
        return [*node[:head], item, *node[head + 1:]]
    return node


def set_aside(data: dict[str, Any], paths: Iterable[Path], *, stand_in: Any = None) -> dict[str, Any]:
    """A copy of ``data`` without the parts at ``paths``: a mapping's key is removed, a list's
    item replaced by ``stand_in``."""
    out: Any = data
    for path in paths:
        out = _dropped(out, path, stand_in)
    return out


def under(path: Path, prefixes: Sequence[Path]) -> bool:
    """Whether ``path`` is at or under one of ``prefixes``."""
    return any(path[:len(p)] == p for p in prefixes)


def validate_setting_aside(model: type[BaseModel], data: dict[str, Any], context: dict[str, Any],
                           doc_path: Callable[[tuple[Any, ...]], Path],
                           ) -> tuple[BaseModel | None, ValidationError | None, list[Path]]:
    """Validate ``data``; on errors drop each rejected part and try again (:data:`MAX_ROUNDS`).
    Returns the model validated from what is left (None when nothing valid is left), the first
    round's error (None: the data was valid) and the parts dropped."""
    first: ValidationError | None = None
    dropped: list[Path] = []
    for _ in range(MAX_ROUNDS):
        try:
            return model.model_validate(data, context=context), first, dropped
        except ValidationError as err:
            first = first or err
            # A bad list item takes its list with it (no stand-in fits every list).
            paths = [path[:-1] if path and isinstance(path[-1], int) else path
                     for path in (doc_path(e["loc"]) for e in err.errors())]
            if any(e["type"] == "missing" for e in err.errors()) or not paths or any(p in dropped for p in paths):
                return None, first, dropped  # a required part is gone or bad: nothing to stand in for it
            dropped += paths
            data = set_aside(data, paths)
    return None, first, dropped
