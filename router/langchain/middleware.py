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
  runs with it on too (kept across turns by the agent's checkpointer). Ratchets only tighten.

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
from typing import Any, NotRequired

from langchain.agents.middleware.types import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
)
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config, var_child_runnable_config
from langgraph.types import Command
from pydantic import BaseModel

from router.errors import RouterError
from router.langchain.policy_router import PolicyRouter
from router.policy.policy_file import Policy

RATCHETS = ("privacy", "offline")
_SCALARS = (str, int, float, bool)


class PolicyState(AgentState):
    """The agent state, plus the policy switches turned on earlier in this thread."""

    policy_ratchets: NotRequired[dict[str, bool]]


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
        found = _scalar_fields(getattr(request.runtime, "context", None))
        state = request.state or {}
        found.update({k: state[k] for k in self.state_keys if isinstance(state.get(k), _SCALARS)})
        return found

    def ratchets(self, request: ModelRequest[Any]) -> dict[str, bool]:
        """Switches an earlier call of this thread turned on."""
        kept = (request.state or {}).get("policy_ratchets") or {}
        return {k: True for k in RATCHETS if kept.get(k) is True} if self.sticky else {}

    def _router(self, request: ModelRequest[Any]) -> PolicyRouter:
        if self.router is not None:
            return self.router
        if isinstance(request.model, PolicyRouter):
            return request.model
        raise PolicyMiddlewareError("PolicyMiddleware needs a router, a policy or a policy file, "
                                    f"or create_agent(model=<PolicyRouter>); got {type(request.model).__name__}")

    def _config(self, request: ModelRequest[Any]) -> RunnableConfig:
        ambient = ensure_config()
        configurable = {**(ambient.get("configurable") or {}), **self.ratchets(request)}
        return {**ambient, "metadata": {**(ambient.get("metadata") or {}), **self.metadata(request)},
                "configurable": configurable}

    @contextmanager
    def _under_policy(self, request: ModelRequest[Any]) -> Iterator[ModelRequest[Any]]:
        """The request answered by the router, with this call's metadata and ratchets in the
        config that the router's run inherits (create_agent invokes its model without one)."""
        token = var_child_runnable_config.set(self._config(request))
        try:
            yield request.override(model=self._router(request))  # type: ignore[arg-type]
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
