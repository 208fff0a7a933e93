"""``PolicyRouter``: a LangChain chat model that answers under a cost policy.

It is a ``BaseChatModel``: it passes LangChain's standard chat model suites, takes the standard
parameters (``stop``, ``max_tokens``, ``temperature``... as call kwargs, ``.bind()`` or fields),
and streams. The models it calls run as children of its own run (their callbacks nest under it;
:mod:`router.langchain.callbacks` keeps each model call counted once in
``get_usage_metadata_callback()`` and keeps unchecked tokens off the caller's streams), and
:mod:`router.langchain.streaming` streams the final rung live.

Example:
    >>> router = PolicyRouter.from_yaml("policies/default.yaml")
    >>> msg = router.invoke("What is the capital of France?", max_tokens=16)
    >>> msg.response_metadata["routing"]["final_model"]
    'gemma-270m'
    >>> chain = ChatPromptTemplate.from_template("Answer briefly: {q}") | router | StrOutputParser()
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextvars import Context
from typing import Any
from uuid import uuid4

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import ConfigurableFieldSpec, Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config
from pydantic import ConfigDict, Field, PrivateAttr

from router.errors import InputError
from router.estimators.route import route
from router.langchain import run_context, serialization, structured
from router.langchain.answer import clean, closing, finish
from router.langchain.boundary import PolicyBoundary, refuse_cache
from router.langchain.callbacks import child_manager
from router.langchain.constructors import PolicyConstructors
from router.langchain.request import CURRENT, CallParams, Request, bounded_policy, to_messages
from router.langchain.streaming import ChunkSink, astream_cascade, stream_cascade
from router.langchain.tracing import name_answering_model, tracing_mark
from router.policy.overrides import FIELDS, effective_settings, policy_overrides
from router.policy.policy_file import Policy
from router.policy.reload import PolicyWatcher
from router.policy.sources import policy_from_dict
from router.providers.registry import bind_objects
from router.routing.caller import Caller
from router.routing.cascade import CascadeResult, Plan, adrive, drive, run_cascade
from router.routing.catalog import Catalog
from router.routing.decision import Decision
from router.routing.selection import select_candidates
from router.spend.guard import BudgetGuard


class PolicyRouter(serialization.RouterSerialization, PolicyConstructors, BaseChatModel):
    """Route each request to the cheapest model that satisfies the policy and its checks."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    policy: Policy
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: Any = None
    spend_guard: Any = Field(default=None, exclude=True)  # a SpendGuard; default: the policy's budgets
    # Standard parameters, applied to every rung (call kwargs and .bind() override them).
    max_tokens: int | None = None  # at most the policy's max_output_tokens; enters the ceiling math
    temperature: float | None = None
    stop: list[str] | None = None
    top_p: float | None = None
    seed: int | None = None
    # At most these per model call: each model's ``timeout_s``/``max_retries`` is capped by them.
    timeout: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0)
    # LangChain's LLM cache never applies (CacheNotAllowedError explains why); False is the only value.
    cache: Any = Field(default=False, exclude=True)
    # Chat model objects bound by name to the policy's provider: instance entries.
    models: dict[str, Any] = Field(default_factory=dict, exclude=True, repr=False)
    _catalog: Catalog = PrivateAttr()
    _watcher: PolicyWatcher | None = PrivateAttr(default=None)
    _guard_from_policy: bool = PrivateAttr(default=False)
    _policy_guard: Any = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        refuse_cache(data.get("cache", False))
        data["cache"] = False
        # A mapping is validated like a file (PolicyError with key paths), not left to fail later.
        if isinstance(data.get("policy"), Mapping):
            data["policy"] = policy_from_dict(data["policy"])
        if data.get("models") and isinstance(data.get("policy"), Policy):  # a PolicyError, not a ValidationError
            bind_objects(data["policy"].models, data["models"])
        super().__init__(**data)

    def model_post_init(self, context: Any, /) -> None:
        self._catalog = self._new_catalog(self.policy)
        if self.spend_guard is None:
            self.spend_guard = self._policy_guard = BudgetGuard.from_policy(self.policy)
            self._guard_from_policy = True

    # ------------------------------------------------------------------ copies and serialization

    def __repr__(self) -> str:
        set_params = {k: getattr(self, k) for k in ("max_tokens", "temperature", "stop") if getattr(self, k) is not None}
        extra = "".join(f", {k}={v!r}" for k, v in set_params.items())
        tools = f", tools={len(self.tools)}" if self.tools else ""
        return f"PolicyRouter(policy={self.policy.name!r}, source={self.policy.source!r}{extra}{tools})"

    __str__ = __repr__

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
            if policy is not self.policy:
                catalog = self._new_catalog(policy)
                # The policy's own guard follows its budgets; a guard the caller set is kept.
                if (self._guard_from_policy and self.spend_guard is self._policy_guard
                        and (policy.budgets, policy.ledger) != (self.policy.budgets, self.policy.ledger)):
                    self.spend_guard = self._policy_guard = BudgetGuard.from_policy(policy)
                self.policy, self._catalog = policy, catalog
        return catalog

    def _new_catalog(self, policy: Policy) -> Catalog:
        return Catalog(bounded_policy(policy, timeout=self.timeout, max_retries=self.max_retries), self.models)

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    # ------------------------------------------------------------------ planning

    def plan(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
             params: CallParams | None = None, tools: Sequence[Any] | None = None,
             catalog: Catalog | None = None) -> Plan:
        """Effective policy, candidates and exclusions for ``input``; calls no model.

        ``params`` (``max_tokens``, ``temperature``) enter the settings, so the ceiling math
        uses this request's ``max_tokens``. ``catalog``: the one the request started on
        (default: the live one, after adopting a reloaded policy)."""
        config = self._with_own_fields(config)
        messages = to_messages(input)
        catalog = catalog or self._live_catalog()
        overrides = policy_overrides(config.get("configurable") or {})
        effective = effective_settings(catalog.policy, metadata=config.get("metadata"),
                                       tags=config.get("tags"), overrides=overrides)
        settings = (params or self._params({})).apply(effective.settings)
        bound_tools = tuple(self.tools if tools is None else tools)
        bound = bool(bound_tools)
        selection = (params or self._params({})).pin(select_candidates(catalog, settings, messages,
                                                                       needs_tools=bound, tools=bound_tools))
        return route(Plan(catalog, settings, tuple(messages), selection, effective.rule, tools_bound=bound,
                          tools=bound_tools))

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

    # ------------------------------------------------------------------ chat model

    @property
    def _llm_type(self) -> str:
        return "policy-router"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"policy": self.policy.name,
                "max_tokens": self.max_tokens, "temperature": self.temperature}

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        """The policy fields a request may override in ``config["configurable"]`` (privacy and
        offline only ever turn on)."""
        settings = self.policy.policy
        return [ConfigurableFieldSpec(id=key, annotation=Any, name=key, default=getattr(settings, key, None),
                                      description=f"per-request override of the policy's {key!r}")
                for key in sorted(FIELDS)]

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        """LangSmith's fields, fixed before the call: the model is the pinned ``model``, else the
        cascade's first rung; tracers' record of the run is renamed to the answering model when
        the cascade ends (:func:`name_answering_model`), and the message says it too
        (``response_metadata["model_name"]``)."""
        cascade = self.policy.policy.cascade
        name = kwargs.get("model") or (cascade[0] if cascade else "policy-router")
        params = LangSmithParams(ls_provider="policy-router", ls_model_type="chat", ls_model_name=str(name))
        temperature = kwargs.get("temperature", self.temperature)
        if temperature is not None:
            params["ls_temperature"] = temperature
        if (max_tokens := kwargs.get("max_tokens", self.max_tokens)) is not None:
            params["ls_max_tokens"] = max_tokens
        if stop := stop or self.stop:
            params["ls_stop"] = stop
        return params

    def _params(self, kwargs: dict[str, Any], stop: list[str] | None = None) -> CallParams:
        fields = {"max_tokens": self.max_tokens, "temperature": self.temperature, "stop": self.stop,
                  "top_p": self.top_p, "seed": self.seed}
        return CallParams.collect(fields, {**kwargs, **({"stop": stop} if stop else {})})

    def _enter(self, config: RunnableConfig | None) -> tuple[RunnableConfig, Context, PolicyRouter]:
        """What a public entry point runs with: the request's config and context (see
        :func:`run_context.enter`), and the router to run it on: ``self``, or, when a private
        request must not reach a remote tracer among this router's own ``callbacks``, a copy
        without it (LangChain adds those to every run). A reloaded policy is adopted first, so
        tracing is decided on the policy the request runs under."""
        refuse_cache(self.cache)  # set after construction (router.cache = ...)
        catalog = self._live_catalog()
        config, context, own = run_context.enter(catalog, self._with_own_fields(config), self.callbacks)
        runner = self if own is self.callbacks else self.model_copy(update={"callbacks": own})
        return config, context, runner

    def _with_own_fields(self, config: RunnableConfig | None) -> RunnableConfig:
        """``config`` with the router's own ``tags``/``metadata`` fields added (its metadata wins,
        as in the run LangChain records), so the policy's rules see what tracers see."""
        return run_context.with_fields(config, self.tags, self.metadata)

    @staticmethod
    def _entered(run_id: Any) -> bool:
        """Whether this ``generate``/``agenerate`` belongs to a run an entry point already entered."""
        request = CURRENT.get()
        return request is not None and run_id is not None and request.run_id == run_id

    def _request(self, run_manager: Any) -> Request:
        request = CURRENT.get()
        run_id = getattr(run_manager, "run_id", None)
        if request is None:
            return Request(ensure_config(), run_id or uuid4())  # _generate called directly
        if run_id is not None and request.run_id != run_id:
            # generate() with several prompts: one run each, all under the config it entered with
            return Request(request.config, run_id, request.usage_handlers, request.catalog, request.private)
        return request

    def _setup(self, messages: list[BaseMessage], stop: list[str] | None, run_manager: Any,
               kwargs: dict[str, Any], *, streaming: bool) -> tuple[Request, Plan, ChunkSink, Caller]:
        request = self._request(run_manager)
        tools = tuple(kwargs.pop("tools", None) or self.tools)
        tool_choice = kwargs.pop("tool_choice", self.tool_choice)
        params = self._params(kwargs, stop)
        plan = self.plan(messages, request.config, params=params, tools=tools, catalog=request.catalog)

        def callbacks(live: bool) -> Any:
            return child_manager(request.config, request.run_id, usage_handlers=request.usage_handlers,
                                 live=live, local=self.callbacks if isinstance(self.callbacks, list) else ())

        sink = ChunkSink(plan, streaming=streaming, callbacks_for=callbacks)
        caller = Caller(plan, request.config, stream=streaming, tools=tools, tool_choice=tool_choice,
                        guard=self.spend_guard, sink=sink, params=params.extra)
        return request, plan, sink, caller

    def _name_model(self, request: Request, result: CascadeResult) -> None:
        name_answering_model(request.run_id, result.decision.final_model, request.config.get("callbacks"),
                             self.callbacks)

    def _result(self, result: CascadeResult, request: Request, run_manager: Any) -> ChatResult:
        if run_manager is not None:
            name_answering_model(run_manager.run_id, result.decision.final_model, run_manager.handlers)
        return ChatResult(generations=[ChatGeneration(message=finish(result, tracing_mark(request.config)))])

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        request, plan, _, caller = self._setup(messages, stop, run_manager, kwargs, streaming=False)
        return self._result(drive(run_cascade(plan), caller), request, run_manager)

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        request, plan, _, caller = self._setup(messages, stop, run_manager, kwargs, streaming=False)
        return self._result(await adrive(run_cascade(plan), caller.acall), request, run_manager)

    def _closing(self, result: CascadeResult, request: Request, sink: ChunkSink) -> Iterator[ChatGenerationChunk]:
        final = finish(result, tracing_mark(request.config))
        for chunk in closing(result, final, streamed_live=sink.live_model == result.decision.final_model):
            yield ChatGenerationChunk(message=chunk)

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        request, plan, sink, caller = self._setup(messages, stop, run_manager, kwargs, streaming=True)
        for item in stream_cascade(run_cascade(plan), caller, sink):
            if isinstance(item, CascadeResult):
                self._name_model(request, item)
                yield from self._closing(item, request, sink)
            else:
                yield ChatGenerationChunk(message=clean(item))

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        request, plan, sink, caller = self._setup(messages, stop, run_manager, kwargs, streaming=True)
        async for item in astream_cascade(run_cascade(plan), caller.acall, sink):
            if isinstance(item, CascadeResult):
                self._name_model(request, item)
                for chunk in self._closing(item, request, sink):
                    yield chunk
            else:
                yield ChatGenerationChunk(message=clean(item))

    # ------------------------------------------------------------------ entry points

    def _convert_input(self, model_input: LanguageModelInput) -> PromptValue:
        # langchain-core raises a bare ValueError for None or a number; ours is typed (InputError).
        if not isinstance(model_input, (str, PromptValue, Sequence)):
            raise InputError(type(model_input).__name__)
        return super()._convert_input(model_input)

    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        config, context, runner = self._enter(config)
        return run_context.run_in(context, super(PolicyRouter, runner).invoke, input, config, stop=stop, **kwargs)

    async def ainvoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                      stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        config, context, runner = self._enter(config)
        return await run_context.task_in(context, super(PolicyRouter, runner).ainvoke(input, config, stop=stop,
                                                                                        **kwargs))

    def generate(self, messages: list[list[BaseMessage]], stop: list[str] | None = None, callbacks: Any = None,
                 *, tags: list[str] | None = None, metadata: dict[str, Any] | None = None,
                 run_name: str | None = None, run_id: Any = None, **kwargs: Any) -> LLMResult:
        """LangChain's ``generate`` (legacy chains call it), entered as :meth:`invoke` is: its
        ``tags``/``metadata`` drive the policy's rules, and privacy covers its tracing."""
        if self._entered(run_id):
            return super().generate(messages, stop, callbacks, tags=tags, metadata=metadata,
                                    run_name=run_name, run_id=run_id, **kwargs)
        config, context, runner = self._enter(run_context.generate_config(callbacks, tags, metadata, run_id))
        return run_context.run_in(context, super(PolicyRouter, runner).generate, messages, stop, config.get("callbacks"),
                           tags=tags, metadata=metadata, run_name=run_name, run_id=config["run_id"], **kwargs)

    async def agenerate(self, messages: list[list[BaseMessage]], stop: list[str] | None = None,
                        callbacks: Any = None, *, tags: list[str] | None = None,
                        metadata: dict[str, Any] | None = None, run_name: str | None = None,
                        run_id: Any = None, **kwargs: Any) -> LLMResult:
        """As :meth:`generate`."""
        if self._entered(run_id):
            return await super().agenerate(messages, stop, callbacks, tags=tags, metadata=metadata,
                                           run_name=run_name, run_id=run_id, **kwargs)
        config, context, runner = self._enter(run_context.generate_config(callbacks, tags, metadata, run_id))
        opening = super(PolicyRouter, runner).agenerate(messages, stop, config.get("callbacks"), tags=tags,
                                                        metadata=metadata, run_name=run_name,
                                                        run_id=config["run_id"], **kwargs)
        return await run_context.task_in(context, opening)

    def stream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> Iterator[AIMessageChunk]:
        """Stream the answer: the final rung live, other attempts only once their checks
        accepted them (a rejected attempt's tokens never reach any channel)."""
        config, context, runner = self._enter(config)
        yield from run_context.iterate_in(context, run_context.run_in(context, super(PolicyRouter, runner).stream,
                                                                      input, config, stop=stop, **kwargs))

    async def astream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                      stop: list[str] | None = None, **kwargs: Any) -> AsyncIterator[AIMessageChunk]:
        config, context, runner = self._enter(config)
        chunks = super(PolicyRouter, runner).astream(input, config, stop=stop, **kwargs)
        async for chunk in run_context.aiterate_in(context, chunks):
            yield chunk

    def stream_events(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                      version: Any = "v2", **kwargs: Any) -> Any:
        """v1/v2 events come from :meth:`stream`; the v3 ``ChatModelStream`` is pumped in this
        request's context, so its policy overrides, nesting and filtering hold as for ``stream``."""
        if version != "v3":
            return super().stream_events(input, config, version=version, **kwargs)
        config, context, runner = self._enter(config)
        stream = run_context.run_in(context, super(PolicyRouter, runner).stream_events, input, config,
                                    version="v3", **kwargs)
        return run_context.bind_stream(stream, context)

    def astream_events(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                       version: Any = "v2", **kwargs: Any) -> Any:
        """As :meth:`stream_events`: v3 streams run in this request's context."""
        if version != "v3":
            return super().astream_events(input, config, version=version, **kwargs)
        config, context, runner = self._enter(config)
        opening = super(PolicyRouter, runner).astream_events

        async def opened() -> Any:
            stream = await run_context.task_in(context, opening(input, config, version="v3", **kwargs))
            return run_context.abind_stream(stream, context)

        return opened()

    def guard(self, chain: Runnable[Any, Any]) -> PolicyBoundary:
        """``chain`` inside this router's privacy boundary: a request its policy makes private
        (``configurable``, ``metadata``, ``tags`` through the rules) runs every run of the chain
        away from remote tracers and instrumentors (:mod:`router.langchain.boundary`).

        Example:
            >>> chain = router.guard(prompt | router | StrOutputParser())
        """
        return PolicyBoundary(chain, self)

    # ------------------------------------------------------------------ tools

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None,
                   **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        """Offer ``tools`` to every candidate (a binding, as with any chat model); candidates
        without tool support are excluded."""
        return structured.bind_tools(self, tools, tool_choice=tool_choice, **kwargs)

    def with_structured_output(self, schema: Any, *, include_raw: bool = False,
                               **kwargs: Any) -> Runnable[LanguageModelInput, Any]:
        """Answer as ``schema`` (pydantic class, TypedDict or JSON schema) via a forced tool call.

        With ``include_raw=True`` the result is ``{"raw": AIMessage, "parsed": ..., "parsing_error": ...}``
        (as with LangChain chat models), and ``raw.response_metadata["routing"]`` is the record.
        The parser runs as a run of its own (with the answer as its input), so the whole is
        :meth:`guard`-ed: a private request's parser run reaches no remote tracer either.
        """
        return self.guard(structured.structured_output(self, schema, include_raw=include_raw))

