"""Claude models through ``langchain_anthropic.ChatAnthropic`` (extra ``policy-router[anthropic]``).

Credentials: the entry's ``api_key_env``, else ``ANTHROPIC_API_KEY`` (held as ``SecretStr``, sent
in the ``x-api-key`` header). Endpoint: the entry's ``base_url``, else ``ANTHROPIC_BASE_URL``,
else Anthropic's; both are always passed explicitly, so no LangSmith gateway setting redirects a
call. Without the package installed a model is excluded with the ``pip install`` to run.

Wire details that matter here:

- ``stop_reason``: ``end_turn``/``stop_sequence`` are a stop, ``max_tokens`` a cut-off answer,
  ``tool_use`` tool calls, ``refusal`` a filtered answer; anything else (``pause_turn``, a new
  reason) is not a complete answer.
- Usage from ``usage`` (``message_start`` carries the input, ``message_delta`` the output in a
  stream); a stream cut before ``message_delta`` has no stop reason: cut short.
- No offline tokenizer is published: the input bound is one token per UTF-8 byte plus overhead,
  and a call with tools adds the tool-use system prompt Anthropic documents (at most 530 tokens
  for the models that list one; 600 counted).
- No client retries: the router retries, honouring ``retry-after`` (429, and 529 overloaded).
- The HTTP clients are the router's own (one per model and loop; a loopback endpoint is reached
  without the proxy variables), not the client library's process-wide cached ones.

Example:
    >>> ADAPTER.unavailable_reason(spec, env_hint=None)
    'no credentials: ANTHROPIC_API_KEY not set'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from router.providers._network import NetworkAdapter, http_clients, scrubbing, split_userinfo
from router.providers.base import HTTPX_UNSENT, byte_tool_bound

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from router.policy.policy_file import ModelSpec

KEY_VARS = ("ANTHROPIC_API_KEY",)
BASE_URL_VAR = "ANTHROPIC_BASE_URL"
TOOL_SYSTEM_PROMPT_TOKENS = 600

FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                  "model_context_window_exceeded": "length", "tool_use": "tool_calls",
                  "refusal": "content_filter"}


class _AnthropicAdapter(NetworkAdapter):
    name = "anthropic"
    default_base_url = "https://api.anthropic.com"
    package = "langchain_anthropic"
    extra = "anthropic"
    key_vars = KEY_VARS
    base_url_var = BASE_URL_VAR
    finish_reasons = FINISH_REASONS
    unsent_exceptions = HTTPX_UNSENT
    supports_tools = True
    supports_logprobs = False
    per_event_loop = True
    error_classes = (
        ("anthropic", "APITimeoutError", "timeout"),
        ("anthropic", "APIConnectionError", "connection"),
        ("anthropic", "APIResponseValidationError", "malformed"),
        ("anthropic", "APIStatusError", None),
    )

    def unavailable_reason(self, spec: ModelSpec, env_hint: str | None) -> str | None:
        if split_userinfo(self.base_url(spec))[1] is not None:
            return f"unsupported: a password in the endpoint URL (the key goes in {self.key_vars[0]})"
        return super().unavailable_reason(spec, env_hint)

    def tool_tokens(self, spec: ModelSpec, tools: Sequence[dict[str, Any]]) -> int:
        return byte_tool_bound(tools) + (TOOL_SYSTEM_PROMPT_TOKENS if tools else 0)

    def build(self, name: str, spec: ModelSpec) -> BaseChatModel:
        base_url = self.base_url(spec) or "https://api.anthropic.com"
        return _chat_class()(model=spec.model or name, api_key=self.api_key(spec), base_url=base_url,
                             default_request_timeout=spec.timeout_s, max_retries=0, stream_usage=True)

    def call_kwargs(self, spec: ModelSpec, *, max_tokens: int, temperature: float,
                    want_logprobs: bool) -> dict[str, Any]:
        return {"temperature": temperature, "max_tokens": max_tokens}


_CHAT: list[type] = []


def _chat_class() -> type:
    """``ChatAnthropic`` whose clients are built on the router's own httpx clients (no
    process-wide cache shared across event loops; a loopback endpoint bypasses proxies), and
    whose failures are scrubbed before callbacks see them. ChatAnthropic takes no ``http_client``:
    its two client properties are the only place to give it one."""
    if _CHAT:
        return _CHAT[0]
    import anthropic
    from langchain_anthropic import ChatAnthropic
    from pydantic import PrivateAttr

    class RouterChatAnthropic(ChatAnthropic):
        _router_clients: dict[str, Any] = PrivateAttr(default_factory=dict)

        def _own(self, kind: str) -> Any:
            if kind not in self._router_clients:
                http = http_clients(self.anthropic_api_url, float(self.default_request_timeout or 60.0),
                                    library=_httpx_library(anthropic))
                client = anthropic.Client if kind == "http_client" else anthropic.AsyncClient
                self._router_clients[kind] = client(**{**self._client_params, "http_client": http[kind]})
            return self._router_clients[kind]

        @property
        def _client(self) -> anthropic.Client:  # type: ignore[override]
            return self._own("http_client")

        @property
        def _async_client(self) -> anthropic.AsyncClient:  # type: ignore[override]
            return self._own("http_async_client")

    RouterChatAnthropic.__name__ = RouterChatAnthropic.__qualname__ = "ChatAnthropic"
    _CHAT.append(scrubbing(RouterChatAnthropic))
    return _CHAT[0]


def _httpx_library(anthropic: Any) -> Any:
    """The httpx package this anthropic SDK takes clients from (httpx2 from anthropic 2 on)."""
    import importlib

    major = int(str(getattr(anthropic, "__version__", "0")).split(".")[0] or 0)
    return importlib.import_module("httpx2" if major >= 2 else "httpx")


ADAPTER = _AnthropicAdapter()
