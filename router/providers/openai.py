"""OpenAI models through ``langchain_openai.ChatOpenAI``.

Credentials: the entry's ``api_key_env``, else ``OPENAI_API_KEY`` (held as ``SecretStr``; a model
without one is excluded as ``no credentials: VAR not set``). Endpoint: the entry's ``base_url``,
else ``OPENAI_BASE_URL``, else OpenAI's. Read when the router builds the client.

Wire details that matter here:

- ``stream_usage=True`` always: ChatOpenAI asks for usage in streams only when no base_url is
  set. A server that still sends none (llama.cpp's) gets our own count, marked estimated.
- ``max_tokens`` travels in ``extra_body``: OpenAI-compatible servers (llama.cpp's) ignore the
  newer ``max_completion_tokens``.
- No client retries: the router retries (``max_retries``), honouring ``Retry-After`` only within
  the policy's bound (:mod:`router.providers.retries`).
- Logprobs, when a check wants them: ``logprobs=true`` plus ``top_logprobs=1``; llama.cpp's
  server returns per-token logprobs only when ``top_logprobs`` is set.
- Keyless on loopback: an entry with a loopback ``base_url``, no ``api_key_env`` and no
  ``OPENAI_API_KEY`` set is a server on this machine that takes no key (vLLM, llama.cpp's
  server, LM Studio): it is available, and the client sends the placeholder ``no-key``.
- A loopback ``base_url`` (a model served on this machine, e.g. ``local: true``) is reached
  directly: ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` are not used for it, so its prompts and
  key never pass through a proxy. Other endpoints honour the proxy variables as usual.

Example:
    >>> ADAPTER.unavailable_reason(spec, env_hint=None)
    'no credentials: OPENAI_API_KEY not set'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from pydantic import SecretStr

from router.policy.values import is_loopback_url
from router.providers import openai_style_logprobs
from router.providers._network import NetworkAdapter, http_clients, scrubbing, split_userinfo
from router.routing.tokens import count_openai_tokens, tool_schema_tokens

if TYPE_CHECKING:
    from router.policy.policy_file import ModelSpec

KEY_VAR = "OPENAI_API_KEY"
KEY_VARS = ("OPENAI_API_KEY",)  # the conventional key variables (the first is the default)
BASE_URL_VAR = "OPENAI_BASE_URL"
KEYLESS = "no-key"  # sent to a loopback server when no key is set (it takes none)


class _OpenAIAdapter(NetworkAdapter):
    name = "openai"
    supports_logprobs = True
    supports_tools = True
    key_vars = KEY_VARS
    base_url_var = BASE_URL_VAR
    default_base_url = "https://api.openai.com/v1"
    error_classes = (
        ("openai", "APITimeoutError", "timeout"),
        ("openai", "APIConnectionError", "connection"),
        ("openai", "APIResponseValidationError", "malformed"),
        ("openai", "APIStatusError", None),
    )
    per_event_loop = True

    def unavailable_reason(self, spec: ModelSpec, env_hint: str | None) -> str | None:
        if self._keyless(spec):
            return None  # a server on this machine (vLLM, llama.cpp, LM Studio) that takes no key
        return super().unavailable_reason(spec, env_hint)

    def _keyless(self, spec: ModelSpec) -> bool:
        """No key set, no api_key_env named, and a loopback endpoint: the server takes none."""
        return not spec.api_key_env and self.api_key(spec) is None and is_loopback_url(self.base_url(spec))

    def count_tokens(self, spec: ModelSpec, messages: Sequence[BaseMessage]) -> int:
        return count_openai_tokens(messages)

    def tool_tokens(self, spec: ModelSpec, tools: Sequence[dict[str, Any]]) -> int:
        return tool_schema_tokens(tools)

    def build(self, name: str, spec: ModelSpec) -> BaseChatModel:
        from langchain_openai import ChatOpenAI

        # A password in the endpoint travels as the clients' Basic auth, never in the URL.
        base_url, auth = split_userinfo(self.base_url(spec))
        # A keyless loopback server gets a placeholder (the client requires one); nothing secret.
        key = SecretStr(KEYLESS) if self._keyless(spec) else self.api_key(spec)
        return scrubbing(ChatOpenAI)(model=spec.model or name, api_key=key, base_url=base_url,
                          # The router performs max_retries itself (router.providers.retries).
                          timeout=spec.timeout_s, max_retries=0, stream_usage=True,
                          **http_clients(base_url, spec.timeout_s, auth))

    def call_kwargs(self, spec: ModelSpec, *, max_tokens: int, temperature: float,
                    want_logprobs: bool) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"temperature": temperature, "extra_body": {"max_tokens": max_tokens}}
        if want_logprobs:
            kwargs.update(logprobs=True, top_logprobs=1)
        return kwargs

    def token_logprobs(self, message: AIMessage) -> tuple[float, ...] | None:
        return openai_style_logprobs(message)


ADAPTER = _OpenAIAdapter()
