"""One request's inputs: the config it runs under and the standard chat model parameters.

``BaseChatModel`` does not pass the ``RunnableConfig`` down to ``_generate``/``_stream``; the
router needs it (``configurable`` overrides, tags and metadata drive the policy), so each public
entry point stores a :class:`Request` in a context variable for the run it starts.

Example:
    >>> params = CallParams.collect({"temperature": 0.2}, {"stop": ["\\n"], "max_tokens": 8})
    >>> params.max_tokens, params.extra
    (8, {'stop': ['\\n']})
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage, HumanMessage, convert_to_messages
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import RunnableConfig

from router.errors import InputError
from router.policy.policy_file import Policy, PolicySettings
from router.routing.catalog import Catalog
from router.routing.selection import Exclusion, Selection

#: Generation parameters every rung receives as call keyword arguments (besides ``max_tokens``
#: and ``temperature``, which enter the policy's settings and so the ceiling math).
PASSED_THROUGH = ("stop", "top_p", "seed", "frequency_penalty", "presence_penalty")
#: Keys the router takes from ``invoke(..., **kwargs)``/``bind(...)``; others are a TypeError.
KNOWN = ("max_tokens", "temperature", "model", *PASSED_THROUGH)
#: Keys LangChain itself adds to the call kwargs; accepted and not sent to the models.
IGNORED = ("ls_structured_output_format", "structured_output_format", "stream", "tools", "tool_choice")


def to_messages(value: LanguageModelInput) -> list[BaseMessage]:
    """Accept what a chat model accepts: a string, a PromptValue or a list of messages."""
    if isinstance(value, str):
        return [HumanMessage(value)]
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, Sequence):
        return convert_to_messages(value)
    raise InputError(type(value).__name__)


@dataclass(frozen=True)
class CallParams:
    """Standard generation parameters of one request (constructor fields, then call kwargs)."""

    max_tokens: int | None = None
    temperature: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    model: str | None = None  # pin the request to this one candidate (still subject to the policy)

    @classmethod
    def collect(cls, fields: dict[str, Any], kwargs: dict[str, Any]) -> CallParams:
        merged = {k: v for k, v in fields.items() if v is not None}
        unknown = sorted(k for k in kwargs if k not in KNOWN and k not in IGNORED)
        if unknown:
            raise TypeError(f"PolicyRouter got unexpected keyword argument(s) {unknown}; "
                            f"it accepts {list(KNOWN)}")
        merged.update({k: v for k, v in kwargs.items() if k in KNOWN and v is not None})
        extra = {k: merged[k] for k in PASSED_THROUGH if k in merged}
        max_tokens = merged.get("max_tokens")
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                       or max_tokens < 1):
            raise TypeError(f"max_tokens must be a positive int, got {max_tokens!r}")
        return cls(max_tokens, merged.get("temperature"), extra, merged.get("model"))

    def pin(self, selection: Selection) -> Selection:
        """``selection`` narrowed to the pinned ``model``: a model the policy excluded stays
        excluded (the pin cannot break privacy or the tier), so the request then has no candidate."""
        if self.model is None:
            return selection
        dropped = [Exclusion(name, f"not the requested model {self.model!r}")
                   for name in selection.candidates if name != self.model]
        return replace(selection, candidates=[n for n in selection.candidates if n == self.model],
                       excluded=[*selection.excluded, *dropped], pinned=self.model)

    def apply(self, settings: PolicySettings) -> PolicySettings:
        """``settings`` with this request's ``max_tokens`` (capped at the policy's
        ``max_output_tokens``: a call can lower the limit, never raise it) and ``temperature``."""
        update: dict[str, Any] = {}
        if self.max_tokens is not None:
            update["max_output_tokens"] = min(self.max_tokens, settings.max_output_tokens)
        if self.temperature is not None:
            update["temperature"] = float(self.temperature)
        return settings.model_copy(update=update) if update else settings


def bounded_policy(policy: Policy, *, timeout: float | None, max_retries: int | None) -> Policy:
    """``policy`` with every model's ``timeout_s`` and ``max_retries`` at most the router's
    ``timeout``/``max_retries`` fields (a constructor can tighten the policy's limits, never loosen them).

    Example:
        >>> bounded_policy(policy, timeout=5, max_retries=None).models["gpt-4"].timeout_s
        5.0
    """
    if timeout is None and max_retries is None:
        return policy
    models = {}
    for name, spec in policy.models.items():
        update: dict[str, Any] = {}
        if timeout is not None and timeout < spec.timeout_s:
            update["timeout_s"] = float(timeout)
        if max_retries is not None and max_retries < spec.max_retries:
            update["max_retries"] = int(max_retries)
        models[name] = spec.model_copy(update=update) if update else spec
    return policy.model_copy(update={"models": MappingProxyType(models)})


@dataclass
class Request:
    """What a public entry point hands to ``_generate``/``_stream`` for the run it starts."""

    config: RunnableConfig
    run_id: UUID
    usage_handlers: list[BaseCallbackHandler] = field(default_factory=list)
    # The catalog (so the policy) the entry point decided tracing on; the run plans on the same.
    catalog: Catalog | None = None
    # Local-only (privacy or offline): the run goes inside router.langchain.privacy_scope.private_scope.
    private: bool = False


CURRENT: ContextVar[Request | None] = ContextVar("policy_router_request", default=None)
