"""Providers: how a catalog entry becomes a LangChain chat model.

Each provider is an adapter (:mod:`router.providers.base` declares what one says about itself,
with safe defaults); :mod:`router.providers.registry` finds built-ins and installed ones
(entry-point group ``policy_router.providers``). Adapter modules are imported only when a policy
uses them, and client packages only when a model is built, so a local-only policy never imports
``langchain_openai`` (nor opens a socket).

Example:
    >>> adapter = get_adapter("llamacpp")
    >>> adapter.unavailable_reason(spec, env_hint=None)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from langchain_core.messages import AIMessage, BaseMessage

from router.errors import ProviderError
from router.providers.registry import get_adapter, registered_providers

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from router.policy.policy_file import ModelSpec

__all__ = ["ProviderAdapter", "get_adapter", "openai_style_logprobs", "registered_providers"]


class ProviderAdapter(Protocol):
    """The plug-in point for a model provider (see :class:`router.providers.base.BaseAdapter` for
    every declaration and its safe default)."""

    name: str
    network: bool
    supports_logprobs: bool
    supports_tools: bool
    per_event_loop: bool  # its async HTTP client is bound to the loop it first ran on
    reports_finish_reason: bool  # every complete reply says why it ended (a missing one: cut short)
    finish_reasons: Any
    unsent_exceptions: frozenset[str]

    def unavailable_reason(self, spec: ModelSpec, env_hint: str | None) -> str | None:
        """Why this model cannot be called here (no weights, no credentials), or None."""

    def count_tokens(self, spec: ModelSpec, messages: Sequence[BaseMessage]) -> int:
        """Input tokens of ``messages`` for this model, counted offline (an upper bound)."""

    def tool_tokens(self, spec: ModelSpec, tools: Sequence[dict[str, Any]]) -> int:
        """Input tokens the bound tools' schemas add (an upper bound)."""

    def build(self, name: str, spec: ModelSpec) -> BaseChatModel:
        """A ready chat model. Called once per router and model."""

    def call_kwargs(self, spec: ModelSpec, *, max_tokens: int, temperature: float,
                    want_logprobs: bool) -> dict[str, Any]:
        """Keyword arguments for ``invoke``/``stream`` that apply the policy's settings."""

    def token_logprobs(self, message: AIMessage) -> tuple[float, ...] | None:
        """Per-token logprobs of an answer, when the provider reported them."""

    def reported_cost_usd(self, message: AIMessage) -> float | None:
        """The provider's own figure for this call's cost, when it reports one (recorded data)."""

    def translate_error(self, spec: ModelSpec, exc: BaseException) -> ProviderError | None:
        """A typed error for a provider failure; None when ``exc`` is not a known one (the caller
        then records it as an ``unexpected_error``: ``bad_request`` or ``other``)."""


def openai_style_logprobs(message: AIMessage) -> tuple[float, ...] | None:
    """Read ``response_metadata["logprobs"]["content"][i]["logprob"]`` (OpenAI's shape, which
    our llama.cpp model also uses)."""
    logprobs = message.response_metadata.get("logprobs")
    if not isinstance(logprobs, dict):
        return None
    content = logprobs.get("content")
    if not content:
        return None
    return tuple(float(item["logprob"]) for item in content if item.get("logprob") is not None)
