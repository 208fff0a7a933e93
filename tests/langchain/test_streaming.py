"""Streaming per DESIGN.md: the final rung streams live, a rejected attempt's tokens reach no
channel (``stream``, ``astream_events`` v2, ``on_llm_new_token``, LangGraph's messages stream).
All on the bundled local model; one test streams through llama.cpp's OpenAI-compatible server."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langgraph.graph import END, START, MessagesState, StateGraph

from router import PolicyRouter, RoutingError, loads_policy
from tests.conftest import LOCAL_POLICY
from tests.langchain.conftest import KEY_VAR, served_policy

QUESTION = "What is the capital of France?"
REJECT_ALL = LOCAL_POLICY.replace("    - check: min_length\n      chars: 1\n",
                                  "    - check: regex\n      pattern: 'zzzz'\n") + "  on_exhausted: raise\n"
NO_CHECKS = (LOCAL_POLICY.split("  confidence:")[0] + "  confidence: []\n").replace(
    "cascade: [gemma, gemma-strong]", "cascade: [gemma]")  # one rung: it streams live


class Tokens(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[tuple[UUID, str]] = []
        self.roots: list[UUID] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID,
                            parent_run_id: UUID | None = None, **kw: Any) -> None:
        if parent_run_id is None:
            self.roots.append(run_id)

    def on_llm_new_token(self, token: str, *, run_id: UUID, **kw: Any) -> None:
        self.tokens.append((run_id, token))


def _graph(router: PolicyRouter) -> Any:
    graph = StateGraph(MessagesState)
    graph.add_node("answer", lambda state: {"messages": [router.invoke(state["messages"])]})
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph.compile()


def _graph_tokens(router: PolicyRouter) -> list[str]:
    out: list[str] = []
    try:
        for chunk, _meta in _graph(router).stream({"messages": [("user", QUESTION)]}, stream_mode="messages"):
            out.append(str(chunk.content))
    except RoutingError:
        pass
    return [t for t in out if t]


async def _event_tokens(router: PolicyRouter, version: str) -> list[str]:
    out: list[str] = []
    try:
        async for event in router.astream_events(QUESTION, version=version):
            if event["event"] == "on_chat_model_stream":
                out.append(str(event["data"]["chunk"].content))
    except RoutingError:
        pass
    return [t for t in out if t]


@pytest.fixture(scope="module")
def rejecting() -> PolicyRouter:
    return PolicyRouter(policy=loads_policy(REJECT_ALL))


@pytest.fixture(scope="module")
def unchecked() -> PolicyRouter:
    return PolicyRouter(policy=loads_policy(NO_CHECKS))


def test_rejected_tokens_do_not_reach_stream_or_callbacks(rejecting: PolicyRouter):
    handler, chunks = Tokens(), []
    with pytest.raises(RoutingError) as caught:
        for chunk in rejecting.stream(QUESTION, config={"callbacks": [handler]}):
            chunks.append(chunk)
    attempts = caught.value.decision.attempts
    assert len(attempts) == 2 and all(a.output_tokens > 0 for a in attempts)  # both answered, both rejected
    assert [c.content for c in chunks if c.content] == []
    assert [t for _, t in handler.tokens if t] == []


def test_rejected_tokens_do_not_reach_astream_events(rejecting: PolicyRouter):
    assert asyncio.run(_event_tokens(rejecting, "v2")) == []


def test_rejected_tokens_do_not_reach_langgraph_messages(rejecting: PolicyRouter):
    assert _graph_tokens(rejecting) == []


def test_final_rung_streams_live_on_every_channel_once(unchecked: PolicyRouter):
    handler = Tokens()
    chunks = list(unchecked.stream(QUESTION, config={"callbacks": [handler]}))
    text = "".join(str(c.content) for c in chunks)
    assert "paris" in text.lower()
    assert chunks[-1].chunk_position == "last" and chunks[-1].response_metadata["routing"]["status"] == "accepted"
    # Tokens come from the router's run only: the child's are not repeated to the caller.
    assert {run for run, _ in handler.tokens} == set(handler.roots)
    assert "".join(t for _, t in handler.tokens) == text
    assert "".join(asyncio.run(_event_tokens(unchecked, "v2"))) == text
    assert "".join(_graph_tokens(unchecked)) == text


def test_an_accepted_buffered_attempt_is_replayed_once():
    router = PolicyRouter(policy=loads_policy(LOCAL_POLICY))  # checks, two rungs: gemma is buffered
    handler = Tokens()
    chunks = list(router.stream(QUESTION, config={"callbacks": [handler]}))
    routing = chunks[-1].response_metadata["routing"]
    assert routing["final_model"] == "gemma" and len(routing["attempts"]) == 1
    assert "".join(t for _, t in handler.tokens) == "".join(str(c.content) for c in chunks)


def test_streamed_usage_is_estimated_when_the_server_sends_none(served_llama: Any, served_key: None):
    policy = served_policy(served_llama.base_url, max_output_tokens=8)
    policy["policy"]["cascade"] = ["gpt-3.5-turbo"]
    router = PolicyRouter.from_dict(policy, allow_env=[KEY_VAR])
    chunks = list(router.stream(QUESTION))
    full = chunks[0]
    for chunk in chunks[1:]:
        full += chunk
    routing = chunks[-1].response_metadata["routing"]
    assert routing["final_model"] == "gpt-3.5-turbo" and routing["usage_estimated"] is True
    assert full.usage_metadata["output_tokens"] == routing["attempts"][0]["output_tokens"] > 0


def _v3_text(router: PolicyRouter, config: dict[str, Any] | None = None) -> tuple[str, Any]:
    stream = router.stream_events(QUESTION, config, version="v3")
    return "".join(stream.text), stream.output


async def _av3_text(router: PolicyRouter, config: dict[str, Any] | None = None) -> tuple[str, Any]:
    stream = await router.astream_events(QUESTION, config, version="v3")
    text = "".join([delta async for delta in stream.text])
    return text, await stream.output


@pytest.mark.filterwarnings("ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")
def test_rejected_tokens_do_not_reach_v3_streams(rejecting: PolicyRouter):
    handler, deltas = Tokens(), []
    stream = rejecting.stream_events(QUESTION, {"callbacks": [handler]}, version="v3")
    with pytest.raises(RoutingError):
        deltas.extend(stream.text)
    assert [d for d in deltas if d] == [] and [t for _, t in handler.tokens if t] == []

    async def read_async() -> list[str]:
        out: list[str] = []
        astream = await rejecting.astream_events(QUESTION, version="v3")
        with pytest.raises(RoutingError):
            async for delta in astream.text:
                out.append(delta)
        return out

    assert [d for d in asyncio.run(read_async()) if d] == []


@pytest.mark.filterwarnings("ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")
def test_v3_streams_run_under_the_request_config(unchecked: PolicyRouter):
    """``stream_events``/``astream_events(version="v3")`` are pumped lazily, from the reader's
    context: the request's ``configurable`` overrides still apply (here privacy turns on) and the
    text is the live rung's, once."""
    text = "".join(str(c.content) for c in unchecked.stream(QUESTION))
    for got, message in (_v3_text(unchecked, {"configurable": {"privacy": True}}),
                         asyncio.run(_av3_text(unchecked, {"configurable": {"privacy": True}}))):
        routing = message.response_metadata["routing"]
        assert got == text and "paris" in got.lower()
        assert routing["effective"]["privacy"] is True and routing["final_model"] == "gemma"


def test_leaving_a_stream_stops_the_model():
    """Breaking out of ``router.stream`` stops the live rung at its next token: no worker goes on
    generating (and, on a paid model, spending) for nobody, and the local model is free at once."""
    import time

    text = NO_CHECKS.replace("max_output_tokens: 16", "max_output_tokens: 240")
    assert text != NO_CHECKS
    unchecked = PolicyRouter(policy=loads_policy(text))
    stream = unchecked.stream("Count from 1 to 200, separated by commas.")
    first = next(chunk for chunk in stream if chunk.content)
    started = time.perf_counter()
    stream.close()
    closing_s = time.perf_counter() - started
    assert first.content
    lock = unchecked.catalog.chat_model("gemma")._loaded().lock
    assert lock.acquire(timeout=0), "the abandoned generation still holds the model"
    lock.release()
    assert closing_s < 1.0, f"closing waited {closing_s:.2f} s: the model ran on"
    # The model answers the next request at once (the abandoned generation released its lock).
    assert "paris" in "".join(str(c.content) for c in unchecked.stream(QUESTION)).lower()
