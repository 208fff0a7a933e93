"""OpenAI models through ``langchain_openai.ChatOpenAI``.

Credentials: ``api_key_env`` of the entry, else ``OPENAI_API_KEY``; endpoint: the entry's
``base_url``, else ``OPENAI_BASE_URL``, else OpenAI's. ``stream_usage=True`` always (ChatOpenAI
turns stream usage on only when no base_url is set).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage

from router.errors import ProviderError
from router.policy import ModelSpec
from router.providers import openai_style_logprobs
from router.providers._credentials import api_key, missing_key_reason
from router.providers._http_errors import translate_http_error
from router.tokens import count_openai_tokens

KEY_VAR = "OPENAI_API_KEY"


class _OpenAIAdapter:
    name = "openai"
    supports_logprobs = True
    supports_tools = True

    def unavailable_reason(self, spec: ModelSpec, env_hint: str | None) -> str | None:
        return missing_key_reason(spec, KEY_VAR)

    def count_tokens(self, spec: ModelSpec, messages: Sequence[BaseMessage]) -> int:
        return count_openai_tokens(messages)

    def build(self, name: str, spec: ModelSpec) -> BaseChatModel:
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(model=spec.model or name, api_key=api_key(spec, KEY_VAR),
                          base_url=spec.base_url or os.environ.get("OPENAI_BASE_URL") or None,
                          timeout=spec.timeout_s, max_retries=spec.max_retries, stream_usage=True)

    def call_kwargs(self, spec: ModelSpec, *, max_tokens: int, temperature: float,
                    want_logprobs: bool) -> dict[str, Any]:
        # max_tokens, not max_completion_tokens: OpenAI-compatible servers (llama.cpp's) ignore
        # the newer name.
        kwargs: dict[str, Any] = {"temperature": temperature, "extra_body": {"max_tokens": max_tokens}}
        if want_logprobs:
            kwargs["logprobs"] = True
        return kwargs

    def token_logprobs(self, message: AIMessage) -> tuple[float, ...] | None:
        return openai_style_logprobs(message)

    def reported_cost_usd(self, message: AIMessage) -> float | None:
        return None

    def translate_error(self, spec: ModelSpec, exc: BaseException) -> ProviderError | None:
        return translate_http_error("openai", spec.model or "?", exc)


ADAPTER = _OpenAIAdapter()
