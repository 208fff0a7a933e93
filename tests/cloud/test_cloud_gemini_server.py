"""The Gemini test server itself, spoken to by the real ``ChatGoogleGenerativeAI`` client
(google-genai SDK over HTTP): routes, both API versions, the key header, usage, faults."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from langchain_core.exceptions import ModelPermissionDeniedError, ModelRateLimitError
from langchain_google_genai import ChatGoogleGenerativeAI
from servers.gemini import GeminiTestServer

MODEL = "gemini-2.0-flash"


def client(server: GeminiTestServer, key: str | None = None, api_version: str | None = None,
           **kwargs: object) -> ChatGoogleGenerativeAI:
    return ChatGoogleGenerativeAI(model=MODEL, google_api_key=key or server.api_key, base_url=server.base_url,
                                  api_version=api_version, max_retries=0, **kwargs)


@pytest.mark.parametrize("api_version", ["v1", "v1beta"])
def test_generate_and_stream_under_both_api_versions(gemini_server: GeminiTestServer, api_version: str):
    gemini_server.reply("Rome is the capital of Italy.", model=MODEL)
    llm = client(gemini_server, api_version=api_version)
    message = llm.invoke("What is the capital of Italy?")
    assert message.content == "Rome is the capital of Italy."
    assert message.usage_metadata["output_tokens"] == 6
    assert message.usage_metadata["input_tokens"] == 8  # ceil(29 chars / 4)
    chunks = list(llm.stream("What is the capital of Italy?"))
    assert "".join(str(c.content) for c in chunks) == "Rome is the capital of Italy."
    # Running totals on the wire become per-chunk deltas that add up to the final totals.
    assert sum(c.usage_metadata["output_tokens"] for c in chunks if c.usage_metadata) == 6
    paths = [r.path for r in gemini_server.requests]
    assert paths == [f"/{api_version}/models/{MODEL}:generateContent",
                     f"/{api_version}/models/{MODEL}:streamGenerateContent?alt=sse"]
    assert all(r.headers["x-goog-api-key"] == gemini_server.api_key for r in gemini_server.requests)
    assert gemini_server.count(MODEL) == 2 and gemini_server.count("other") == 0


def test_async_client_reaches_the_server(gemini_server: GeminiTestServer):
    llm = client(gemini_server)
    assert asyncio.run(llm.ainvoke("hi")).content == "Paris is the capital of France."
    assert gemini_server.count() == 1


def test_wrong_or_missing_key_is_refused(gemini_server: GeminiTestServer):
    with pytest.raises(ModelPermissionDeniedError):
        client(gemini_server, key="wrong-key").invoke("hi")
    reply = httpx.post(f"{gemini_server.base_url}/v1beta/models/{MODEL}:generateContent", json={})
    assert reply.status_code == 401 and reply.json()["error"]["status"] == "UNAUTHENTICATED"
    reply = httpx.post(f"{gemini_server.base_url}/v1beta/models/{MODEL}:generateContent?key={gemini_server.api_key}",
                       json={})
    assert reply.status_code == 400  # the key must travel in the header


def test_reply_callable_sees_model_and_request(gemini_server: GeminiTestServer):
    gemini_server.reply(lambda model, req: f"{model}: {req['contents'][0]['parts'][0]['text'][::-1]}")
    assert client(gemini_server).invoke("abc").content == f"{MODEL}: cba"


def test_rate_limit_carries_retry_after_then_heals(gemini_server: GeminiTestServer):
    gemini_server.fail("rate_limit", times=1, retry_after_s=7)
    llm = client(gemini_server)
    with pytest.raises(ModelRateLimitError) as info:
        llm.invoke("hi")
    assert info.value.__cause__.response.headers["retry-after"] == "7"
    assert llm.invoke("hi").content  # the fault was for one request only
    assert [r.failed_with for r in gemini_server.requests] == ["rate_limit", None]


def test_fail_always_until_healed(gemini_server: GeminiTestServer):
    gemini_server.fail("server", times=None)
    reply = None
    for _ in range(3):
        reply = httpx.post(f"{gemini_server.base_url}/v1/models/{MODEL}:generateContent", json={},
                           headers={"x-goog-api-key": gemini_server.api_key})
        assert reply.status_code == 500
    gemini_server.heal()
    reply = httpx.post(f"{gemini_server.base_url}/v1/models/{MODEL}:generateContent", json={},
                       headers={"x-goog-api-key": gemini_server.api_key})
    assert reply.status_code == 200 and reply.json()["usageMetadata"]["totalTokenCount"] == 6


def test_malformed_and_hang(gemini_server: GeminiTestServer):
    gemini_server.fail("malformed")
    reply = httpx.post(f"{gemini_server.base_url}/v1/models/{MODEL}:generateContent", json={},
                       headers={"x-goog-api-key": gemini_server.api_key})
    with pytest.raises(ValueError):
        reply.json()
    gemini_server.fail("hang", hang_s=5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gemini_server.base_url}/v1/models/{MODEL}:generateContent", json={},
                   headers={"x-goog-api-key": gemini_server.api_key}, timeout=0.3)


def test_stream_reports_running_usage_totals(gemini_server: GeminiTestServer):
    gemini_server.reply("one two three four five six")
    with httpx.stream("POST", f"{gemini_server.base_url}/v1beta/models/{MODEL}:streamGenerateContent?alt=sse",
                      json={"contents": [{"parts": [{"text": "12345678"}]}]},
                      headers={"x-goog-api-key": gemini_server.api_key}) as reply:
        assert reply.headers["content-type"] == "text/event-stream"
        import json

        events = [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith("data: ")]
    totals = [e["usageMetadata"]["candidatesTokenCount"] for e in events]
    assert totals == [2, 4, 6]
    assert all(e["usageMetadata"]["promptTokenCount"] == 2 for e in events)
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert "finishReason" not in events[0]["candidates"][0]
