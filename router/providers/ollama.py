"""Models served by Ollama through ``langchain_ollama.ChatOllama`` (extra ``policy-router[ollama]``).

Keyless. Endpoint: the entry's ``base_url``, else ``OLLAMA_HOST`` (``host:port`` or a URL), else
``http://127.0.0.1:11434``. A model on this machine is declared ``local: true`` (accepted only for
a loopback or unix-socket endpoint) and is then free; on another host it is a network model
that needs a ``price:``. Without the package installed a model is excluded with the
``pip install`` to run.

Wire details that matter here:

- ``num_ctx`` is the entry's ``context_window``, sent with every call: Ollama otherwise cuts a
  longer prompt silently at its own default (2048-4096 tokens).
- ``done_reason``: ``stop`` is a complete answer, ``length`` a cut-off one, ``load`` (the model was
  only loaded) or none (a stream cut before its final line) not an answer.
- Usage from ``prompt_eval_count``/``eval_count``; the input bound, with no tokenizer offline, is
  one token per UTF-8 byte plus overhead.
- ``max_tokens`` is ``num_predict``; the policy's ``stop``, ``seed``, ``top_p`` travel in the same
  ``options``. A loopback endpoint is reached without the proxy variables.

Example:
    >>> ADAPTER.base_url(spec_without_base_url)
    'http://127.0.0.1:11434'
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from router.providers._network import NetworkAdapter, scrubbing
from router.providers.base import HTTPX_UNSENT

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from router.policy.policy_file import ModelSpec

DEFAULT_HOST = "http://127.0.0.1:11434"
OPTION_KWARGS = ("seed", "top_p", "top_k")  # call keywords that are Ollama options


class _OllamaAdapter(NetworkAdapter):
    name = "ollama"
    package = "langchain_ollama"
    extra = "ollama"
    key_vars = ()
    base_url_var = "OLLAMA_HOST"
    finish_reasons = {"stop": "stop", "length": "length"}
    unsent_exceptions = HTTPX_UNSENT
    supports_tools = True
    supports_logprobs = False
    per_event_loop = True
    error_classes = (("ollama", "ResponseError", None),)

    def api_key(self, spec: ModelSpec) -> Any:
        return None

    def base_url(self, spec: ModelSpec) -> str:
        url = spec.base_url or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST
        return url if "://" in url else f"http://{url}"

    def unavailable_reason(self, spec: ModelSpec, env_hint: str | None) -> str | None:
        return self.missing_package_reason()

    def build(self, name: str, spec: ModelSpec) -> BaseChatModel:
        import httpx

        from router.policy.values import is_loopback_url

        base_url = self.base_url(spec)
        direct = is_loopback_url(base_url)  # a local server: no proxy sees its prompts
        return _chat_class()(
            model=spec.model or name, base_url=base_url, num_ctx=spec.context_window,
            client_kwargs={"timeout": spec.timeout_s},
            sync_client_kwargs={"transport": httpx.HTTPTransport()} if direct else {},
            async_client_kwargs={"transport": httpx.AsyncHTTPTransport()} if direct else {})

    def call_kwargs(self, spec: ModelSpec, *, max_tokens: int, temperature: float,
                    want_logprobs: bool) -> dict[str, Any]:
        options: dict[str, Any] = {"num_predict": max_tokens, "temperature": temperature}
        if spec.context_window:
            options["num_ctx"] = spec.context_window
        return {"options": options}


_CHAT: list[type] = []


def _chat_class() -> type:
    """``ChatOllama`` that merges the call's ``stop``, ``seed``, ``top_p``, ``top_k`` into the
    ``options`` the router passes (ChatOllama drops ``stop`` when ``options`` is given, and hands
    other keywords to a client that refuses them), its failures scrubbed for callbacks."""
    if _CHAT:
        return _CHAT[0]
    from langchain_ollama import ChatOllama

    class RouterChatOllama(ChatOllama):
        def _chat_params(self, messages: Any, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
            options = kwargs.get("options")
            if isinstance(options, dict):
                moved = {key: kwargs.pop(key) for key in OPTION_KWARGS if key in kwargs}
                kwargs["options"] = {**options, **moved, **({"stop": stop} if stop else {})}
            return super()._chat_params(messages, stop, **kwargs)

    RouterChatOllama.__name__ = RouterChatOllama.__qualname__ = "ChatOllama"
    _CHAT.append(scrubbing(RouterChatOllama))
    return _CHAT[0]


ADAPTER = _OllamaAdapter()
