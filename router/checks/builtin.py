"""Confidence checks: is this answer good enough to stop the cascade?

A check is declared in the policy (``- check: logprob`` with its parameters) and validated
when the file loads. Where a check's code comes from is the trust boundary:

- built-in checks are pydantic models registered by name (:func:`register_check`);
- installed packages add checks through the ``policy_router.checks`` entry-point group
  (``name = "package.module:attr"``, a :class:`CheckSpec` subclass or a function); installing
  a package is trusting it, so a policy may name these freely, and only the named one is loaded;
- a ``"module:function"`` check names arbitrary code: :func:`build_check` refuses it (and
  imports nothing) unless ``allow_code=True``.

A function check receives the :class:`Answer` plus the entry's other keys as keyword
arguments and returns a ``bool``, a number or a :class:`CheckResult`.

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
import importlib.metadata
import json
import math
import re
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Protocol, runtime_checkable

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
)

from router.errors import CodeNotAllowedError
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
    error: str | None = None  # the check itself failed (raised, or returned the wrong type)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"check": self.check, "passed": self.passed, "score": self.score}
        if self.detail:
            out["detail"] = self.detail
        if self.error:
            out["error"] = self.error
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

    # Parameters are strict like router.policy.values' types (which router.checks cannot import:
    # router.policy imports it): pydantic's StrictBool/StrictInt/StrictFloat, floats also
    # ``allow_inf_nan=False``, so ``ignore_case: 'yes'``, ``n: true`` and ``min_mean: -.inf`` are errors.

    model_config = ConfigDict(extra="forbid", frozen=True)
    check: str
    uses_logprobs: ClassVar[bool] = False

    @property
    def name(self) -> str:
        return self.check

    def run(self, answer: Answer, ctx: CheckContext | None) -> CheckRun:  # pragma: no cover
        raise NotImplementedError


_REGISTRY: dict[str, type[CheckSpec]] = {}
ENTRY_POINT_GROUP = "policy_router.checks"
_TARGET = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def register_check(name: str) -> Callable[[type[CheckSpec]], type[CheckSpec]]:
    """Class decorator: make a :class:`CheckSpec` subclass usable as ``check: name``."""

    def decorate(cls: type[CheckSpec]) -> type[CheckSpec]:
        _REGISTRY[name] = cls
        return cls

    return decorate


def _plugins() -> dict[str, importlib.metadata.EntryPoint]:
    """Installed checks by name; reading the metadata imports nothing."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
            if ep.name not in _REGISTRY and ":" not in ep.name}


def registered_checks() -> list[str]:
    """Built-in and installed (entry point) check names."""
    return sorted({*_REGISTRY, *_plugins()})


def _plugin(name: str) -> type[CheckSpec] | Callable[..., Any] | None:
    ep = _plugins().get(name)
    if ep is None:
        return None
    try:
        target = ep.load()
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot load the installed check {name!r} ({ep.value}): {err}") from None
    if isinstance(target, type) and issubclass(target, CheckSpec):
        _REGISTRY[name] = target
    elif not callable(target):
        raise ValueError(f"entry point {ENTRY_POINT_GROUP}:{name} = {ep.value} is neither a CheckSpec nor callable")
    return target


def check_class(name: str) -> type[CheckSpec] | None:
    """The class behind a check name (``CustomCheck`` for ``module:function`` and functions)."""
    if ":" in name:
        return CustomCheck
    cls = _REGISTRY.get(name)
    return cls if cls is not None else (CustomCheck if name in _plugins() else None)


def code_not_allowed(target: str) -> CodeNotAllowedError:
    return CodeNotAllowedError(
        f"check {target!r} names Python code, and a policy file is data: code checks run only when "
        "you allow them (load_policy(..., allow_code=True), PolicyRouter.from_yaml(..., allow_code=True), "
        f"router ... --allow-code), or install the check as a {ENTRY_POINT_GROUP!r} entry point")


def build_check(raw: Mapping[str, Any], *, allow_code: bool = False) -> CheckSpec:
    """Validate one ``confidence:`` entry. Raises ``KeyError`` for an unknown check name,
    ``pydantic.ValidationError`` for bad parameters, :class:`CodeNotAllowedError` for a
    ``"module:function"`` check without ``allow_code`` (nothing is imported), ``ValueError``
    for a custom target that cannot be imported."""
    name = raw.get("check")
    if not isinstance(name, str):
        raise KeyError("check")
    if ":" in name:
        if not _TARGET.fullmatch(name):
            raise ValueError(f"custom check must be 'package.module:function', got {name!r}")
        if not allow_code:
            raise code_not_allowed(name)
        check = CustomCheck.model_validate(dict(raw))
        check._fn = resolve_target(name)
        return check
    cls = _REGISTRY.get(name)
    if cls is None:
        found = _plugin(name)
        if found is None:
            raise KeyError(name)
        if not isinstance(found, type):
            check = CustomCheck.model_validate(dict(raw))
            check._fn = found
            return check
        cls = found
    return cls.model_validate(dict(raw))


@register_check("logprob")
class LogprobCheck(CheckSpec):
    """Mean token log-probability of the answer must be at least ``min_mean``.

    Providers that report no logprobs (Gemini through LangChain) pass with a note, unless
    ``when_missing: fail``.
    """

    uses_logprobs: ClassVar[bool] = True
    min_mean: StrictFloat = Field(-1.5, le=0, allow_inf_nan=False)
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


def _case_insensitive_regex(pattern: str) -> str:
    """``pattern``, when it compiles as a refusal pattern runs (case-insensitive); otherwise a
    ValueError, which validation reports at the entry's file:line (never a ``re.error``)."""
    try:
        re.compile(pattern, re.IGNORECASE)
    except re.error as err:
        raise ValueError(f"not a valid regular expression: {err}") from None
    return pattern


@register_check("refusal")
class RefusalCheck(CheckSpec):
    """Fails on an empty answer, a refusal, or an "I don't know"."""

    extra_patterns: tuple[Annotated[str, AfterValidator(_case_insensitive_regex)], ...] = ()

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

    chars: StrictInt = Field(1, ge=0)

    def run(self, answer: Answer, ctx: CheckContext | None) -> CheckResult:
        length = len(answer.text.strip())
        return CheckResult(self.check, length >= self.chars, float(length))


@register_check("regex")
class RegexCheck(CheckSpec):
    """The answer must contain a match of ``pattern``."""

    pattern: str
    ignore_case: StrictBool = False

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
        except RecursionError:  # the model's text nests deeper than the parser recurses
            return CheckResult(self.check, False, None, "not JSON: nested too deep to parse")
        return CheckResult(self.check, True)


class CustomCheck(CheckSpec):
    """A function check: ``check: "package.module:function"`` (allowed code) or an installed
    entry point's name; other keys are passed to the function. Build it with :func:`build_check`."""

    model_config = ConfigDict(extra="allow", frozen=True)
    _fn: Callable[..., Any] | None = PrivateAttr(default=None)

    def run(self, answer: Answer, ctx: CheckContext | None) -> CheckRun:
        fn = self._fn
        if fn is None:  # built directly in Python (not from a file): the caller chose this code
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
    "ConfidenceCheck", "ENTRY_POINT_GROUP", "ModelCall", "build_check", "register_check",
    "registered_checks",
]

