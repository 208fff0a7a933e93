"""The catalog: a policy's model entries, bound to their providers.

One :class:`Catalog` per router. It answers the per-model questions selection and the cascade
ask (available here? how many input tokens? worst-case cost?) and builds each chat model once.

Example:
    >>> catalog = Catalog(load_policy("policies/default.yaml"))
    >>> catalog.unavailable_reason("tinyllama")
    'not downloaded: run `router pull tinyllama`'
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from router.policy.policy_file import ModelSpec, Policy
from router.providers import ProviderAdapter, get_adapter
from router.providers.registry import bind_objects
from router.routing.tokens import check_encodable


class Catalog:
    """``models``: chat model objects bound by name to ``provider: instance`` entries."""

    def __init__(self, policy: Policy, models: Mapping[str, BaseChatModel] | None = None) -> None:
        self.policy = policy
        self._bound = bind_objects(policy.models, models)
        self._models: dict[str, BaseChatModel] = {}
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, BaseChatModel]] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()

    def spec(self, name: str) -> ModelSpec:
        return self.policy.models[name]

    def adapter(self, name: str) -> ProviderAdapter:
        return get_adapter(self.spec(name).provider)

    def env_hint(self, name: str, key: str) -> str | None:
        """The environment variable a field was substituted from, for "X not set" reasons."""
        refs = self.policy.env_refs.get(("models", name, key))
        return refs[0] if refs else None

    def unavailable_reason(self, name: str) -> str | None:
        spec = self.spec(name)
        adapter = self.adapter(name)
        if getattr(adapter, "accepts_objects", False) and name not in self._bound:
            return adapter.unbound_reason(name)
        # The variable a required path field (a llama.cpp model's gguf:) was substituted from.
        fields = getattr(adapter, "required_fields", ())
        hint = next((h for f in fields if (h := self.env_hint(name, f)) is not None), None)
        return adapter.unavailable_reason(spec, hint)

    def count_tokens(self, name: str, messages: Sequence[BaseMessage],
                     tools: Sequence[dict[str, Any]] = ()) -> int:
        """Input tokens of a call sending ``messages`` and the bound ``tools`` (OpenAI format),
        an upper bound where the provider's tokenizer is not known. Raises a
        :class:`~router.errors.ModelUnavailableError` subclass for input no model can take
        (invalid Unicode) or content this model's tokens cannot be bounded for."""
        check_encodable(messages)
        spec = self.spec(name)
        adapter = self.adapter(name)
        return adapter.count_tokens(spec, messages) + (adapter.tool_tokens(spec, tools) if tools else 0)

    def _models_for(self, name: str, loop: asyncio.AbstractEventLoop | None) -> dict[str, BaseChatModel]:
        if loop is None or not self.adapter(name).per_event_loop:
            return self._models
        return self._per_loop.setdefault(loop, {})

    def is_built(self, name: str, loop: asyncio.AbstractEventLoop | None = None) -> bool:
        with self._lock:
            return name in self._models_for(name, loop)

    def chat_model(self, name: str, loop: asyncio.AbstractEventLoop | None = None) -> BaseChatModel:
        """The chat model for ``name``, built once. For a provider whose async client is bound
        to the event loop it first ran on, async callers pass their ``loop`` and get one per loop."""
        with self._lock:
            models = self._models_for(name, loop)
            model = models.get(name)
            if model is None:
                bound = self._bound.get(name)
                model = models[name] = bound if bound is not None else self.adapter(name).build(name, self.spec(name))
            return model
