"""Confidence checks: is this answer good enough to stop the cascade?

A check is declared in the policy (``- check: logprob`` with its parameters) and validated
when the file loads. Built-in checks are pydantic models registered by name; a custom check
names a function as ``"module:function"`` and receives the :class:`Answer` plus the entry's
other keys as keyword arguments, returning a ``bool`` or a :class:`CheckResult`.

A check may consult other models (agreement, verifier...): its ``run`` then is a generator
that yields :class:`ModelCall` requests and receives :class:`CallOutcome` replies, so the
cascade can charge those calls against the cost ceiling in both sync and async paths.

Example:
    >>> check = build_check({"check": "min_length", "chars": 3})
    >>> check.run(Answer.from_text("Paris"), None).passed
    True
"""

from __future__ import annotations

import importlib
import json
import math
import re
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel, ConfigDict, Field, field_validator

from router.routing.model_call import CallOutcome, ModelCall


@dataclass(frozen=True)
class Answer:
    """What a check looks at: one model's answer to the request."""

    model: str
    text: str
    message: AIMessage
    token_logprobs: tuple[float, ...] | None = None
    prompt: tuple[BaseMessage, ...] = ()

    @classmethod
    def from_text(cls, text: str, *, model: str = "test", logprobs: list[float] | None = None) -> Answer:
        return cls(model=model, text=text, message=AIMessage(content=text),
                   token_logprobs=tuple(logprobs) if logprobs is not None else None)

    @property
    def mean_logprob(self) -> float | None:
        if not self.token_logprobs:
            return None
        return sum(self.token_logprobs) / len(self.token_logprobs)


@dataclass
class CheckResult:
    """The verdict of one check on one answer, as stored in the decision record."""

    check: str
    passed: bool
    score: float | None = None
    detail: str | None = None
    cost_usd: float = 0.0
    calls: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"check": self.check, "passed": self.passed, "score": self.score}
        if self.detail:
            out["detail"] = self.detail
        if self.cost_usd or self.calls:
            out["cost_usd"] = self.cost_usd
            out["calls"] = self.calls
        return out


CheckRun = CheckResult | Generator[ModelCall, CallOutcome, CheckResult]


class CheckContext(Protocol):
    """What the cascade offers a check besides the answer."""

    @property
    def policy_name(self) -> str: ...


@runtime_checkable
class ConfidenceCheck(Protocol):
    """The plug-in point: anything with a ``name`` and a ``run`` of this shape is a check."""

    name: str

    def run(self, answer: Answer, ctx: CheckContext | None) -> CheckRun: ...


class CheckSpec(BaseModel):
    """Base of built-in checks: a frozen, validated policy entry that can run itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    check: str
    uses_logprobs: ClassVar[bool] = False

    @property
    def name(self) -> str:
        return self.check

    def run(self, answer: Answer, ctx: CheckContext | None) -> CheckRun:  # pragma: no cover
        raise NotImplementedError


_REGISTRY: dict[str, type[CheckSpec]] = {}


def register_check(name: str) -> Callable[[type[CheckSpec]], type[CheckSpec]]:
    """Class decorator: make a :class:`CheckSpec` subclass usable as ``check: name``."""

    def decorate(cls: type[CheckSpec]) -> type[CheckSpec]:
        _REGISTRY[name] = cls
        return cls

    return decorate


def registered_checks() -> list[str]:
    return sorted(_REGISTRY)


def check_class(name: str) -> type[CheckSpec] | None:
    """The class behind a check name (``CustomCheck`` for ``module:function``)."""
    return CustomCheck if ":" in name else _REGISTRY.get(name)


def build_check(raw: Mapping[str, Any]) -> CheckSpec:
    """Validate one ``confidence:`` entry. Raises ``KeyError`` for an unknown check name,
    ``pydantic.ValidationError`` for bad parameters, ``ImportError`` for a bad custom target."""
    name = raw.get("check")
    if not isinstance(name, str):
        raise KeyError("check")
    if ":" in name:
        return CustomCheck.model_validate(dict(raw))
    cls = _REGISTRY.get(name)
    if cls is None:
        raise KeyError(name)
    return cls.model_validate(dict(raw))


@register_check("logprob")
class LogprobCheck(CheckSpec):
    """Mean token log-probability of the answer must be at least ``min_mean``.

    Providers that report no logprobs (Gemini through LangChain) pass with a note, unless
    ``when_missing: fail``.
    """

    uses_logprobs: ClassVar[bool] = True
    min_mean: float = Field(-1.5, le=0)
    when_missing: Literal["pass", "fail"] = "pass"

    def run(self, answer: Answer, ctx: CheckContext | None) -> CheckResult:
        mean = answer.mean_logprob
        if mean is None:
            return CheckResult(self.check, self.when_missing == "pass", None,
                               "no logprobs from this model")
        return CheckResult(self.check, mean >= self.min_mean, round(mean, 4))


_REFUSALS = re.compile(
    r"\b(i\s*(?:do not|don't|dont)\s*know|i\s*(?:am|'m)\s*not\s*sure|i\s*(?:can ?not|can't|am unable to|'m unable to)"
    r"|as an ai\b|i\s*(?:am|'m)\s*sorry|i\s*apologi[sz]e|no idea|unable to (?:answer|help|provide))",
    re.IGNORECASE,
)


@register_check("refusal")
class RefusalCheck(CheckSpec):
    """Fails on an empty answer, a refusal, or an "I don't know"."""

    extra_patterns: tuple[str, ...] = ()

    @field_validator("extra_patterns")
    @classmethod
    def _compile(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            re.compile(pattern)
        return patterns

    def run(self, answer: Answer, ctx: CheckContext | None) -> CheckResult:
        text = answer.text.strip()
        if not text:
            return CheckResult(self.check, False, None, "empty answer")
        found = _REFUSALS.search(text) or next(
            (m for p in self.extra_patterns if (m := re.search(p, text, re.IGNORECASE))), None)
        if found:
            return CheckResult(self.check, False, None, f"refusal: {found.group(0)!r}")
        return CheckResult(self.check, True)


@register_check("min_length")
class MinLengthCheck(CheckSpec):
    """The stripped answer has at least ``chars`` characters."""

    chars: int = Field(1, ge=0)

    def run(self, answer: Answer, ctx: CheckContext | None) -> CheckResult:
        length = len(answer.text.strip())
        return CheckResult(self.check, length >= self.chars, float(length))


@register_check("regex")
class RegexCheck(CheckSpec):
    """The answer must contain a match of ``pattern``."""

    pattern: str
    ignore_case: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"not a valid regular expression: {err}") from None
        return pattern

    def run(self, answer: Answer, ctx: CheckContext | None) -> CheckResult:
        flags = re.IGNORECASE if self.ignore_case else 0
        matched = re.search(self.pattern, answer.text, flags) is not None
        return CheckResult(self.check, matched, None, None if matched else "no match")


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


@register_check("json")
class JsonCheck(CheckSpec):
    """The answer (or its fenced code block) parses as JSON."""

    def run(self, answer: Answer, ctx: CheckContext | None) -> CheckResult:
        text = answer.text.strip()
        fenced = _FENCE.search(text)
        candidate = fenced.group(1) if fenced else text
        try:
            json.loads(candidate)
        except ValueError as err:
            return CheckResult(self.check, False, None, f"not JSON: {err}")
        return CheckResult(self.check, True)


class CustomCheck(CheckSpec):
    """``check: "package.module:function"``; other keys are passed to the function."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @field_validator("check")
    @classmethod
    def _importable(cls, target: str) -> str:
        resolve_target(target)
        return target

    def run(self, answer: Answer, ctx: CheckContext | None) -> CheckRun:
        fn = resolve_target(self.check)
        result = fn(answer, **(self.model_extra or {}))
        if isinstance(result, CheckResult):
            return result
        if isinstance(result, bool):
            return CheckResult(self.check, result)
        if isinstance(result, (int, float)) and not math.isnan(result):
            return CheckResult(self.check, bool(result), float(result))
        raise TypeError(f"custom check {self.check} returned {type(result).__name__}, "
                        "expected bool or CheckResult")


def resolve_target(target: str) -> Callable[..., Any]:
    """Import ``"module:attribute"``; raise ValueError with a readable message."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ValueError(f"custom check must be 'module:function', got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import {module_name!r}: {err}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"{module_name!r} has no callable {attr!r}")
    return fn


__all__ = [
    "Answer", "CallOutcome", "CheckContext", "CheckResult", "CheckRun", "CheckSpec",
    "ConfidenceCheck", "ModelCall", "build_check", "register_check", "registered_checks",
]

