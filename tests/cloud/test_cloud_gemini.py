"""The Gemini rung: the real ``ChatGoogleGenerativeAI`` (google-genai SDK over REST) against the
Gemini test server, through the router: answer, usage, cost, streaming, both API versions,
the key header, endpoint and key from the model entry."""

from __future__ import annotations

import asyncio
import socket

import pytest
from servers.gemini import GeminiTestServer

from router import PolicyRouter, loads_policy

QUESTION = "What is the capital of France?"
MODEL = "gemini-2.0-flash"


def gemini_router(extra: str = "", confidence: str = "[{check: logprob}, {check: min_length, chars: 2}]") -> PolicyRouter:
    text = f"""
version: 1
name: gemini-only
models:
  gemini-flash:
    provider: google_genai
    model: {MODEL}
    tier: standard
    price: {{input: 0.10, output: 0.40}}
    timeout_s: 5{extra}
policy:
  cost_ceiling: 0.01
  max_output_tokens: 64
  cascade: [gemini-flash]
  confidence: {confidence}
"""
    return PolicyRouter(policy=loads_policy(text, "gemini-only.yaml", allow_env=["MY_GEMINI_KEY"]))


def test_answer_usage_and_cost_from_usage_metadata(cloud_env: None, gemini_server: GeminiTestServer):
    gemini_server.reply("Paris is the capital of France.", model=MODEL)
    msg = gemini_router().invoke(QUESTION)
    assert msg.content == "Paris is the capital of France."
    routing = msg.response_metadata["routing"]
    attempt = routing["attempts"][0]
    assert routing["status"] == "accepted" and attempt["provider"] == "google_genai"
    # The server's usageMetadata: ceil(30 chars / 4) = 8 prompt tokens, 6 words.
    assert (attempt["input_tokens"], attempt["output_tokens"]) == (8, 6)
    assert attempt["cost_estimated"] is False
    assert attempt["cost_usd"] == pytest.approx((8 * 0.10 + 6 * 0.40) / 1e6)
    # No logprobs through LangChain: the logprob check passes with a note.
    assert attempt["mean_logprob"] is None
    assert attempt["checks"][0] == {"check": "logprob", "passed": True, "score": None,
                                    "detail": "no logprobs from this model"}
    [request] = gemini_server.requests
    assert request.path == f"/v1/models/{MODEL}:generateContent"
    assert request.headers["x-goog-api-key"] == gemini_server.api_key
    config = request.json()["generationConfig"]
    assert config["maxOutputTokens"] == 64 and config["temperature"] == 0


def test_stream_usage_is_the_servers_running_total(cloud_env: None, gemini_server: GeminiTestServer):
    gemini_server.reply("one two three four five six seven")
    chunks = list(gemini_router().stream(QUESTION))
    assert "".join(str(c.content) for c in chunks) == "one two three four five six seven"
    attempt = chunks[-1].response_metadata["routing"]["attempts"][0]
    assert (attempt["input_tokens"], attempt["output_tokens"]) == (8, 7)
    assert attempt["cost_estimated"] is False
    [request] = gemini_server.requests
    assert request.path == f"/v1/models/{MODEL}:streamGenerateContent?alt=sse" and request.stream


def test_v1beta_through_the_sdks_api_version_variable(cloud_env: None, monkeypatch: pytest.MonkeyPatch,
                                                      gemini_server: GeminiTestServer):
    monkeypatch.setenv("GOOGLE_GENAI_API_VERSION", "beta")
    router = gemini_router()
    router.invoke(QUESTION)
    list(router.stream(QUESTION))
    assert [r.path.split("/models/")[0] for r in gemini_server.requests] == ["/v1beta", "/v1beta"]


@pytest.mark.asyncio(loop_scope="session")
async def test_ainvoke_and_astream(cloud_env: None, gemini_server: GeminiTestServer):
    router = gemini_router()
    msg = await router.ainvoke(QUESTION)
    chunks = [c async for c in router.astream(QUESTION)]
    assert msg.content == "".join(str(c.content) for c in chunks) == "Paris is the capital of France."
    assert gemini_server.count(MODEL) == 2


def test_endpoint_and_key_from_the_model_entry(monkeypatch: pytest.MonkeyPatch, gemini_server: GeminiTestServer):
    monkeypatch.setenv("MY_GEMINI_KEY", gemini_server.api_key)
    router = gemini_router(extra=f"\n    base_url: {gemini_server.base_url}\n    api_key_env: MY_GEMINI_KEY")
    assert router.invoke(QUESTION).response_metadata["routing"]["status"] == "accepted"
    assert gemini_server.requests[0].headers["x-goog-api-key"] == gemini_server.api_key


def test_missing_key_excludes_with_the_documented_reason(gemini_server: GeminiTestServer):
    decision = gemini_router(extra="\n    api_key_env: MY_GEMINI_KEY").explain(QUESTION)
    assert [(e.model, e.reason) for e in decision.excluded] == [("gemini-flash", "no credentials: MY_GEMINI_KEY not set")]
    decision = gemini_router().explain(QUESTION)
    assert decision.excluded[0].reason == "no credentials: GOOGLE_API_KEY not set"
    assert gemini_server.count() == 0


def test_the_client_resolves_and_connects_to_no_other_host(cloud_env: None, monkeypatch: pytest.MonkeyPatch,
                                                           gemini_server: GeminiTestServer):
    """Every connect() and name lookup the SDK makes, sync and async, goes to the test server."""
    hosts: list[str] = []
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        hosts.append(str(host))
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(sock, address):  # type: ignore[no-untyped-def]
        hosts.append(str(address[0]))
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    router = gemini_router()
    router.invoke(QUESTION)
    list(router.stream(QUESTION))
    asyncio.run(router.ainvoke(QUESTION))
    assert hosts and set(hosts) <= {"127.0.0.1", "localhost"}
    assert gemini_server.count() == 3
