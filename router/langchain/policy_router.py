"""``PolicyRouter``: a LangChain Runnable that answers under a cost policy.

It is a ``RunnableSerializable`` rather than a ``BaseChatModel`` on purpose: a chat model that
calls other chat models shows them beside itself in callbacks and counts their usage twice in
``get_usage_metadata_callback()``. As a plain runnable it passes ``run_manager.get_child()`` to
each model, so child runs nest under the router's run and each model call is counted once; it
still offers ``bind_tools`` and ``with_structured_output`` by passing tools to every candidate.

Example:
    >>> router = PolicyRouter.from_yaml("policies/default.yaml")
    >>> msg = router.invoke("What is the capital of France?")
    >>> msg.response_metadata["routing"]["final_model"]
    'gemma-270m'
    >>> chain = ChatPromptTemplate.from_template("Answer briefly: {q}") | router | StrOutputParser()
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, convert_to_messages
from langchain_core.output_parsers.openai_tools import JsonOutputKeyToolsParser, PydanticToolsParser
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableMap,
    RunnablePassthrough,
    RunnableSerializable,
)
from langchain_core.runnables.config import ensure_config, patch_config
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from router.errors import InputError, RoutingError
from router.estimators.route import route
from router.langchain.tracing import private_config, tracing_mark
from router.policy.overrides import effective_settings, policy_overrides
from router.policy.policy_file import Policy
from router.policy.reload import PolicyWatcher
from router.policy.sources import (
    PolicySource,
    default_policy_source,
    policy_from_dict,
    policy_from_string,
    policy_path,
    resolve_policy,
)
from router.routing.caller import Caller
from router.routing.cascade import CascadeResult, Plan, adrive, drive, run_cascade
from router.routing.catalog import Catalog
from router.routing.decision import Decision
from router.routing.selection import select_candidates
from router.spend.guard import BudgetGuard

DEFAULT_POLICY = "policies/default.yaml"


def default_policy_path() -> str:
    """``$ROUTER_POLICY``, else ``policies/default.yaml`` when it exists here, else the packaged
    ``default`` (see :mod:`router.policy.sources`)."""
    return default_policy_source()


def to_messages(value: LanguageModelInput) -> list[BaseMessage]:
    """Accept what a chat model accepts: a string, a PromptValue or a list of messages."""
    if isinstance(value, str):
        return [HumanMessage(value)]
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, Sequence):
        return convert_to_messages(value)
    raise InputError(type(value).__name__)


class PolicyRouter(RunnableSerializable[LanguageModelInput, BaseMessage]):
    """Route each request to the cheapest model that satisfies the policy and its checks."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    policy: Policy
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: Any = None
    spend_guard: Any = Field(default=None, exclude=True)  # a SpendGuard; default: the policy's budgets
    _catalog: Catalog = PrivateAttr()
    _watcher: PolicyWatcher | None = PrivateAttr(default=None)
    _guard_from_policy: bool = PrivateAttr(default=False)
    _policy_guard: Any = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        # A mapping is validated like a file (PolicyError with key paths), not left to fail later.
        if isinstance(data.get("policy"), Mapping):
            data["policy"] = policy_from_dict(data["policy"])
        super().__init__(**data)

    def model_post_init(self, context: Any, /) -> None:
        self._catalog = Catalog(self.policy)
        if self.spend_guard is None:
            self.spend_guard = self._policy_guard = BudgetGuard.from_policy(self.policy)
            self._guard_from_policy = True

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_policy(cls, source: PolicySource | None = None, **load_options: Any) -> PolicyRouter:
        """A router for a packaged name (``"default"``, ``"offline"``...), a file path, a mapping
        or a :class:`Policy`; ``None`` is the default policy. ``load_options`` go to the loader."""
        return cls(policy=resolve_policy(source, **load_options))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str] | None = None, *, reload: bool = False,
                  reload_interval_s: float = 0.0, **load_options: Any) -> PolicyRouter:
        """Load a policy file or packaged name (default: ``$ROUTER_POLICY``, ``policies/default.yaml``
        or the packaged ``default``).

        With ``reload=True`` the file is checked at the start of each request (at most every
        ``reload_interval_s``): a changed file is validated, then replaces the policy for the
        following requests; an invalid one keeps the policy in force and logs the error.
        """
        if not reload:
            return cls.from_policy(path, **load_options)
        watcher = PolicyWatcher(policy_path(path), interval_s=reload_interval_s, **load_options)
        router = cls(policy=watcher.policy)
        router._watcher = watcher
        return router

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **load_options: Any) -> PolicyRouter:
        """A router for a policy given as a mapping; errors name ``<dict>`` and the key path."""
        return cls(policy=policy_from_dict(data, **load_options))

    @classmethod
    def from_string(cls, text: str, filename: str = "<string>", **load_options: Any) -> PolicyRouter:
        """A router for a policy given as YAML text; errors name ``filename``, line and column."""
        return cls(policy=policy_from_string(text, filename, **load_options))

    @property
    def policy_watcher(self) -> PolicyWatcher | None:
        """The watcher of a router made with ``from_yaml(..., reload=True)``, else None."""
        return self._watcher

    def _live_catalog(self) -> Catalog:
        """The catalog this request runs on, after adopting a reloaded policy (one reference
        is read per request, so a request never mixes two policies)."""
        catalog = self._catalog
        if self._watcher is not None:
            policy = self._watcher.poll()
            if policy is not catalog.policy:
                catalog = Catalog(policy)
                # The policy's own guard follows its budgets; a guard the caller set is kept.
                if (self._guard_from_policy and self.spend_guard is self._policy_guard
                        and (policy.budgets, policy.ledger) != (self.policy.budgets, self.policy.ledger)):
                    self.spend_guard = self._policy_guard = BudgetGuard.from_policy(policy)
                self.policy, self._catalog = policy, catalog
        return catalog

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    @property
    def OutputType(self) -> type[AIMessage]:  # noqa: N802 (LangChain's name)
        return AIMessage

    # ------------------------------------------------------------------ planning

    def plan(self, input: LanguageModelInput, config: RunnableConfig | None = None) -> Plan:
        """Effective policy, candidates and exclusions for ``input``; calls no model."""
        config = ensure_config(config)
        messages = to_messages(input)
        catalog = self._live_catalog()
        overrides = policy_overrides(config.get("configurable") or {})
        effective = effective_settings(catalog.policy, metadata=config.get("metadata"),
                                       tags=config.get("tags"), overrides=overrides)
        selection = select_candidates(catalog, effective.settings, messages,
                                      needs_tools=bool(self.tools))
        return route(Plan(catalog, effective.settings, tuple(messages), selection, effective.rule,
                          tools_bound=bool(self.tools)))

    def explain(self, input: LanguageModelInput, config: RunnableConfig | None = None) -> Decision:
        """The decision record this request would start from, without calling any model.

        ``estimated_cost_usd`` is the most the request could cost: the worst cases of the
        candidates in order, as far as the ceiling allows.
        """
        plan = self.plan(input, config)
        decision = plan.new_decision()
        decision.status = "explained"
        for name in plan.selection.candidates:
            worst = plan.selection.worst_case_usd[name]
            if decision.estimated_cost_usd + worst > plan.settings.cost_ceiling:
                break
            decision.estimated_cost_usd += worst
        return decision

    # ------------------------------------------------------------------ running

    def _caller(self, plan: Plan, config: RunnableConfig, run_manager: Any, *, stream: bool) -> Caller:
        child = patch_config(config, callbacks=run_manager.get_child())
        return Caller(plan, child, stream=stream, tools=self.tools, tool_choice=self.tool_choice,
                      guard=self.spend_guard)

    def _finish(self, result: CascadeResult, config: RunnableConfig | None = None) -> AIMessage:
        decision = result.decision
        if (mark := tracing_mark(config)) is not None:
            decision.effective["tracing"] = mark
        if result.message is None:
            if decision.status == "exhausted":
                message = "no candidate passed the confidence checks (on_exhausted: raise)"
            elif not decision.candidates:
                message = "no eligible model: " + "; ".join(f"{e.model}: {e.reason}" for e in decision.excluded)
            else:
                message = "every candidate failed: " + "; ".join(
                    f"{a.model}: {(a.error or {}).get('kind')}" for a in decision.attempts)
            if result.last_error is not None:
                result.last_error.decision = decision
            # Not chained: the record holds each attempt's scrubbed error (router.errors._Unchained).
            raise RoutingError(message, decision, last_error=result.last_error) from None
        final = result.message
        metadata = {**final.response_metadata, "routing": decision.to_dict()}
        return AIMessage(content=final.content, tool_calls=final.tool_calls,
                         invalid_tool_calls=final.invalid_tool_calls,
                         usage_metadata=final.usage_metadata, response_metadata=metadata,
                         additional_kwargs=final.additional_kwargs, id=final.id)

    def _invoke(self, input: LanguageModelInput, run_manager: CallbackManagerForChainRun,
                config: RunnableConfig) -> AIMessage:
        plan = self.plan(input, config)
        return self._finish(drive(run_cascade(plan), self._caller(plan, config, run_manager, stream=False)), config)

    async def _ainvoke(self, input: LanguageModelInput, run_manager: AsyncCallbackManagerForChainRun,
                       config: RunnableConfig) -> AIMessage:
        plan = self.plan(input, config)
        caller = self._caller(plan, config, run_manager, stream=False)
        return self._finish(await adrive(run_cascade(plan), caller.acall), config)

    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None,
               **kwargs: Any) -> AIMessage:
        config = private_config(self.policy, config)  # privacy covers tracing (router.langchain.tracing)
        return self._call_with_config(self._invoke, input, config, run_type="chain", **kwargs)

    async def ainvoke(self, input: LanguageModelInput, config: RunnableConfig | None = None,
                      **kwargs: Any) -> AIMessage:
        config = private_config(self.policy, config)
        return await self._acall_with_config(self._ainvoke, input, config, run_type="chain", **kwargs)

    def _emit(self, result: CascadeResult, config: RunnableConfig | None = None) -> Iterator[AIMessageChunk]:
        """Replay the accepted attempt's buffered chunks, then one carrying the record."""
        final = self._finish(result, config)
        chunks = result.chunks or [AIMessageChunk(content=final.content, usage_metadata=final.usage_metadata,
                                                  tool_call_chunks=_tool_call_chunks(final))]
        for chunk in chunks:
            yield AIMessageChunk(content=chunk.content, usage_metadata=chunk.usage_metadata,
                                 tool_call_chunks=chunk.tool_call_chunks,
                                 response_metadata={k: v for k, v in chunk.response_metadata.items()
                                                    if k != "logprobs"}, id=final.id)
        yield AIMessageChunk(content="", response_metadata={"routing": final.response_metadata["routing"]},
                             id=final.id)

    def _stream(self, inputs: Iterator[LanguageModelInput], run_manager: CallbackManagerForChainRun,
                config: RunnableConfig) -> Iterator[AIMessageChunk]:
        plan = self.plan(_single(inputs), config)
        result = drive(run_cascade(plan), self._caller(plan, config, run_manager, stream=True))
        yield from self._emit(result, config)

    async def _astream(self, inputs: AsyncIterator[LanguageModelInput],
                       run_manager: AsyncCallbackManagerForChainRun,
                       config: RunnableConfig) -> AsyncIterator[AIMessageChunk]:
        items = [item async for item in inputs]
        plan = self.plan(_single(iter(items)), config)
        caller = self._caller(plan, config, run_manager, stream=True)
        for chunk in self._emit(await adrive(run_cascade(plan), caller.acall), config):
            yield chunk

    def stream(self, input: LanguageModelInput, config: RunnableConfig | None = None,
               **kwargs: Any) -> Iterator[AIMessageChunk]:
        """Stream the answer. Each attempt is buffered and checked first: a chunk the checks
        rejected is never emitted."""
        config = private_config(self.policy, config)
        yield from self._transform_stream_with_config(iter([input]), self._stream, config, **kwargs)

    async def astream(self, input: LanguageModelInput, config: RunnableConfig | None = None,
                      **kwargs: Any) -> AsyncIterator[AIMessageChunk]:
        async def one() -> AsyncIterator[LanguageModelInput]:
            yield input

        config = private_config(self.policy, config)
        async for chunk in self._atransform_stream_with_config(one(), self._astream, config, **kwargs):
            yield chunk

    # ------------------------------------------------------------------ tools

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> PolicyRouter:
        """Offer ``tools`` to every candidate; candidates without tool support are excluded."""
        return self.model_copy(update={"tools": tuple(convert_to_openai_tool(t) for t in tools),
                                       "tool_choice": tool_choice})

    def with_structured_output(self, schema: Any, *, include_raw: bool = False,
                               **kwargs: Any) -> Runnable[LanguageModelInput, Any]:
        """Answer as ``schema`` (pydantic class, TypedDict or JSON schema) via a forced tool call.

        With ``include_raw=True`` the result is ``{"raw": AIMessage, "parsed": ..., "parsing_error": ...}``
        (as with LangChain chat models), and ``raw.response_metadata["routing"]`` is the record.
        """
        name = convert_to_openai_tool(schema)["function"]["name"]
        bound = self.bind_tools([schema], tool_choice=name)
        parser: Runnable[Any, Any]
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            parser = PydanticToolsParser(tools=[schema], first_tool_only=True)
        else:
            parser = JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
        if not include_raw:
            return bound | parser
        parse = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        no_parse = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=bound) | parse.with_fallbacks([no_parse], exception_key="parsing_error")


def _single(inputs: Iterator[LanguageModelInput]) -> LanguageModelInput:
    items = list(inputs)
    if len(items) == 1:
        return items[0]
    total = items[0]
    for item in items[1:]:
        total = total + item  # type: ignore[operator]
    return total


def _tool_call_chunks(message: AIMessage) -> list[dict[str, Any]]:
    import json

    return [{"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
            for i, c in enumerate(message.tool_calls)]
