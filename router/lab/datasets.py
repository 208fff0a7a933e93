"""Recorded model outcomes: what each model answered to each prompt, whether it was right, what
it cost. The recorded provider answers from a :class:`Dataset`; ``router simulate`` scores
policies on one.

Two file formats are read:

- **RouterBench CSV** (``*.csv``): one row per prompt; ``prompt`` and ``<model>|model_response``
  hold Python-list-looking strings (read with :func:`ast.literal_eval`, never ``eval``);
  ``<model>`` is the 1.0/0.0 correctness, ``<model>|total_cost`` the cost in USD; optional
  ``sample_id``, ``eval_name`` and ``gold`` columns. A model whose response, correctness or
  cost cell is empty has no outcome for that prompt.
- **JSONL** (any other suffix): one object per line,
  ``{"id"?, "prompt", "gold"?, "task"?, "models": {name: {"response", "correct", "cost_usd"}}}``;
  ``correct`` may be ``null`` (unlabelled logs: cost can still be simulated).

Records are found by prompt text: exactly, or after collapsing whitespace.

Example:
    >>> ds = load_dataset("data/routerbench-sample/arc_challenge.jsonl")
    >>> ds.models[:2]
    ('WizardLM/WizardLM-13B-V1.2', 'claude-instant-v1')
    >>> record = ds.find(ds.records[0].prompt)
    >>> record.outcomes["gpt-4-1106-preview"].correct
    True
"""

from __future__ import annotations

import ast
import csv
import functools
import hashlib
import json
import math
import os
import random
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from stat import S_ISREG
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from router.errors import RouterError

RESPONSE_SUFFIX = "|model_response"
COST_SUFFIX = "|total_cost"
_CSV_META_COLUMNS = frozenset({"", "sample_id", "prompt", "eval_name", "gold", "oracle_model_to_route_to"})


class DatasetError(RouterError, ValueError):
    """A dataset file cannot be read: where (``path``, ``line``) and why."""

    def __init__(self, message: str, path: str, line: int = 0) -> None:
        self.path, self.line = path, line
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


@dataclass(frozen=True)
class Outcome:
    """One model's recorded answer to one prompt."""

    response: str
    correct: bool | None
    cost_usd: float


@dataclass(frozen=True)
class Record:
    """One prompt and every model's recorded outcome for it."""

    id: str
    prompt: str
    gold: str | None = None
    outcomes: Mapping[str, Outcome] = field(default_factory=dict)
    task: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "prompt": self.prompt}
        if self.gold is not None:
            out["gold"] = self.gold
        if self.task is not None:
            out["task"] = self.task
        out["models"] = {name: {"response": o.response, "correct": o.correct, "cost_usd": o.cost_usd}
                         for name, o in self.outcomes.items()}
        return out


def prompt_key(text: str) -> str:
    """The normalised form records are indexed by: whitespace runs collapsed, ends stripped."""
    return " ".join(text.split())


class Dataset:
    """Records in file order, indexed by prompt and id.

    ``name`` identifies the dataset in this process (its resolved path, for a file): the recorded
    provider finds datasets by that name (see :func:`register_dataset`).
    """

    def __init__(self, records: Iterable[Record], name: str) -> None:
        self.records: tuple[Record, ...] = tuple(records)
        self.name = name
        self._by_text: dict[str, Record] = {}
        self._by_key: dict[str, Record] = {}
        self._by_id: dict[str, Record] = {}
        models: dict[str, None] = {}
        for record in self.records:
            self._by_text.setdefault(record.prompt, record)
            self._by_key.setdefault(prompt_key(record.prompt), record)
            self._by_id.setdefault(record.id, record)
            models.update(dict.fromkeys(record.outcomes))
        self.models: tuple[str, ...] = tuple(models)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {len(self)} records, {len(self.models)} models)"

    def find(self, prompt: str) -> Record | None:
        """The record of ``prompt`` (exact text, or equal after collapsing whitespace)."""
        found = self._by_text.get(prompt)
        return found if found is not None else self._by_key.get(prompt_key(prompt))

    def get(self, record_id: str) -> Record | None:
        return self._by_id.get(record_id)

    def subset(self, n: int | None = None, *, ids: Sequence[str] | None = None,
               seed: int | None = None) -> Dataset:
        """The first ``n`` records (a seeded random ``n`` with ``seed``), or those with ``ids``.

        The subset is registered under a name derived from this one, so recorded models can
        answer from it.
        """
        if ids is not None:
            missing = [i for i in ids if i not in self._by_id]
            if missing:
                raise KeyError(f"not in {self.name}: {missing[:5]}")
            records = [self._by_id[i] for i in ids]
        elif seed is not None and n is not None:
            records = random.Random(seed).sample(list(self.records), min(n, len(self.records)))
        else:
            records = list(self.records[:n])
        digest = hashlib.sha1("\n".join(r.id for r in records).encode()).hexdigest()[:10]
        return register_dataset(Dataset(records, f"{self.name}#subset-{digest}"))

    def to_jsonl(self, path: str | os.PathLike[str]) -> None:
        """Write the JSONL form (readable by :func:`load_dataset`)."""
        with open(path, "w", encoding="utf-8") as out:
            for record in self.records:
                out.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, tuple[tuple[int, int] | None, Dataset]] = {}
_REGISTRY_LOCK = threading.Lock()


def register_dataset(dataset: Dataset) -> Dataset:
    """Make ``dataset`` findable by its name (``dataset:`` of a recorded model)."""
    with _REGISTRY_LOCK:
        _REGISTRY[dataset.name] = (None, dataset)
    return dataset


def load_dataset_if_known(name: str) -> Dataset | None:
    """The dataset registered or loaded under ``name`` in this process, if any (no file access)."""
    with _REGISTRY_LOCK:
        entry = _REGISTRY.get(name)
    return entry[1] if entry is not None else None


def resolve_dataset_path(path: str | os.PathLike[str]) -> str:
    """A dataset path as the registry names it: ``~`` expanded, absolute (relative to the CWD)."""
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def load_dataset(source: str | os.PathLike[str] | Dataset) -> Dataset:
    """Read a RouterBench CSV (``*.csv``) or JSONL file, once per process.

    Loaded datasets are cached by resolved path (and reloaded when the file changes); a name
    given by :func:`register_dataset` (an in-memory dataset) is returned as registered.
    Raises :class:`DatasetError` with the file and line of the first problem.
    """
    if isinstance(source, Dataset):
        return source
    raw = os.fspath(source)
    with _REGISTRY_LOCK:
        entry = _REGISTRY.get(raw)
    if entry is not None and entry[0] is None:
        return entry[1]
    path = resolve_dataset_path(raw)
    try:
        stat = os.stat(path)
    except OSError as err:
        raise DatasetError(f"cannot read dataset: {err.strerror}", path) from None
    if not S_ISREG(stat.st_mode):  # a FIFO would block every request; a device never ends
        raise DatasetError("cannot read dataset: not a regular file", path)
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _REGISTRY_LOCK:
        entry = _REGISTRY.get(path)
    if entry is not None and entry[0] == stamp:
        return entry[1]
    reader = _read_csv if path.endswith(".csv") else _read_jsonl
    dataset = Dataset(reader(path), path)
    with _REGISTRY_LOCK:
        _REGISTRY[path] = (stamp, dataset)
    return dataset


# --------------------------------------------------------------------------- CSV


_PLAIN_LIST = re.compile(r"\['([^'\\]*)'\]\Z")


def _list_text(cell: str, path: str, line: int, column: str) -> str:
    """A RouterBench list-looking cell (``"['text']"``) as plain text; turns joined by a blank line."""
    plain = _PLAIN_LIST.match(cell)
    if plain:  # most short responses ("['D']"): no escapes, nothing to parse
        return plain.group(1)
    value = _literal(cell)
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return "\n\n".join(value)
    if value is _NOT_LITERAL:
        raise DatasetError(f"column {column!r}: not a Python list literal", path, line)
    raise DatasetError(f"column {column!r}: expected a list of strings, got {type(value).__name__}",
                       path, line)


_NOT_LITERAL = object()


@functools.lru_cache(maxsize=4096)
def _literal(cell: str) -> Any:
    # Responses repeat a lot ("['B\\n']"), hence the cache.
    try:
        return ast.literal_eval(cell)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return _NOT_LITERAL


def _number(cell: str, path: str, line: int, column: str) -> float:
    try:
        return float(cell)
    except ValueError:
        raise DatasetError(f"column {column!r}: not a number: {cell[:20]!r}", path, line) from None


def _cost(cell: str, path: str, line: int, column: str) -> float:
    """A recorded cost: a finite amount, never negative (it is charged and budgeted)."""
    value = _number(cell, path, line, column)
    if not math.isfinite(value) or value < 0:
        raise DatasetError(f"column {column!r}: a cost must be a finite amount >= 0, not {cell[:20]!r}", path, line)
    return value


def _read_csv(path: str) -> list[Record]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    records: list[Record] = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "prompt" not in columns:
            raise DatasetError("no 'prompt' column: not a RouterBench CSV", path, 1)
        models = [c[: -len(RESPONSE_SUFFIX)] for c in columns if c.endswith(RESPONSE_SUFFIX)]
        for model in models:
            for needed in (model, model + COST_SUFFIX):
                if needed not in columns:
                    raise DatasetError(f"model {model!r} has responses but no {needed!r} column", path, 1)
        for index, row in enumerate(reader):
            line = reader.line_num
            outcomes: dict[str, Outcome] = {}
            for model in models:
                response, correct, cost = row[model + RESPONSE_SUFFIX], row[model], row[model + COST_SUFFIX]
                if not response or not correct or not cost:
                    continue
                outcomes[model] = Outcome(
                    response=_list_text(response, path, line, model + RESPONSE_SUFFIX),
                    correct=_number(correct, path, line, model) >= 0.5,
                    cost_usd=_cost(cost, path, line, model + COST_SUFFIX))
            records.append(Record(id=row.get("sample_id") or str(index),
                                  prompt=_list_text(row["prompt"], path, line, "prompt"),
                                  gold=row.get("gold") or None, outcomes=MappingProxyType(outcomes),
                                  task=row.get("eval_name") or None))
    return records


# --------------------------------------------------------------------------- JSONL


class _JsonOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")
    response: str
    correct: bool | None = None
    cost_usd: float = Field(0.0, ge=0, allow_inf_nan=False)  # charged and budgeted: an amount


class _JsonRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | int | None = None
    prompt: str
    gold: str | None = None
    task: str | None = None
    models: dict[str, _JsonOutcome]


def _read_jsonl(path: str) -> list[Record]:
    records: list[Record] = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                item = _JsonRecord.model_validate_json(line)
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise DatasetError(f"{where or 'line'}: {first['msg']}", path, line_no) from None
            outcomes = {name: Outcome(o.response, o.correct, o.cost_usd) for name, o in item.models.items()}
            records.append(Record(id=str(item.id) if item.id is not None else str(line_no - 1),
                                  prompt=item.prompt, gold=item.gold, task=item.task,
                                  outcomes=MappingProxyType(outcomes)))
    return records


__all__ = ["Dataset", "DatasetError", "Outcome", "Record", "load_dataset", "load_dataset_if_known", "prompt_key",
           "register_dataset", "resolve_dataset_path"]
