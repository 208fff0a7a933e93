"""``PolicyMiddleware``: every model call of a ``create_agent`` agent, under a cost policy.

LangChain's ``ModelFallbackMiddleware`` switches model only when a call *raises*;
``ModelRouterMiddleware`` picks one model per run from a classifier's answer. This middleware
answers each model call of the agent loop with a :class:`PolicyRouter`: the cascade (cheapest
eligible model first, escalating when the answer fails its confidence checks), the ceiling,
privacy and offline, the period budgets, and the decision record on the returned message
(``response_metadata["routing"]``).

What the policy sees of the agent:

- **metadata** for ``rules`` and the ``per:`` key of ``budgets``: the scalar fields of the
  runtime ``context`` (a dataclass, pydantic model, TypedDict or mapping), the ``state_keys``
  of the agent state, over the run's own metadata (LangGraph puts ``thread_id`` there, so a
  budget ``per: thread_id`` caps each conversation);
- **ratchets that last for the thread**: once a call ran with ``privacy`` (or ``offline: true``)
  on, whatever turned it on (a rule on ``data_class: pii``, a ``configurable`` override), the
  middleware records it in the state key ``policy_ratchets`` and every later call of the thread
  runs with it on too (kept across turns by the agent's checkpointer). Ratchets only tighten:
  they are recorded *before* the call (so a call that fails still leaves them on for the thread,
  whose history now holds the private message), and the key's channel only adds switches, so a
  turn's input (``{"policy_ratchets": {}}``, or LangGraph's reducer bypass ``Overwrite({})``) cannot
  turn them off (see :class:`RatchetChannel`).

**Only the router answers** (default deny). Below ``PolicyMiddleware`` (later in the
``middleware=`` list, i.e. inside its ``wrap_model_call``) no other model may run: a middleware
that swaps the model — ``ModelFallbackMiddleware``, a ``request.override(model=ChatOpenAI(...))``,
an ``LLMToolSelectorMiddleware`` calling its own model — gets :class:`~router.errors.PolicyBypassError`
when that model starts, before it sends anything (a callback on the call's config refuses every
chat-model/LLM run that is neither the router's nor inside it). Put fallbacks in the policy's
cascade instead. Middlewares placed *above* ``PolicyMiddleware`` (earlier in the list), and
``before_model`` hooks that call models (summarization), run outside the policy: give them a
``PolicyRouter`` as their model, or put ``PolicyMiddleware`` first.

Tools, ``tool_choice`` and ``response_format`` are the agent's own: the call goes through
``create_agent``'s handler with the router as the model, so structured output works as with
any chat model. The agent's own ``model`` is never called; pass the router itself (or any
chat model as a placeholder).

Example:
    >>> from langchain.agents import create_agent
    >>> router = PolicyRouter.from_yaml("policies/default.yaml")
    >>> agent = create_agent(model=router, tools=[get_weather], middleware=[PolicyMiddleware(router)],
    ...                      context_schema=Context)
    >>> out = agent.invoke({"messages": [("user", "Weather in Paris?")]},
    ...                    context=Context(user="ann", data_class="pii"),
    ...                    config={"configurable": {"thread_id": "t1"}})
    >>> out["messages"][-1].response_metadata["routing"]["effective"]["privacy"]
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, NotRequired
from uuid import UUID

from langchain.agents.middleware.types import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
    OmitFromInput,
)
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config, var_child_runnable_config
from langgraph.channels.binop import BinaryOperatorAggregate
from langgraph.types import Command, Overwrite
from pydantic import BaseModel

from router.errors import PolicyBypassError, PolicyError, RouterError
from router.langchain.policy_router import PolicyRouter
from router.policy.overrides import effective_settings, policy_overrides
from router.policy.policy_file import Policy

RATCHETS = ("privacy", "offline")
_SCALARS = (str, int, float, bool)
_OVERWRITE = "__overwrite__"  # LangGraph's reducer-bypass key (langgraph.types.Overwrite's dict form)
_MAX_UNWRAP = 64


def tighten(kept: Any, update: Any) -> dict[str, bool]:
    """The reducer of ``policy_ratchets``: a switch once on stays on; an update can only add."""
    def on(value: Any) -> set[str]:
        return {k for k in RATCHETS if isinstance(value, Mapping) and value.get(k) is True}

    return dict.fromkeys(sorted(on(kept) | on(update)), True)


class RatchetChannel(BinaryOperatorAggregate):
    """The channel of ``policy_ratchets``: every write goes through :func:`tighten`.

    LangGraph lets a write bypass a key's reducer (``Overwrite({})``, ``{"__overwrite__": {}}``
    or its JSON form ``{"type": "__overwrite__", "value": {}}``); here the bypass is unwrapped
    and its value only *added*, like any other write, so no input, ``Command(update=...)`` or
    tool can clear a switch.
    """

    def __init__(self, typ: Any = dict, operator: Callable[[Any, Any], Any] = tighten) -> None:
        super().__init__(typ, operator)

    def update(self, values: Sequence[Any]) -> bool:
        return super().update([_bypassed(value) for value in values])


def _bypassed(value: Any) -> Any:
    """The value an ``Overwrite`` (any of its forms, nested any number of times) carries, else
    ``value`` itself: what is left is never a bypass form (nor, past a bound, a cycle of them)."""
    for _ in range(_MAX_UNWRAP):
        if isinstance(value, Overwrite):
            value = value.value
        elif isinstance(value, Mapping) and len(value) == 1 and _OVERWRITE in value:
            value = value[_OVERWRITE]
        elif isinstance(value, Mapping) and value.get("type") == _OVERWRITE and "value" in value:
            value = value["value"]
        else:
            return value
    return {}  # an Overwrite of itself: adds nothing


class PolicyState(AgentState):
    """The agent state, plus the policy switches turned on earlier in this thread. The key is
    not part of the agent's input schema (a turn's input cannot name it) and its channel only
    adds switches (see :class:`RatchetChannel`)."""

    policy_ratchets: NotRequired[Annotated[dict[str, bool], RatchetChannel(), OmitFromInput]]


class PolicyMiddlewareError(RouterError, TypeError):
    """The middleware was given no router (and the agent's model is not one)."""


class PolicyMiddleware(AgentMiddleware[PolicyState, Any, Any]):
    """Answer every model call of an agent with a :class:`PolicyRouter`.

    Args:
        router: the router, a loaded :class:`Policy`, or a policy file path. ``None``: the
            agent's own model, which must then be a ``PolicyRouter``.
        state_keys: agent-state keys passed to the policy as metadata (for ``rules`` and
            budgets' ``per:``), besides every scalar field of the runtime context.
        sticky: remember ``privacy`` / ``offline`` for the rest of the thread once on.
    """

    state_schema = PolicyState

    def __init__(self, router: PolicyRouter | Policy | str | None = None, *,
                 state_keys: Sequence[str] = ("data_class", "user"), sticky: bool = True) -> None:
        super().__init__()
        if isinstance(router, Policy):
            router = PolicyRouter(policy=router)
        elif isinstance(router, str):
            router = PolicyRouter.from_yaml(router)
        self.router = router
        self.state_keys = tuple(state_keys)
        self.sticky = sticky

    # ------------------------------------------------------------------ what the policy sees

    def metadata(self, request: ModelRequest[Any]) -> dict[str, Any]:
        """The metadata this call's rules and budgets match on."""
        return self._metadata(request.state, request.runtime)

    def _metadata(self, state: Any, runtime: Any) -> dict[str, Any]:
        found = _scalar_fields(getattr(runtime, "context", None))
        state = state or {}
        found.update({k: state[k] for k in self.state_keys if isinstance(state.get(k), _SCALARS)})
        return found

    def ratchets(self, request: ModelRequest[Any]) -> dict[str, bool]:
        """Switches an earlier call of this thread turned on."""
        return self._kept(request.state)

    def _kept(self, state: Any) -> dict[str, bool]:
        return tighten((state or {}).get("policy_ratchets"), None) if self.sticky else {}

    def _switched_on(self, state: Any, runtime: Any) -> dict[str, bool]:
        """The ratchets the coming call will run with (its rules, ``configurable``, the kept ones);
        ``{}`` without a router of the middleware's own (the agent's model is known only at the
        call) or when the request's overrides are invalid (the call raises that error itself)."""
        if self.router is None:
            return {}
        config = self._call_config(state, runtime)
        try:
            settings = effective_settings(self.router.policy, metadata=config.get("metadata"), tags=config.get("tags"),
                                          overrides=policy_overrides(config.get("configurable") or {})).settings
        except PolicyError:
            return {}
        return {k: True for k in RATCHETS if getattr(settings, k) is True}

    def _router(self, request: ModelRequest[Any]) -> PolicyRouter:
        if self.router is not None:
            return self.router
        if isinstance(request.model, PolicyRouter):
            return request.model
        raise PolicyMiddlewareError("PolicyMiddleware needs a router, a policy or a policy file, "
                                    f"or create_agent(model=<PolicyRouter>); got {type(request.model).__name__}")

    def _call_config(self, state: Any, runtime: Any) -> RunnableConfig:
        ambient = ensure_config()
        configurable = {**(ambient.get("configurable") or {}), **self._kept(state)}
        return {**ambient, "metadata": {**(ambient.get("metadata") or {}), **self._metadata(state, runtime)},
                "configurable": configurable}

    @contextmanager
    def _under_policy(self, request: ModelRequest[Any]) -> Iterator[ModelRequest[Any]]:
        """The request answered by the router, with this call's metadata and ratchets in the
        config that the router's run inherits (create_agent invokes its model without one), and
        a guard that refuses any other model started under it."""
        router = self._router(request)
        config = self._call_config(request.state, request.runtime)
        config["callbacks"] = _with_handler(config.get("callbacks"), OnlyTheRouter(router))
        token = var_child_runnable_config.set(config)
        try:
            yield request.override(model=router)  # type: ignore[arg-type]
        finally:
            var_child_runnable_config.reset(token)

    def _remember(self, request: ModelRequest[Any],
                  response: ModelResponse[Any] | AIMessage) -> ModelResponse[Any] | ExtendedModelResponse[Any]:
        if isinstance(response, AIMessage):
            response = ModelResponse(result=[response])
        if not self.sticky:
            return response
        effective = next((m.response_metadata.get("routing", {}).get("effective", {})
                          for m in response.result if isinstance(m, AIMessage)), {})
        now = {k: True for k in RATCHETS if effective.get(k) is True}
        kept = self.ratchets(request)
        if not now.keys() - kept.keys():
            return response
        return ExtendedModelResponse(model_response=response,
                                     command=Command(update={"policy_ratchets": {**kept, **now}}))

    # ------------------------------------------------------------------ hooks

    def before_model(self, state: PolicyState, runtime: Any) -> dict[str, Any] | None:
        """Record the ratchets this call will run with before it runs: the update is its own
        step, kept by the checkpointer even when the call then fails."""
        if not self.sticky:
            return None
        now = self._switched_on(state, runtime)
        return {"policy_ratchets": now} if now.keys() - self._kept(state).keys() else None

    async def abefore_model(self, state: PolicyState, runtime: Any) -> dict[str, Any] | None:
        return self.before_model(state, runtime)

    def wrap_model_call(self, request: ModelRequest[Any],
                        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
                        ) -> ModelResponse[Any] | ExtendedModelResponse[Any]:
        with self._under_policy(request) as routed:
            response = handler(routed)
        return self._remember(request, response)

    async def awrap_model_call(self, request: ModelRequest[Any],
                               handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
                               ) -> ModelResponse[Any] | ExtendedModelResponse[Any]:
        with self._under_policy(request) as routed:
            response = await handler(routed)
        return self._remember(request, response)


class OnlyTheRouter(BaseCallbackHandler):
    """Refuses, as it starts, every chat model or LLM run that is neither ``router``'s run nor
    inside one (its parent run is one already allowed). Raised errors propagate
    (``raise_error``) and the handler runs inline, before the model's request is sent."""

    raise_error = True
    run_inline = True

    def __init__(self, router: PolicyRouter) -> None:
        # What the router's run reports as its parameters: its type and its policy's name (a
        # router of another policy swapped in is refused too).
        self.router_params = {"_type": router._llm_type, "policy": router.policy.name}
        self.allowed: set[UUID] = set()

    def _start(self, serialized: Mapping[str, Any] | None, run_id: UUID, parent_run_id: UUID | None,
               invocation_params: Mapping[str, Any] | None) -> None:
        params = invocation_params or {}
        if parent_run_id in self.allowed or all(params.get(k) == v for k, v in self.router_params.items()):
            self.allowed.add(run_id)
            return
        names = (serialized or {}).get("id") or ["a model"]
        raise PolicyBypassError(str(names[-1]))

    def on_chat_model_start(self, serialized: dict[str, Any], messages: Any, *, run_id: UUID,
                            parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._start(serialized, run_id, parent_run_id, kwargs.get("invocation_params"))

    def on_llm_start(self, serialized: dict[str, Any], prompts: Any, *, run_id: UUID,
                     parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._start(serialized, run_id, parent_run_id, kwargs.get("invocation_params"))

    def on_chain_start(self, serialized: dict[str, Any] | None, inputs: Any, *, run_id: UUID,
                       parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        if parent_run_id in self.allowed:  # the router's own chains (checks, structured output)
            self.allowed.add(run_id)


def _with_handler(callbacks: Any, handler: BaseCallbackHandler) -> Any:
    """``callbacks`` (None, a list or a manager) plus ``handler``, inherited by child runs."""
    if callbacks is None:
        return [handler]
    if isinstance(callbacks, list):
        return [*callbacks, handler]
    manager = callbacks.copy()
    manager.add_handler(handler, inherit=True)
    return manager


def _scalar_fields(context: Any) -> dict[str, Any]:
    if context is None:
        return {}
    if dataclasses.is_dataclass(context) and not isinstance(context, type):
        items: Mapping[str, Any] = {f.name: getattr(context, f.name) for f in dataclasses.fields(context)}
    elif isinstance(context, BaseModel):
        items = dict(context)
    elif isinstance(context, Mapping):
        items = context
    else:
        return {}
    return {k: v for k, v in items.items() if isinstance(v, _SCALARS)}
