"""YAML loading that remembers where every key and value stands, substitutes ``${VAR}``, and
cannot be turned against the loader.

PyYAML's composed node graph keeps marks; we build plain Python values from it ourselves so
that each path (``("models", "gpt-4", "tier")``) maps to a line and column for error messages.
We do this instead of ruamel.yaml to stay on the declared dependency (pyyaml).

A policy file is data from a possibly untrusted place, so the loader is bounded and strict:

- at most :data:`MAX_BYTES` of text, :data:`MAX_DEPTH` levels of nesting and :data:`MAX_VALUES`
  values *after* expanding aliases (a 724-byte "billion laughs" file stops at the limit in
  milliseconds); a recursive alias is an error, not a hang;
- scalars resolve as in YAML 1.2's core schema: only ``true``/``false`` are booleans (``no``,
  ``off`` and ``yes`` stay strings, as do dates), ``010`` is ten;
- only the core tags (``!!str``, ``!!int``, ``!!float``, ``!!bool``, ``!!null``, ``!!seq``,
  ``!!map``) are accepted: ``!env``, ``!!python/...``, ``!!binary``, ``!!set``... are located errors.

Example:
    >>> doc = load_located("policy:\\n  privacy: off\\n")
    >>> doc.data, doc.locate(("policy", "privacy"))
    ({'policy': {'privacy': 'off'}}, Location(line=2, column=12))
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]

MAX_BYTES = 1_000_000
MAX_DEPTH = 32
MAX_VALUES = 10_000

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_CORE = "tag:yaml.org,2002:"
_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")
_NULL = frozenset({"", "~", "null", "Null", "NULL"})
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


class _CoreResolver(yaml.resolver.Resolver):
    """YAML 1.2 core-schema implicit types (PyYAML's default is YAML 1.1: ``no`` is False)."""


_CoreResolver.yaml_implicit_resolvers = {}
for _tag, _regex, _first in (
    (_CORE + "bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (_CORE + "int", rf"^(?:{_INT.pattern})$", "-+0123456789"),
    (_CORE + "float", rf"^(?:{_FLOAT.pattern})$", "-+.0123456789"),
    (_CORE + "null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (_CORE + "merge", r"^(?:<<)$", "<"),
):
    _CoreResolver.add_implicit_resolver(_tag, re.compile(_regex), list(_first))


class _PyLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer,
                yaml.constructor.SafeConstructor, _CoreResolver):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        _CoreResolver.__init__(self)


_Loader: type = _PyLoader
if yaml.__with_libyaml__:  # libyaml's parser and composer: several times faster, same nodes and marks
    class _CLoader(yaml.cyaml.CParser, yaml.constructor.SafeConstructor, _CoreResolver):  # type: ignore[misc]
        def __init__(self, stream: str) -> None:
            yaml.cyaml.CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            _CoreResolver.__init__(self)

    _Loader = _CLoader


@dataclass(frozen=True)
class Location:
    line: int  # 1-based
    column: int  # 1-based


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str
    location: Location | None = None  # None: wherever ``path`` stands


@dataclass
class LocatedDocument:
    """Plain data from a YAML file plus where each path's key and value stand."""

    data: Any
    values: dict[Path, Location] = field(default_factory=dict)
    keys: dict[Path, Location] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    env_refs: dict[Path, list[str]] = field(default_factory=dict)
    env_raw: dict[Path, str] = field(default_factory=dict)  # the text before substitution
    env_values: dict[str, str] = field(default_factory=dict)  # VAR -> the value substituted

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

    def redact(self, text: str) -> str:
        """``text`` with every substituted environment value shown as ``${VAR}`` instead.

        Parts count too: a message may show a value cut short (``'sk-proj-AbC...'``) or escaped
        (``repr``), so every run of :data:`REDACT_RUN` or more characters that occurs in a value
        (or in its escaped form) is replaced, not only the whole value."""
        for name, value in sorted(self.env_values.items(), key=lambda kv: -len(kv[1])):
            if len(value) >= 4:
                text = text.replace(value, f"${{{name}}}")
        spans: list[tuple[int, int, str]] = []
        for name, value in self.env_values.items():
            if len(value) >= REDACT_RUN:
                spans += [(start, end, name) for form in {value, repr(value)[1:-1]}
                          for start, end in _shared_runs(text, form, REDACT_RUN)]
        for start, end, name in _merge_spans(spans)[::-1]:
            text = f"{text[:start]}${{{name}}}{text[end:]}"
        return text


REDACT_RUN = 8  # the shortest part of a substituted value that redact() still hides


def _shared_runs(text: str, value: str, least: int) -> list[tuple[int, int]]:
    """Maximal ``text[start:end]`` of at least ``least`` characters that occur in ``value``."""
    runs: list[tuple[int, int]] = []
    i = 0
    while i <= len(text) - least:
        if text[i:i + least] not in value:
            i += 1
            continue
        end = i + least
        while end < len(text) and text[i:end + 1] in value:
            end += 1
        runs.append((i, end))
        i = end
    return runs


def _merge_spans(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Overlapping spans joined (named after the first), in order."""
    merged: list[tuple[int, int, str]] = []
    for start, end, name in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]), merged[-1][2])
        else:
            merged.append((start, end, name))
    return merged


class YamlSyntaxError(ValueError):
    def __init__(self, message: str, location: Location) -> None:
        self.location = location
        super().__init__(message)


def _loc(node: yaml.Node | yaml.Event) -> Location:
    return Location(node.start_mark.line + 1, node.start_mark.column + 1)


def substitute_env(text: str, environ: Mapping[str, str]) -> tuple[str, list[str], dict[str, str]]:
    """Replace ``${VAR}`` and ``${VAR:-default}``; return the text, the unset names and the
    values used."""
    missing: list[str] = []
    used: dict[str, str] = {}

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if value is not None and (value != "" or default is None):
            used[name] = value
            return value
        if default is not None:
            return default
        missing.append(name)
        return ""

    return _ENV_PATTERN.sub(repl, text), missing, used


def _prescan(text: str) -> None:
    """Reject oversized or too deeply nested input from the event stream (PyYAML's parser is
    iterative; its composer recurses, so depth is checked before composing)."""
    if len(text) > MAX_BYTES:
        raise YamlSyntaxError(f"policy file too large ({len(text)} characters; the limit is {MAX_BYTES})",
                              Location(1, 1))
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise YamlSyntaxError(f"nesting deeper than {MAX_DEPTH} levels", _loc(event))
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _scalar(node: yaml.ScalarNode) -> tuple[Any, str | None]:
    """The core-schema value of a scalar node, or an error message.

    An integer of more than 100 digits (no policy value needs one) is an error here, before
    Python builds it: a 5,000-digit ``cost_ceiling`` would otherwise raise an untyped
    ``ValueError`` (CPython's 4,300-digit limit) when built or when shown in a message. A
    rejected text is shown shortened."""
    max_digits = 100
    tag, text = node.tag, node.value
    shown = repr(text) if len(text) <= 40 else repr(text[:37]) + "..."
    if tag == _CORE + "str":
        return text, None
    if tag == _CORE + "null" and text in _NULL:
        return None, None
    if tag == _CORE + "bool" and text in _BOOL:
        return _BOOL[text], None
    if tag == _CORE + "int" and _INT.fullmatch(text):
        digits = text.lstrip("+-")
        digits = digits[2:] if digits.startswith(("0o", "0x")) else digits
        if len(digits.lstrip("0")) > max_digits:
            return None, f"integer {shown} is too large ({len(digits)} digits; at most {max_digits})"
        if text.startswith(("0o", "0x")):
            return int(text, 0), None
        return int(text), None
    if tag == _CORE + "float" and _FLOAT.fullmatch(text):
        lowered = text.lower()
        if lowered.endswith("nan"):
            return math.nan, None
        if lowered.endswith("inf"):
            return (-math.inf if text.startswith("-") else math.inf), None
        return float(text), None
    if tag.startswith(_CORE) and tag[len(_CORE):] in ("str", "null", "bool", "int", "float"):
        return None, f"{shown} is not a valid !!{tag[len(_CORE):]}"
    return None, f"unsupported YAML tag {_short(tag)} (policy files hold plain data)"


def _short(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


class _TooManyValuesError(Exception):
    pass


def load_located(text: str, environ: Mapping[str, str] | None = None, *,
                 expand_env: bool = True) -> LocatedDocument:
    """Parse one YAML document into plain data with locations; raise YamlSyntaxError.
    ``expand_env=False`` leaves ``${VAR}`` as written."""
    environ = os.environ if environ is None else environ
    try:
        _prescan(text)
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        location = Location(mark.line + 1, mark.column + 1) if mark else Location(1, 1)
        raise YamlSyntaxError(f"YAML syntax error: {err.problem or err}", location) from None
    except yaml.YAMLError as err:  # reader errors (control characters...) carry a position
        position = getattr(err, "position", None)
        line = text.count("\n", 0, position) + 1 if isinstance(position, int) else 1
        raise YamlSyntaxError(f"YAML error: {err}", Location(line, 1)) from None
    doc = LocatedDocument(data=None)
    if root is None:
        return doc
    flattener = _PyLoader("")
    built = 0
    pairs = 0  # mapping pairs after flattening merge keys, duplicates included
    active: set[int] = set()  # nodes being built: meeting one again is a recursive alias

    def count(node: yaml.Node, more: int) -> None:
        nonlocal pairs
        pairs += more
        if pairs > MAX_VALUES:
            raise _TooManyValuesError(_loc(node))

    def build(node: yaml.Node, path: Path) -> Any:
        nonlocal built
        built += 1
        if built > MAX_VALUES:
            raise _TooManyValuesError(_loc(node))
        doc.values.setdefault(path, _loc(node))
        if id(node) in active:
            doc.problems.append(Problem(path, "recursive alias", _loc(node)))
            return None
        if isinstance(node, yaml.ScalarNode):
            return _build_scalar(node, path)
        if node.tag not in (_CORE + "map", _CORE + "seq"):
            doc.problems.append(Problem(path, f"unsupported YAML tag {_short(node.tag)} (policy files "
                                              "hold plain data)", _loc(node)))
            return None
        active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [build(item, (*path, i)) for i, item in enumerate(node.value)]
            return build_mapping(node, path)
        finally:
            active.discard(id(node))

    def build_mapping(node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        try:
            flattener.flatten_mapping(node)
        except yaml.MarkedYAMLError as err:
            doc.problems.append(Problem(path, f"bad merge key: {err.problem}", _loc(node)))
            return {}
        except RecursionError:
            doc.problems.append(Problem(path, "recursive merge key", _loc(node)))
            return {}
        # Every flattened pair counts towards MAX_VALUES, duplicates included: on PyYAML < 6.0.4
        # a merge-key bomb flattens into millions of repeated pairs, each one a problem below.
        count(node, len(node.value))
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key, problem = _scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else (None, "")
            if problem is not None or not isinstance(key, (str, int, float, bool)):
                doc.problems.append(Problem(path, problem or "mapping keys must be plain scalars",
                                            _loc(key_node)))
                continue
            key = str(key)
            child = (*path, key)
            if key in result:
                doc.problems.append(Problem(child, f"duplicate key {key!r}", _loc(key_node)))
                continue
            doc.keys[child] = _loc(key_node)
            result[key] = build(value_node, child)
        return result

    def _build_scalar(node: yaml.ScalarNode, path: Path) -> Any:
        value, problem = _scalar(node)
        if problem is not None:
            doc.problems.append(Problem(path, problem, _loc(node)))
            return None
        if expand_env and isinstance(value, str) and "${" in value:
            doc.env_refs[path] = [m.group(1) for m in _ENV_PATTERN.finditer(value)]
            doc.env_raw[path] = value
            value, missing, used = substitute_env(value, environ)
            doc.env_values.update(used)
            if not node.style and node.tag == _CORE + "str" and not missing and value:  # plain (libyaml: "")
                # An unquoted ${VAR} reads as if its value were written there: 0.25 is a number.
                tag = _CoreResolver.resolve(_CoreResolver, yaml.ScalarNode, value, (True, False))  # type: ignore[arg-type]
                typed, _ = _scalar(yaml.ScalarNode(tag, value, node.start_mark, node.end_mark))
                value = value if typed is None else typed
            for name in missing:
                doc.problems.append(Problem(
                    path, f"environment variable {name} is not set (write ${{{name}:-default}} for a default)"))
        return value

    try:
        doc.data = build(root, ())
    except _TooManyValuesError as err:
        raise YamlSyntaxError(f"more than {MAX_VALUES} values after expanding aliases (an alias bomb?)",
                              err.args[0]) from None
    return doc


def parse_value(text: str) -> Any:
    """One value written on a command line (``--set key=value``), read with the same core schema
    as a policy file: ``true`` is a boolean, ``no`` and ``0`` are not; ``[a, b]`` is a list.

    Example:
        >>> parse_value("0.001"), parse_value("off"), parse_value("[a, b]")
        (0.001, 'off', ['a', 'b'])
    """
    try:
        doc = load_located(text, {}, expand_env=False)
    except YamlSyntaxError:
        return text  # not YAML: the plain string, which strict validation then judges
    if doc.problems or text.strip() == "":
        return text
    return doc.data
