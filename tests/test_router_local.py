"""The router end to end on the real bundled llama.cpp model: record, escalation, ceilings,
LangChain citizenship (LCEL, stream, async, batch, callbacks, tools)."""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler, get_usage_metadata_callback
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tracers.base import BaseTracer
from langchain_core.tracers.schemas import Run
from pydantic import BaseModel

from router import PolicyRouter, RoutingError, loads_policy

QUESTION = "What is the capital of France?"


@pytest.fixture
def router(local_policy_text: str) -> PolicyRouter:
    return PolicyRouter(policy=loads_policy(local_policy_text, "test.yaml"))


def test_bundled_model_answers_with_usage_and_logprobs(router: PolicyRouter):
    msg = router.invoke(QUESTION)
    assert isinstance(msg, AIMessage)
    assert "paris" in str(msg.content).lower()
    routing = msg.response_metadata["routing"]
    assert routing["status"] == "accepted" and routing["final_model"] == "gemma"
    attempt = routing["attempts"][0]
    assert attempt["input_tokens"] > 5 and attempt["output_tokens"] >= 1
    assert attempt["mean_logprob"] is not None and attempt["mean_logprob"] <= 0
    assert attempt["checks"][0]["check"] == "logprob" and attempt["checks"][0]["passed"]
    assert msg.usage_metadata["input_tokens"] == attempt["input_tokens"]
    assert msg.usage_metadata["output_tokens"] == attempt["output_tokens"]
    assert routing["total_cost_usd"] == 0.0


def test_when_every_rung_fails_the_best_answer_is_returned_as_exhausted(local_policy_text: str):
    text = local_policy_text.replace("    - check: min_length\n      chars: 1\n",
                                     "    - check: regex\n      pattern: 'Paris'\n")
    router = PolicyRouter(policy=loads_policy(text))
    # Ask something whose answer cannot contain "Paris": both fail, best is returned.
    msg = router.invoke("What is the capital of Japan?")
    routing = msg.response_metadata["routing"]
    assert [a["model"] for a in routing["attempts"]] == ["gemma", "gemma-strong"]
    assert routing["attempts"][0]["accepted"] is False
    assert routing["attempts"][0]["checks"][-1] == {"check": "regex", "passed": False, "score": None,
                                                    "detail": "no match"}
    assert routing["status"] == "exhausted"
    assert routing["final_model"] in ("gemma", "gemma-strong")


ESCALATION_POLICY = """
version: 1
name: escalation
models:
  gemma-chat:          # the base model through a chat template: junk, fails the check
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    chat_format: gemma
    local: true
  gemma-qa:            # the same model prompted completion-style: answers
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    chat_format: qa
    local: true
    tier: standard
policy:
  max_output_tokens: 12
  cascade: [gemma-chat, gemma-qa]
  confidence:
    - check: regex
      pattern: '(?i)paris'
"""


def test_escalation_accepts_second_rung_when_first_fails():
    router = PolicyRouter(policy=loads_policy(ESCALATION_POLICY))
    msg = router.invoke(QUESTION)
    routing = msg.response_metadata["routing"]
    first, second = routing["attempts"]
    assert first["model"] == "gemma-chat" and first["accepted"] is False
    # Its junk runs to max_output_tokens: rejected as truncated before its check runs.
    assert first["truncated"] is True and first["finish_reason"] == "length"
    assert first["checks"] == [{"check": "complete", "passed": False, "score": None,
                                "detail": "finish_reason length: cut off at the token limit"}]
    assert second["model"] == "gemma-qa" and second["accepted"] is True
    assert routing["status"] == "accepted" and routing["final_model"] == "gemma-qa"
    assert "paris" in str(msg.content).lower()


def test_ceiling_stops_escalation_before_a_call_that_could_break_it(local_policy_text: str):
    text = local_policy_text.replace("cost_ceiling: 0.05", "cost_ceiling: 0.00001").replace(
        "    - check: min_length\n      chars: 1\n", "    - check: regex\n      pattern: 'zzzz'\n")
    router = PolicyRouter(policy=loads_policy(text))
    decision = router.explain(QUESTION)
    # gemma-strong: input tokens × $1/M + 16 × $2/M > $0.00001 → excluded up front
    assert decision.candidates == ["gemma"]
    assert decision.excluded[0].model == "gemma-strong"
    assert decision.excluded[0].reason.startswith("over ceiling: worst case $0.0000")
    msg = router.invoke(QUESTION)
    routing = msg.response_metadata["routing"]
    assert [a["model"] for a in routing["attempts"]] == ["gemma"]
    assert routing["status"] == "exhausted"
    assert routing["total_cost_usd"] <= 0.00001


def test_ceiling_is_rechecked_after_spending(local_policy_text: str):
    # Both rungs fit alone, but after the first rung spends, the second no longer fits.
    text = local_policy_text.replace(
        "  gemma:\n    provider: llamacpp\n    gguf: bundled:gemma-3-270m\n    chat_format: qa\n"
        "    tier: basic\n    local: true\n    context_window: 2048\n",
        "  gemma:\n    provider: llamacpp\n    gguf: bundled:gemma-3-270m\n    chat_format: qa\n"
        "    tier: basic\n    local: true\n    context_window: 2048\n    price: {input: 1.0, output: 2.0}\n",
    ).replace("cost_ceiling: 0.05", "cost_ceiling: 0.00006").replace(
        "    - check: min_length\n      chars: 1\n", "    - check: regex\n      pattern: 'zzzz'\n")
    router = PolicyRouter(policy=loads_policy(text))
    assert router.explain(QUESTION).candidates == ["gemma", "gemma-strong"]
    routing = router.invoke(QUESTION).response_metadata["routing"]
    assert [a["model"] for a in routing["attempts"]] == ["gemma"]
    late = [e for e in routing["excluded"] if e["model"] == "gemma-strong"]
    assert late and "left after 1 attempt" in late[0]["reason"]
    assert routing["total_cost_usd"] <= 0.00006


def test_on_exhausted_raise_carries_the_record(local_policy_text: str):
    text = local_policy_text.replace("    - check: min_length\n      chars: 1\n",
                                     "    - check: regex\n      pattern: 'zzzz'\n") + "  on_exhausted: raise\n"
    router = PolicyRouter(policy=loads_policy(text))
    with pytest.raises(RoutingError) as info:
        router.invoke(QUESTION)
    decision = info.value.decision
    assert decision.status == "exhausted"
    assert [a.model for a in decision.attempts] == ["gemma", "gemma-strong"]


def test_no_eligible_model_raises_with_reasons(local_policy_text: str):
    router = PolicyRouter(policy=loads_policy(local_policy_text))
    with pytest.raises(RoutingError, match="no eligible model") as info:
        router.invoke(QUESTION, config={"configurable": {"quality_tier": "premium"}})
    assert all("below tier floor" in e.reason for e in info.value.decision.excluded)


def test_lcel_chain(router: PolicyRouter):
    chain = ChatPromptTemplate.from_template("{q}") | router | StrOutputParser()
    assert "paris" in chain.invoke({"q": QUESTION}).lower()


def test_stream_emits_only_the_accepted_answer_then_the_record(router: PolicyRouter):
    chunks = list(router.stream(QUESTION))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    text = "".join(str(c.content) for c in chunks)
    assert "paris" in text.lower()
    assert "routing" in chunks[-1].response_metadata
    total = chunks[0]
    for c in chunks[1:]:
        total += c
    assert total.usage_metadata and total.usage_metadata["output_tokens"] >= 1
    assert total.response_metadata["routing"]["final_model"] == "gemma"


def test_stream_never_emits_a_rejected_answer():
    router = PolicyRouter(policy=loads_policy(ESCALATION_POLICY))
    chunks = list(router.stream(QUESTION))
    routing = chunks[-1].response_metadata["routing"]
    assert [a["accepted"] for a in routing["attempts"]] == [False, True]
    streamed = "".join(str(c.content) for c in chunks)
    assert streamed == str(router.invoke(QUESTION).content)  # only the accepted rung's text


def test_stream_through_lcel(router: PolicyRouter):
    chain = ChatPromptTemplate.from_template("{q}") | router | StrOutputParser()
    assert "paris" in "".join(chain.stream({"q": QUESTION})).lower()


async def test_ainvoke_and_astream(router: PolicyRouter):
    msg = await router.ainvoke(QUESTION)
    assert "paris" in str(msg.content).lower()
    chunks = [c async for c in router.astream(QUESTION)]
    assert "paris" in "".join(str(c.content) for c in chunks).lower()
    assert chunks[-1].response_metadata["routing"]["status"] == "accepted"


def test_batch_and_abatch(router: PolicyRouter):
    questions = [QUESTION, "What is the capital of Italy?", "What is the capital of Spain?"]
    answers = router.batch(questions)
    assert [a.response_metadata["routing"]["status"] for a in answers] == ["accepted"] * 3
    assert "paris" in str(answers[0].content).lower()
    again = asyncio.run(router.abatch(questions))
    assert [str(a.content) for a in again] == [str(a.content) for a in answers]


def test_usage_callback_counts_each_model_call_once(local_policy_text: str):
    text = local_policy_text.replace("    - check: min_length\n      chars: 1\n",
                                     "    - check: regex\n      pattern: 'zzzz'\n")
    router = PolicyRouter(policy=loads_policy(text))
    with get_usage_metadata_callback() as cb:
        msg = router.invoke(QUESTION)
    attempts = msg.response_metadata["routing"]["attempts"]
    assert len(attempts) == 2
    # The callback keys usage by the model name each chat model reports: the catalog name.
    assert {name: (u["input_tokens"], u["output_tokens"]) for name, u in cb.usage_metadata.items()} == {
        a["model"]: (a["input_tokens"], a["output_tokens"]) for a in attempts}


class _RunTree(BaseTracer):
    """Chat model runs by parent, as a tracer (LangSmith's kind of handler) records them: the
    router is a chat model whose run is the root here."""

    router_local_tracer = True  # keeps runs in memory: kept for local-only requests too

    def __init__(self) -> None:
        super().__init__()
        self.chains: dict[UUID, UUID | None] = {}
        self.models: dict[UUID, UUID | None] = {}

    def _persist_run(self, run: Run) -> None:
        pass

    def _on_chain_start(self, run: Run) -> None:
        self.chains[run.id] = run.parent_run_id

    def _on_llm_start(self, run: Run) -> None:  # a BaseTracer sees chat model runs start here
        self.models[run.id] = run.parent_run_id

    def router_run_and_children(self) -> tuple[UUID, list[UUID | None]]:
        (root,) = [run for run, parent in self.models.items() if parent is None]
        return root, [parent for run, parent in self.models.items() if run != root]


class _ModelStarts(BaseCallbackHandler):
    def __init__(self) -> None:
        self.parents: list[UUID | None] = []

    def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None, **kw):
        self.parents.append(parent_run_id)


def test_child_model_runs_nest_under_the_router_run(router: PolicyRouter):
    tree = _RunTree()
    router.invoke(QUESTION, config={"callbacks": [tree], "run_name": "policy-router"})
    assert tree.chains == {}
    router_run, children = tree.router_run_and_children()
    assert children == [router_run]


def test_streaming_child_runs_nest_too(router: PolicyRouter):
    tree = _RunTree()
    list(router.stream(QUESTION, config={"callbacks": [tree]}))
    router_run, children = tree.router_run_and_children()
    assert children == [router_run]


@pytest.mark.parametrize("entry", ["invoke", "stream"])
def test_a_plain_handler_sees_the_router_as_one_chat_model(router: PolicyRouter, entry: str):
    starts, tree = _ModelStarts(), _RunTree()
    config = {"callbacks": [starts, tree]}
    if entry == "invoke":
        router.invoke(QUESTION, config=config)
    else:
        list(router.stream(QUESTION, config=config))
    assert starts.parents == [None]  # one chat model run, as LangChain's standard suites expect
    assert len(tree.models) == 2  # while the tracer beside it saw the child run too


class Capital(BaseModel):
    """The capital city of a country."""

    country: str
    city: str


def test_with_structured_output_through_the_router(router: PolicyRouter):
    structured = router.with_structured_output(Capital)
    result = structured.invoke("France's capital city is Paris. Fill in the country and the city.")
    assert isinstance(result, Capital)
    assert result.country and result.city


def test_bind_tools_returns_tool_calls_and_record(router: PolicyRouter):
    msg = router.bind_tools([Capital], tool_choice="any").invoke("The capital of France is Paris.")
    assert msg.tool_calls and msg.tool_calls[0]["name"] == "Capital"
    assert set(msg.tool_calls[0]["args"]) == {"country", "city"}
    assert msg.response_metadata["routing"]["status"] in ("accepted", "exhausted")


def test_explain_calls_no_model(router: PolicyRouter):
    tree = _RunTree()
    decision = router.explain(QUESTION, config={"callbacks": [tree]})
    assert decision.status == "explained" and decision.attempts == []
    assert decision.candidates == ["gemma", "gemma-strong"]
    assert tree.models == {}
    assert "candidates: gemma, gemma-strong" in decision.summary()
    assert "<table>" in decision._repr_html_()


async def test_many_concurrent_async_streams_share_one_model_without_deadlock(router: PolicyRouter):
    questions = [f"What is the capital of {c}?" for c in
                 ["France", "Italy", "Spain", "Germany", "Japan", "Peru", "Chile", "Kenya", "Egypt", "Cuba",
                  ]]

    async def one(q: str) -> str:
        return "".join([str(c.content) async for c in router.astream(q)])

    answers = await asyncio.wait_for(asyncio.gather(*(one(q) for q in questions)), timeout=240)
    assert len(answers) == len(questions)
    assert "paris" in answers[0].lower()


def test_with_structured_output_include_raw_keeps_the_record(router: PolicyRouter):
    out = router.with_structured_output(Capital, include_raw=True).invoke("The capital of Peru is Lima.")
    assert isinstance(out["parsed"], Capital) and out["parsing_error"] is None
    assert out["raw"].response_metadata["routing"]["final_model"] in ("gemma", "gemma-strong")


def test_a_request_never_pays_twice_for_the_same_answer():
    """Rung 1's agreement check asks gemma-qa; when rung 1 fails, rung 2 *is* gemma-qa with the
    same prompt and settings: it is answered from what the request already bought, at no cost."""
    text = ESCALATION_POLICY.replace("    tier: standard\n", "    tier: standard\n    price: {input: 1.0, output: 2.0}\n")
    # Rung 1 must end its answer (through the gemma template its junk runs to the token limit and
    # is rejected as truncated before any check); through chatml it stops, and disagrees.
    text = text.replace("    chat_format: gemma\n", "    chat_format: chatml\n")
    text = text.replace("  cost_ceiling: 0.05\n", "").replace(
        "  confidence:\n    - check: regex\n      pattern: '(?i)paris'\n",
        "  confidence:\n    - check: agreement\n      models: [gemma-qa]\n      extract: text\n"
        "      apply_to: [gemma-chat]\n")
    router = PolicyRouter(policy=loads_policy(text))
    routing = router.invoke(QUESTION).response_metadata["routing"]
    first, second = routing["attempts"]
    consulted = first["checks"][0]["calls"]
    assert first["accepted"] is False and consulted[0]["model"] == "gemma-qa" and consulted[0]["cost_usd"] > 0
    assert second["model"] == "gemma-qa" and second["reused"] is True and second["cost_usd"] == 0.0
    assert routing["total_cost_usd"] == pytest.approx(consulted[0]["cost_usd"])
    assert routing["final_model"] == "gemma-qa"


def test_a_chain_around_structured_output_sees_one_chat_model_run(router: PolicyRouter):
    """Inside a chain (here the parser sequence of with_structured_output, under a prompt) the
    chain's handlers see the router's run only: the child runs' RunnableBinding must not merge the
    chain's callbacks back in from the context (LangChain's standard structured-output tests)."""
    starts = _ModelStarts()
    chain = ChatPromptTemplate.from_template("{q}") | router.with_structured_output(Capital)
    chain.invoke({"q": "France's capital city is Paris. Fill in the country and the city."},
                 config={"callbacks": [starts]})
    assert len(starts.parents) == 1 and starts.parents[0] is not None  # under the chain's run
