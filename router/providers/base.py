"""What a provider declares, and the safe answer for everything it leaves out.

Every provider-specific fact the router relies on lives on the provider's adapter: whether its
models are reached over a network, which ``local:`` claims it allows, the fields an entry needs,
its credential variables, how its input tokens are bounded offline, its worst-case floor, how its
finish reasons map, which client exceptions prove a request was never sent, how its errors
translate, whether it reports logprobs. :class:`BaseAdapter` holds the defaults, chosen so that an
adapter that declares nothing cannot fail open:

- ``network = True``: excluded under privacy/offline unless ``local: true``, and ``local: true``
  only with a loopback or unix-socket ``base_url``; a ``price:`` is required.
- input tokens bounded by one token per UTF-8 byte plus per-message and per-call overhead, tool
  schemas counted the same way (:func:`byte_token_bound`);
- only an explicit ``stop`` is a complete answer; a missing finish reason is a cut-off one;
- no client exception proves a failed try unsent (it is charged at its worst case);
- no tools, no logprobs; one chat model per event loop.

A plug-in adapter (entry-point group ``policy_router.providers``) may subclass
:class:`BaseAdapter` or be any object: :func:`router.providers.registry.get_adapter` fills what it
lacks from these defaults.

Example:
    >>> class Mine(BaseAdapter):
    ...     name = "mine"
    ...     def build(self, name, spec): return MyChatModel(model=spec.model)
    >>> Mine().network, Mine().finish_reasons
    (True, {'stop': 'stop'})
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.messages import AIMessage, BaseMessage

from router.errors import ProviderError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from router.policy.policy_file import ModelSpec

#: What ``local: true`` may mean for a provider: ``required`` (it runs in this process),
#: ``loopback`` (only with a loopback or unix-socket ``base_url``), ``never``, ``any``.
LocalRule = Literal["required", "loopback", "never", "any"]

BYTE_TOKENS_PER_MESSAGE = 4
TOKENS_PER_TOOL_CALL = 8
TOKENS_PER_TOOL = 12
TOOLS_OVERHEAD = 16

#: Finish reasons the built-in providers report, normalised (their union, any case).
COMMON_FINISH_REASONS: Mapping[str, str] = {
    "stop": "stop", "end_turn": "stop", "stop_sequence": "stop", "eos": "stop",
    "length": "length", "max_tokens": "length",
    "content_filter": "content_filter", "safety": "content_filter", "recitation": "content_filter",
    "blocklist": "content_filter", "prohibited_content": "content_filter", "spii": "content_filter",
    "image_safety": "content_filter", "refusal": "content_filter",
    "tool_calls": "tool_calls", "function_call": "tool_calls", "tool_use": "tool_calls",
}
#: Client exceptions (by class name, anywhere in the cause chain) raised before a request left:
#: for httpx, aiohttp and the socket layer, the clients the built-in providers use.
HTTPX_UNSENT = frozenset({"ConnectError", "ConnectTimeout", "PoolTimeout", "ConnectionRefusedError",
                          "ClientConnectorError"})


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogatepass"))


def byte_token_bound(messages: Sequence[BaseMessage], provider: str) -> int:
    """An upper bound of input tokens for any tokenizer that never makes a token of less than one
    byte: one per UTF-8 byte of each message's text, tool calls and ids, plus overhead per message
    and per call. Content that is not text has no such bound
    (:class:`~router.errors.UnboundedContentError`).

    Example:
        >>> byte_token_bound([HumanMessage("日本")], "mine")   # 6 bytes + 4
        10
    """
    from router.routing.tokens import check_text_only, message_extras, message_text, tool_call_count

    check_text_only(messages, provider)
    return sum(BYTE_TOKENS_PER_MESSAGE + TOKENS_PER_TOOL_CALL * tool_call_count(m)
               + _utf8_len("".join([message_text(m), *message_extras(m)])) for m in messages)


def byte_tool_bound(tools: Sequence[dict[str, Any]]) -> int:
    """Input tokens the bound tools' schemas add, one per UTF-8 byte of their JSON plus framing."""
    if not tools:
        return 0
    from router.routing.tokens import tools_json

    return TOOLS_OVERHEAD + TOKENS_PER_TOOL * len(tools) + _utf8_len(tools_json(tools))


class BaseAdapter:
    """Safe defaults for every declaration (see the module's docstring); a subclass overrides
    what its provider really does and implements :meth:`build`."""

    name: str = "?"
    network: bool = True
    local_rule: LocalRule = "loopback"
    required_fields: tuple[str, ...] = ("model",)
    field_hints: Mapping[str, str] = {}  # shown after "needs 'field:'"
    key_vars: tuple[str, ...] = ()  # the conventional key variables (the first is the default)
    base_url_var: str | None = None
    package: str | None = None  # the import name of the client package, when it is optional
    extra: str | None = None  # the policy-router extra that installs it
    finish_reasons: Mapping[str, str] = {"stop": "stop"}
    reports_finish_reason: bool = True
    unsent_exceptions: frozenset[str] = frozenset()
    supports_logprobs: bool = False
    supports_tools: bool = False
    per_event_loop: bool = True
    error_classes: tuple[tuple[str, str, str | None], ...] = ()  # (module, class, kind or None: by status)
    replays_dataset: bool = False  # answers from a recorded dataset (dataset:), for the policy lab

    def missing_package_reason(self) -> str | None:
        """Why this provider cannot run here because its client package is not installed."""
        if self.package is None or importlib.util.find_spec(self.package) is not None:
            return None
        install = f"pip install 'policy-router[{self.extra}]'" if self.extra else f"pip install {self.package}"
        return f"unavailable: package {self.package} not installed ({install})"

    def key_var(self, spec: ModelSpec) -> str | None:
        return spec.api_key_env or (self.key_vars[0] if self.key_vars else None)

    def api_key(self, spec: ModelSpec) -> Any:
        from pydantic import SecretStr

        var = self.key_var(spec)
        value = os.environ.get(var) if var else None
        return SecretStr(value) if value else None

    def base_url(self, spec: ModelSpec) -> str | None:
        return spec.base_url or (os.environ.get(self.base_url_var) if self.base_url_var else None) or None

    def unavailable_reason(self, spec: ModelSpec, env_hint: str | None) -> str | None:
        missing = self.missing_package_reason()
        if missing is not None:
            return missing
        var = self.key_var(spec)
        if var is not None and self.api_key(spec) is None:
            return f"no credentials: {var} not set"
        return None

    def entry_problems(self, spec: ModelSpec) -> list[tuple[tuple[str, ...], str]]:
        """Problems of one entry for this provider: ``(path under the entry, message)``."""
        from router.policy.values import is_loopback_url

        problems: list[tuple[tuple[str, ...], str]] = []
        for field in self.required_fields:
            if getattr(spec, field, None) is None:
                problems.append(((), f"a {self.name} model needs '{field}:'{self.field_hints.get(field, '')}"))
        if self.local_rule == "required" and not spec.local:
            problems.append((("local",), f"a {self.name} model runs here: set local: true"))
        elif self.local_rule == "never" and spec.local:
            problems.append((("local",), f"a {self.name} model is never local"))
        elif self.local_rule == "loopback" and spec.local and not is_loopback_url(self.base_url(spec)):
            problems.append((("local",), f"a {self.name} model may be local only with a loopback or "
                                         "unix-socket base_url (127.0.0.1, localhost, [::1], unix:)"))
        return problems

    def count_tokens(self, spec: ModelSpec, messages: Sequence[BaseMessage]) -> int:
        return byte_token_bound(messages, self.name)

    def tool_tokens(self, spec: ModelSpec, tools: Sequence[dict[str, Any]]) -> int:
        return byte_tool_bound(tools)

    def worst_case_floor_usd(self, spec: ModelSpec) -> float:
        """The least one call's worst case may be, whatever its tokens (a recorded cost)."""
        return 0.0

    def build(self, name: str, spec: ModelSpec) -> BaseChatModel:
        raise NotImplementedError(f"provider {self.name!r} builds no chat model")

    def call_kwargs(self, spec: ModelSpec, *, max_tokens: int, temperature: float,
                    want_logprobs: bool) -> dict[str, Any]:
        return {"max_tokens": max_tokens, "temperature": temperature}

    def token_logprobs(self, message: AIMessage) -> tuple[float, ...] | None:
        return None

    def reported_cost_usd(self, message: AIMessage) -> float | None:
        return None

    def translate_error(self, spec: ModelSpec, exc: BaseException) -> ProviderError | None:
        from router.providers._http_errors import translate_http_error, unexpected_error

        secrets = [self.api_key(spec)]
        model = spec.model or "?"
        return (translate_http_error(self.name, model, exc, secrets=secrets, rows=self.error_classes)
                or unexpected_error(self.name, model, exc, secrets=secrets))
