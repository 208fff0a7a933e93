"""Gemini models through ``langchain_google_genai.ChatGoogleGenerativeAI`` (google-genai SDK, REST).

Credentials: the entry's ``api_key_env``, else ``GOOGLE_API_KEY`` (held as ``SecretStr``; a model
without one is excluded as ``no credentials: VAR not set``). The SDK sends it in the
``x-goog-api-key`` header. Endpoint: the entry's ``base_url``, else ``GOOGLE_GEMINI_BASE_URL``,
else Google's; the SDK appends ``/{api_version}/models/{model}:generateContent`` (``v1`` by
default, ``v1beta`` with ``GOOGLE_GENAI_API_VERSION=beta``). The key and endpoint are always
passed explicitly, so neither ``GEMINI_API_KEY`` nor a LangSmith gateway can redirect a call.

Usage comes from ``usageMetadata`` (running totals in streams, turned into deltas by
LangChain). LangChain surfaces no Gemini logprobs: a ``logprob`` check passes with a note
(``when_missing``); rely on text checks or a verifier for these answers.

``max_retries`` (retries after the first attempt) are performed by the router, which honours
``Retry-After`` within the policy's bound (:mod:`router.providers.retries`); the SDK makes one
attempt (LangChain hands it a number of *attempts*).

Example:
    >>> ADAPTER.unavailable_reason(spec, env_hint=None)
    'no credentials: GOOGLE_API_KEY not set'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage

from router.providers._network import NetworkAdapter, scrubbing, split_userinfo
from router.routing.tokens import gemini_token_bound

if TYPE_CHECKING:
    from router.policy.policy_file import ModelSpec

KEY_VAR = "GOOGLE_API_KEY"
KEY_VARS = ("GOOGLE_API_KEY", "GEMINI_API_KEY")  # the conventional key variables (the first is the default)
BASE_URL_VAR = "GOOGLE_GEMINI_BASE_URL"


class _GeminiAdapter(NetworkAdapter):
    name = "google_genai"
    supports_logprobs = False
    supports_tools = True
    key_vars = KEY_VARS
    base_url_var = BASE_URL_VAR
    default_base_url = "https://generativelanguage.googleapis.com"
    local_rule = "never"
    error_classes = (
        ("google.genai.errors", "UnknownApiResponseError", "malformed"),
        ("google.genai.errors", "APIError", None),
    )
    per_event_loop = False

    def unavailable_reason(self, spec: ModelSpec, env_hint: str | None) -> str | None:
        # The SDK would carry a URL password into its logs and errors: not supported (the URL is not shown).
        if split_userinfo(self.base_url(spec))[1] is not None:
            return f"unsupported: a password in the endpoint URL (the key goes in {self.key_vars[0]})"
        return super().unavailable_reason(spec, env_hint)

    def count_tokens(self, spec: ModelSpec, messages: Sequence[BaseMessage]) -> int:
        return gemini_token_bound(messages)  # an upper bound: Gemini's tokenizer is not published

    def build(self, name: str, spec: ModelSpec) -> BaseChatModel:
        from langchain_google_genai import ChatGoogleGenerativeAI

        return scrubbing(ChatGoogleGenerativeAI)(model=spec.model or name, google_api_key=self.api_key(spec),
                                      base_url=self.base_url(spec), timeout=spec.timeout_s,
                                      max_retries=1)

    def call_kwargs(self, spec: ModelSpec, *, max_tokens: int, temperature: float,
                    want_logprobs: bool) -> dict[str, Any]:
        return {"temperature": temperature, "max_output_tokens": max_tokens}

    def token_logprobs(self, message: AIMessage) -> tuple[float, ...] | None:
        return None


ADAPTER = _GeminiAdapter()
