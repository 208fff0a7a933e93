"""Bad input gets an answer or a typed error, never a raw client exception (issue 9, item 5).

With the real ``ChatGoogleGenerativeAI`` against the Gemini test server: ``""`` or a system
message alone makes the client raise ``ValueError: contents are required.`` before any request;
that becomes a ``bad_request`` ProviderError on the Gemini attempt and the cascade goes on to
llama.cpp's OpenAI-compatible server. A lone surrogate, which no model can be sent, is a
RoutingError carrying the decision; ``None`` is an InputError.
"""

from __future__ import annotations

import pytest
from langchain_core.messages import SystemMessage
from servers.gemini import GeminiTestServer
from servers.openai_llama import LlamaOpenAIServer

from router import PolicyRouter, RouterError, RoutingError, loads_policy
from router.errors import InputError

POLICY = """
version: 1
name: bad-input
models:
  gemini-flash:
    provider: google_genai
    model: gemini-2.0-flash
    tier: standard
    price: {input: 0.10, output: 0.40}
    timeout_s: 10
  gpt-3.5-turbo:
    provider: openai
    model: gpt-3.5-turbo
    tier: standard
    price: {input: 0, output: 0}
    timeout_s: 60
policy:
  cost_ceiling: 0.5
  max_output_tokens: 8
  cascade: [gemini-flash, gpt-3.5-turbo]
  confidence: []
"""


def router() -> PolicyRouter:
    return PolicyRouter(policy=loads_policy(POLICY, "bad-input.yaml"))


@pytest.mark.parametrize("prompt", ["", [SystemMessage("Answer briefly.")]], ids=["empty", "system-only"])
@pytest.mark.parametrize("method", ["invoke", "stream"])
def test_a_client_refusing_the_input_is_a_typed_attempt_error_and_the_cascade_goes_on(
        cloud_env: None, gemini_server: GeminiTestServer, openai_server: LlamaOpenAIServer, prompt, method: str):
    r = router()
    try:
        msg = r.invoke(prompt) if method == "invoke" else list(r.stream(prompt))[-1]
        routing = msg.response_metadata["routing"]
    except RoutingError as err:  # the next rung ran but answered nothing: failed, never an empty answer
        routing = err.decision.to_dict()
    gemini, openai = routing["attempts"]
    assert gemini["error"]["type"] == "ProviderError" and gemini["error"]["kind"] == "bad_request"
    assert "contents are required" in gemini["error"]["message"]
    assert openai["model"] == "gpt-3.5-turbo" and openai["error"] is None
    if routing["status"] == "failed":
        assert openai["checks"][0]["detail"].startswith(("empty answer", "finish_reason length"))
    else:
        assert routing["final_model"] == "gpt-3.5-turbo"
    assert gemini_server.count() == 0 and openai_server.count() == 1


@pytest.mark.asyncio(loop_scope="session")
async def test_the_same_async(cloud_env: None, gemini_server: GeminiTestServer, openai_server: LlamaOpenAIServer):
    try:
        routing = (await router().ainvoke("")).response_metadata["routing"]
    except RoutingError as err:
        routing = err.decision.to_dict()
    assert routing["attempts"][0]["error"]["kind"] == "bad_request"
    assert routing["attempts"][1]["model"] == "gpt-3.5-turbo" and routing["attempts"][1]["error"] is None


def test_a_lone_surrogate_is_a_routing_error_with_the_decision(cloud_env: None, gemini_server: GeminiTestServer,
                                                              openai_server: LlamaOpenAIServer):
    with pytest.raises(RoutingError) as raised:
        router().invoke("What is \ud800?")
    decision = raised.value.decision
    assert decision.attempts == [] and {e.model for e in decision.excluded} == {"gemini-flash", "gpt-3.5-turbo"}
    assert all("not valid Unicode at character 8" in e.reason for e in decision.excluded)
    assert (gemini_server.count(), openai_server.count()) == (0, 0)


def test_none_is_an_input_error(cloud_env: None):
    with pytest.raises(InputError) as raised:
        router().invoke(None)  # type: ignore[arg-type]
    assert isinstance(raised.value, RouterError) and raised.value.received == "NoneType"
