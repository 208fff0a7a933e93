"""YAML loading that remembers where every key and value stands, and substitutes ``${VAR}``.

PyYAML's composed node graph keeps marks; we build plain Python values from it ourselves so
that each path (``("models", "gpt-4", "tier")``) maps to a line and column for error messages.
We do this instead of ruamel.yaml to stay on the declared dependency (pyyaml).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Location:
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class LocatedDocument:
    """Plain data from a YAML file plus where each path's key and value stand."""

    data: Any
    values: dict[Path, Location] = field(default_factory=dict)
    keys: dict[Path, Location] = field(default_factory=dict)
    problems: list[tuple[Path, str]] = field(default_factory=list)
    env_refs: dict[Path, list[str]] = field(default_factory=dict)

    def locate(self, path: Path, *, prefer_key: bool = False) -> Location:
        """The best location for ``path``: itself, else its nearest located ancestor."""
        path = tuple(path)
        while True:
            tables = (self.keys, self.values) if prefer_key else (self.values, self.keys)
            for table in tables:
                if path in table:
                    return table[path]
            if not path:
                return Location(1, 1)
            path = path[:-1]


class YamlSyntaxError(ValueError):
    def __init__(self, message: str, location: Location) -> None:
        self.location = location
        super().__init__(message)


def _loc(node: yaml.Node) -> Location:
    return Location(node.start_mark.line + 1, node.start_mark.column + 1)


def substitute_env(text: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """Replace ``${VAR}`` and ``${VAR:-default}``; return the text and the unset names."""
    missing: list[str] = []

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if value is not None and (value != "" or default is None):
            return value
        if default is not None:
            return default
        missing.append(name)
        return ""

    return _ENV_PATTERN.sub(repl, text), missing


def load_located(text: str, environ: Mapping[str, str] | None = None) -> LocatedDocument:
    """Parse one YAML document into plain data with locations; raise YamlSyntaxError."""
    environ = os.environ if environ is None else environ
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        location = Location(mark.line + 1, mark.column + 1) if mark else Location(1, 1)
        raise YamlSyntaxError(f"YAML syntax error: {err.problem or err}", location) from None
    doc = LocatedDocument(data=None)
    if root is None:
        return doc
    constructor = yaml.SafeLoader("")

    def build(node: yaml.Node, path: Path) -> Any:
        doc.values[path] = _loc(node)
        if isinstance(node, yaml.MappingNode):
            constructor.flatten_mapping(node)
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = constructor.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool)):
                    doc.problems.append((path, f"mapping keys must be plain scalars, got {key!r}"))
                    continue
                key = str(key)
                child = (*path, key)
                if key in result:
                    doc.keys[child] = _loc(key_node)
                    doc.problems.append((child, f"duplicate key {key!r}"))
                doc.keys[child] = _loc(key_node)
                result[key] = build(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [build(item, (*path, i)) for i, item in enumerate(node.value)]
        value = constructor.construct_object(node, deep=True)
        if isinstance(value, str) and "${" in value:
            doc.env_refs[path] = [m.group(1) for m in _ENV_PATTERN.finditer(value)]
            value, missing = substitute_env(value, environ)
            for name in missing:
                doc.problems.append(
                    (path, f"environment variable {name} is not set (write ${{{name}:-default}} for a default)")
                )
        return value

    doc.data = build(root, ())
    return doc
