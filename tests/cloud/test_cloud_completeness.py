"""Truncated answers are never accepted (issue 9, item 1), against the real clients over HTTP:
``ChatOpenAI`` to llama.cpp's OpenAI-compatible server (a real ``finish_reason: length`` from a
small ``max_tokens``; a stream stripped of its final event by the proxy) and
``ChatGoogleGenerativeAI`` to the Gemini test server (``MAX_TOKENS``, a stream without
``finishReason``). Each rung's answer escalates; the last one comes back only as ``exhausted``
with ``truncated: true``."""

from __future__ import annotations

import pytest
from servers.gemini import GeminiTestServer
from servers.openai_llama import LlamaOpenAIServer

from router import PolicyRouter, RoutingError, loads_policy

QUESTION = "What is the capital of France?"


def router(cascade: str, *, max_tokens: int = 24, on_exhausted: str = "best",
           openai_price: str = "{input: 0.50, output: 1.50}",
           checks: str = "[{check: min_length, chars: 2}]") -> PolicyRouter:
    text = f"""
version: 1
name: completeness
models:
  gemini-flash:
    provider: google_genai
    model: gemini-2.0-flash
    tier: standard
    price: {{input: 0.10, output: 0.40}}
    timeout_s: 10
  gpt-3.5-turbo:
    provider: openai
    model: gpt-3.5-turbo
    tier: standard
    price: {openai_price}
    timeout_s: 60
policy:
  cost_ceiling: 1.0
  max_output_tokens: {max_tokens}
  cascade: {cascade}
  confidence: {checks}
  on_exhausted: {on_exhausted}
"""
    return PolicyRouter(policy=loads_policy(text, "completeness.yaml"))


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_openai_length_escalates_to_gemini(cloud_env: None, openai_server: LlamaOpenAIServer,
                                           gemini_server: GeminiTestServer, stream: bool):
    """llama.cpp's server really stops at max_tokens=2 and says ``length``. (Free here: the
    server counts its prompt with Gemma's tokenizer and template, more than cl100k's bound, and
    a paid overrun would stop the cascade: see test_cloud_token_bounds.)"""
    r = router("[gpt-3.5-turbo, gemini-flash]", max_tokens=2, openai_price="{input: 0, output: 0}")
    if stream:
        chunks = list(r.stream("Count from one to twenty."))
        routing, text = chunks[-1].response_metadata["routing"], "".join(str(c.content) for c in chunks)
    else:
        msg = r.invoke("Count from one to twenty.")
        routing, text = msg.response_metadata["routing"], str(msg.content)
    first, second = routing["attempts"]
    assert (first["model"], first["finish_reason"], first["truncated"], first["accepted"]) == (
        "gpt-3.5-turbo", "length", True, False)
    assert first["checks"][0]["check"] == "complete" and first["output_tokens"] == 2
    assert (second["model"], second["finish_reason"], second["truncated"]) == ("gemini-flash", "stop", False)
    assert routing["status"] == "accepted" and routing["truncated"] is False
    assert text == "Paris is the capital of France."  # the truncated tokens never reached the caller


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_gemini_max_tokens_escalates_to_openai(cloud_env: None, openai_server: LlamaOpenAIServer,
                                               gemini_server: GeminiTestServer, stream: bool):
    gemini_server.fail("truncate")
    r = router("[gemini-flash, gpt-3.5-turbo]")
    msg = (list(r.stream(QUESTION))[-1] if stream else r.invoke(QUESTION))
    routing = msg.response_metadata["routing"]
    first, second = routing["attempts"]
    assert (first["finish_reason"], first["truncated"], first["accepted"]) == ("length", True, False)
    assert (second["model"], second["finish_reason"], second["accepted"]) == ("gpt-3.5-turbo", "stop", True)
    assert (gemini_server.count(), openai_server.count()) == (1, 1)


def test_gemini_stream_without_final_marker_is_truncated(cloud_env: None, openai_server: LlamaOpenAIServer,
                                                         gemini_server: GeminiTestServer):
    gemini_server.fail("no_final")
    chunks = list(router("[gemini-flash, gpt-3.5-turbo]").stream(QUESTION))
    first = chunks[-1].response_metadata["routing"]["attempts"][0]
    assert (first["finish_reason"], first["truncated"], first["accepted"]) == ("unknown", True, False)
    assert "final marker" in first["checks"][0]["detail"]


def test_openai_stream_without_final_event_is_truncated(cloud_env: None, openai_server: LlamaOpenAIServer,
                                                        gemini_server: GeminiTestServer):
    openai_server.fail("no_final")
    chunks = list(router("[gpt-3.5-turbo, gemini-flash]", openai_price="{input: 0, output: 0}").stream(QUESTION))
    routing = chunks[-1].response_metadata["routing"]
    first = routing["attempts"][0]
    assert (first["finish_reason"], first["truncated"], first["accepted"]) == ("unknown", True, False)
    assert routing["final_model"] == "gemini-flash" and routing["status"] == "accepted"


def test_a_truncated_last_answer_is_no_answer(cloud_env: None, gemini_server: GeminiTestServer,
                                              openai_server: LlamaOpenAIServer):
    """Not even under ``on_exhausted: best`` (issue 25): a cut-off answer is never returned."""
    gemini_server.fail("truncate")
    with pytest.raises(RoutingError) as raised:
        router("[gemini-flash]").invoke(QUESTION)
    decision = raised.value.decision
    assert decision.status == "failed" and decision.attempts[0].truncated is True
    assert "gemini-flash: not accepted: complete: finish_reason length" in str(raised.value)


def test_a_truncated_last_answer_raises_under_on_exhausted_raise(cloud_env: None, gemini_server: GeminiTestServer,
                                                                 openai_server: LlamaOpenAIServer):
    r = router("[gpt-3.5-turbo]", max_tokens=2, on_exhausted="raise")
    with pytest.raises(RoutingError) as raised:
        r.invoke("Count from one to twenty.")
    (attempt,) = raised.value.decision.attempts
    assert attempt.truncated is True and attempt.finish_reason == "length" and not attempt.accepted


def test_a_cut_off_first_rung_escalates_in_a_stream_as_when_invoked(cloud_env: None, gemini_server: GeminiTestServer,
                                                                    openai_server: LlamaOpenAIServer):
    """Without confidence checks the first rung is still buffered, since the completeness check
    can reject it: when the Gemini stream ends without its final marker, none of its tokens
    reach the caller and the stream escalates, as the invoked request does. (Before, every rung
    of such a policy streamed live, and the cut-off text ended the request, ``exhausted``.)"""
    r = router("[gemini-flash, gpt-3.5-turbo]", checks="[]")
    for request in (lambda: list(r.stream(QUESTION))[-1], lambda: r.invoke(QUESTION)):
        gemini_server.fail("no_final")
        routing = request().response_metadata["routing"]
        assert [(a["model"], a["truncated"]) for a in routing["attempts"]] == [("gemini-flash", True),
                                                                               ("gpt-3.5-turbo", False)]
        assert routing["status"] == "accepted" and routing["final_model"] == "gpt-3.5-turbo"
