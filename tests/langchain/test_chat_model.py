"""PolicyRouter as a chat model: standard parameters on every rung, LangSmith params, config
specs, pickle / deepcopy / dumpd round trips, repr. The calls run on the bundled local model."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.language_models import BaseChatModel
from langchain_core.load import dumpd, loads

from router import Decision, PolicyRouter, RoutingError, loads_policy

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def router(local_policy_text_module: str) -> PolicyRouter:
    return PolicyRouter(policy=loads_policy(local_policy_text_module))


@pytest.fixture(scope="module")
def local_policy_text_module() -> str:
    from tests.conftest import LOCAL_POLICY

    return LOCAL_POLICY


def test_is_a_chat_model_with_langsmith_params(router: PolicyRouter):
    assert isinstance(router, BaseChatModel)
    params = router._get_ls_params(stop=["\n"], max_tokens=5, temperature=0.3)
    assert params["ls_provider"] == "policy-router" and params["ls_model_type"] == "chat"
    assert params["ls_model_name"] == router.policy.policy.cascade[0]
    assert (params["ls_max_tokens"], params["ls_temperature"], params["ls_stop"]) == (5, 0.3, ["\n"])
    assert router._get_ls_params(model="gemma-strong")["ls_model_name"] == "gemma-strong"


def record(call: Callable[[], Any]) -> Decision:
    """The decision of ``call``: on its answer, or on the RoutingError of a request whose answers
    were all cut off (a cut-off answer is no answer, issue 25)."""
    try:
        return Decision.from_message(call())
    except RoutingError as err:
        return err.decision


def test_max_tokens_reaches_the_model_and_the_ceiling_math(router: PolicyRouter):
    short = record(lambda: router.invoke(QUESTION, max_tokens=1))
    assert short.attempts[0].output_tokens == 1
    # The ceiling math reserves this request's max_tokens (gemma-strong: $2 per 1M output tokens).
    worst = [record(lambda n=n: router.invoke(QUESTION, model="gemma-strong", max_tokens=n)).estimated_cost_usd
             for n in (1, 4)]
    assert worst[1] - worst[0] == pytest.approx(3 * 2.0 / 1e6)
    bound = record(lambda: router.bind(max_tokens=2).invoke(QUESTION))
    assert all(a.output_tokens <= 2 for a in bound.attempts)
    # Never above the policy's own limit.
    assert router.plan(QUESTION, params=router._params({"max_tokens": 10**6})).settings.max_output_tokens \
        == router.policy.policy.max_output_tokens


def test_stop_and_temperature_apply_to_every_rung(router: PolicyRouter):
    free = record(lambda: router.invoke("Count: 1, 2, 3,", max_tokens=12))
    stopped = router.invoke("Count: 1, 2, 3,", max_tokens=12, stop=[","])
    assert free.attempts[0].finish_reason == "length"  # counted on to the limit: cut off, no answer
    assert "," not in str(stopped.content) and str(stopped.content).strip()
    assert router.bind(stop=[","]).invoke("Count: 1, 2, 3,", max_tokens=12).content == stopped.content
    assert PolicyRouter(policy=router.policy, stop=[","]).invoke("Count: 1, 2, 3,", max_tokens=12).content \
        == stopped.content
    assert router.plan(QUESTION, params=router._params({"temperature": 0.7})).settings.temperature == 0.7


def test_unknown_kwarg_is_a_type_error(router: PolicyRouter):
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        router.invoke(QUESTION, max_tokenz=3)


def test_pinned_model_is_the_only_candidate(router: PolicyRouter):
    msg = router.invoke(QUESTION, model="gemma-strong", max_tokens=4)
    record = msg.response_metadata["routing"]
    assert record["candidates"] == ["gemma-strong"] and record["final_model"] == "gemma-strong"
    assert msg.response_metadata["model_name"] == "gemma-strong"


def test_usage_counted_once_with_the_answering_model_name(router: PolicyRouter):
    with get_usage_metadata_callback() as cb:
        msg = router.invoke(QUESTION, max_tokens=4)
    assert cb.usage_metadata == {msg.response_metadata["model_name"]: msg.usage_metadata}


def test_config_specs_advertise_the_override_keys(router: PolicyRouter):
    ids = {spec.id for spec in router.config_specs}
    assert {"privacy", "offline", "cost_ceiling", "quality_tier", "max_output_tokens"} <= ids


def test_pickle_deepcopy_and_dumpd_round_trip(router: PolicyRouter):
    tuned = PolicyRouter(policy=router.policy, max_tokens=3, stop=["\n"])
    for again in (pickle.loads(pickle.dumps(tuned)), copy.deepcopy(tuned)):
        assert isinstance(again, PolicyRouter) and again is not tuned
        assert again.policy == tuned.policy and (again.max_tokens, again.stop) == (3, ["\n"])
    text = json.dumps(dumpd(tuned))
    loaded = loads(text, valid_namespaces=["router"], allowed_objects=[PolicyRouter])
    assert loaded.policy.model_dump(exclude={"models"}) == tuned.policy.model_dump(exclude={"models"})
    assert dict(loaded.policy.models) == dict(tuned.policy.models) and loaded.max_tokens == 3
    bound = pickle.loads(pickle.dumps(tuned.bind(max_tokens=2)))
    assert bound.kwargs == {"max_tokens": 2} and bound.bound.policy == tuned.policy
    assert pickle.loads(pickle.dumps(tuned)).invoke(QUESTION).content == tuned.invoke(QUESTION).content


def test_repr_is_short(router: PolicyRouter):
    text = repr(PolicyRouter(policy=router.policy, max_tokens=3))
    assert text.startswith("PolicyRouter(policy=") and "max_tokens=3" in text and len(text) < 200


def test_bind_tools_returns_a_binding(router: PolicyRouter):
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    bound = router.bind_tools([add], tool_choice="add")
    assert bound.kwargs["tool_choice"] == "add" and bound.kwargs["tools"][0]["function"]["name"] == "add"


@pytest.mark.parametrize("entry", ["invoke", "stream", "ainvoke", "astream"])
def test_tracers_see_the_answering_model_as_ls_model_name(entry: str):
    """``ls_model_name`` is fixed before the call (the offline policy's first rung, ``tinyllama``,
    which is not even installed here); tracers' record of the run names the model that answered
    by the time the run ends."""
    import asyncio

    from langchain_core.tracers.base import BaseTracer

    class Names(BaseTracer):
        router_local_tracer = True  # keeps runs here: kept for the offline policy's local-only requests

        def __init__(self) -> None:
            super().__init__()
            self.at_start: list[str] = []
            self.at_end: list[str] = []

        def _persist_run(self, run) -> None:
            pass

        def _on_llm_start(self, run) -> None:
            if run.parent_run_id is None:
                self.at_start.append(run.extra["metadata"]["ls_model_name"])

        def _on_llm_end(self, run) -> None:
            if run.parent_run_id is None:
                self.at_end.append(run.extra["metadata"]["ls_model_name"])

    router = PolicyRouter(policy=PolicyRouter.from_policy("offline").policy, max_tokens=8)
    names = Names()
    config = {"callbacks": [names]}
    if entry == "invoke":
        message = router.invoke(QUESTION, config=config)
    elif entry == "ainvoke":
        message = asyncio.run(router.ainvoke(QUESTION, config=config))
    elif entry == "stream":
        message = list(router.stream(QUESTION, config=config))[-1]
    else:
        async def chunks():
            return [c async for c in router.astream(QUESTION, config=config)]
        message = asyncio.run(chunks())[-1]
    final = message.response_metadata["routing"]["final_model"]
    assert names.at_start == ["tinyllama"] and final != "tinyllama"
    assert names.at_end == [final]
