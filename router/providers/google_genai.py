"""Gemini models through ``langchain_google_genai.ChatGoogleGenerativeAI``.

Credentials: ``api_key_env`` of the entry, else ``GOOGLE_API_KEY``; endpoint: the entry's
``base_url``, else ``GOOGLE_GEMINI_BASE_URL``, else Google's. LangChain surfaces no Gemini
logprobs: use text-based checks or a verifier for these answers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage

from router.errors import ProviderError
from router.policy import ModelSpec
from router.providers._credentials import api_key, missing_key_reason
from router.providers._http_errors import translate_http_error
from router.tokens import estimate_gemini_tokens

KEY_VAR = "GOOGLE_API_KEY"


class _GeminiAdapter:
    name = "google_genai"
    supports_logprobs = False
    supports_tools = True

    def unavailable_reason(self, spec: ModelSpec, env_hint: str | None) -> str | None:
        return missing_key_reason(spec, KEY_VAR)

    def count_tokens(self, spec: ModelSpec, messages: Sequence[BaseMessage]) -> int:
        return estimate_gemini_tokens(messages)

    def build(self, name: str, spec: ModelSpec) -> BaseChatModel:
        from langchain_google_genai import ChatGoogleGenerativeAI

        base_url = spec.base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or None
        return ChatGoogleGenerativeAI(model=spec.model or name, google_api_key=api_key(spec, KEY_VAR),
                                      base_url=base_url, timeout=spec.timeout_s,
                                      max_retries=spec.max_retries)

    def call_kwargs(self, spec: ModelSpec, *, max_tokens: int, temperature: float,
                    want_logprobs: bool) -> dict[str, Any]:
        return {"temperature": temperature, "max_output_tokens": max_tokens}

    def token_logprobs(self, message: AIMessage) -> tuple[float, ...] | None:
        return None

    def reported_cost_usd(self, message: AIMessage) -> float | None:
        return None

    def translate_error(self, spec: ModelSpec, exc: BaseException) -> ProviderError | None:
        return translate_http_error("google_genai", spec.model or "?", exc)


ADAPTER = _GeminiAdapter()
