"""A rejected attempt's tokens reach no channel, with or without confidence checks.

A policy without confidence checks still rejects an answer cut off at ``max_tokens`` (the
completeness check), so its first rung must not stream live: on main it did, and the caller of
``stream`` got the cut-off text, then the next rung's answer (or a RoutingError). The servers
are loopback fakes that answer each model with a scripted text and ``finish_reason``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from security_servers import FakeOpenAIServer

from router import PolicyRouter, RoutingError, loads_policy

CUT, GOOD = "CUT-OFF-ANSWER-OF-A", "a complete answer"
# The fake sends no usage, so the router counts each answer (cl100k: CUT is 10 tokens). The bound
# must hold that count: an answer counted above max_tokens is an overrun, which stops paid calls.
POLICY = """\
version: 1
name: unchecked
models:
  a: {{provider: openai, model: m-cut, base_url: "{url}", api_key_env: LOCAL_GPT_KEY, price: {{input: 1, output: 1}}}}
  b: {{provider: openai, model: m-good, base_url: "{url}", api_key_env: LOCAL_GPT_KEY, price: {{input: 2, output: 2}}}}
policy:
  max_output_tokens: 16
  cascade: [{cascade}]
  on_exhausted: {on_exhausted}
"""


class Tokens(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token: str, **kw: Any) -> None:
        self.tokens.append(token)


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LOCAL_GPT_KEY", "sk-local-dummy-key")
    with FakeOpenAIServer(scripts={"m-cut": (CUT, "length"), "m-good": (GOOD, "stop")}) as server:
        yield server


def router_for(server: FakeOpenAIServer, cascade: str, on_exhausted: str) -> PolicyRouter:
    return PolicyRouter(policy=loads_policy(POLICY.format(url=server.base_url, cascade=cascade,
                                                          on_exhausted=on_exhausted), allow_env=["LOCAL_GPT_KEY"]))


async def event_text(router: PolicyRouter) -> str:
    return "".join([str(e["data"]["chunk"].content) async for e in router.astream_events("q", version="v2")
                    if e["event"] == "on_chat_model_stream"])


@pytest.mark.parametrize("on_exhausted", ["best", "raise"])
def test_a_cut_off_first_rung_streams_nothing_and_the_next_answers(scripted: FakeOpenAIServer, on_exhausted: str):
    router = router_for(scripted, "a, b", on_exhausted)
    handler = Tokens()
    chunks = list(router.stream("q", config={"callbacks": [handler]}))
    routing = chunks[-1].response_metadata["routing"]
    assert [(a["model"], a["truncated"], a["accepted"]) for a in routing["attempts"]] == [("a", True, False),
                                                                                         ("b", False, True)]
    assert "".join(str(c.content) for c in chunks) == GOOD
    assert "".join(handler.tokens) == GOOD
    assert asyncio.run(event_text(router)) == GOOD
    assert router.invoke("q").content == GOOD


def test_under_raise_a_cut_off_last_rung_streams_nothing(scripted: FakeOpenAIServer):
    router = router_for(scripted, "a", "raise")
    handler, chunks = Tokens(), []
    with pytest.raises(RoutingError):
        chunks.extend(router.stream("q", config={"callbacks": [handler]}))
    assert [c.content for c in chunks if c.content] == [] and handler.tokens == []


def test_under_best_the_last_rung_still_streams_live(scripted: FakeOpenAIServer):
    """The answer that will be returned whatever its checks say streams (here: cut off, its tokens
    in one live chunk; being cut off it is no answer, so the stream then ends with a RoutingError,
    status failed, rather than a cut-off answer flagged exhausted)."""
    router = router_for(scripted, "a", "best")
    chunks = []
    with pytest.raises(RoutingError) as raised:
        chunks.extend(router.stream("q"))
    assert chunks[0].content == CUT and raised.value.decision.status == "failed"
