"""One router used from several event loops (one ``asyncio.run`` per script step, a notebook
after a kernel restart of its loop...): each loop gets its own async HTTP client, so a client's
pooled connections never outlive the loop they were opened on."""

from __future__ import annotations

import asyncio

from servers.gemini import GeminiTestServer
from servers.openai_llama import LlamaOpenAIServer
from test_cloud_openai import QUESTION, openai_router


def test_openai_rung_works_across_event_loops(cloud_env: None, openai_server: LlamaOpenAIServer):
    router = openai_router()
    for _ in range(3):
        msg = asyncio.run(router.ainvoke(QUESTION))
        assert msg.response_metadata["routing"]["status"] == "accepted", msg.response_metadata["routing"]
    assert len(openai_server.requests) == 3
    # The sync path still shares one client.
    assert router.invoke(QUESTION).response_metadata["routing"]["status"] == "accepted"


def test_gemini_rung_works_across_event_loops(cloud_env: None, gemini_server: GeminiTestServer):
    from router import PolicyRouter, loads_policy

    router = PolicyRouter(policy=loads_policy("""
version: 1
name: gemini-only
models:
  flash: {provider: google_genai, model: gemini-2.0-flash, tier: standard, price: {input: 0.1, output: 0.4}}
policy:
  max_output_tokens: 8
  cascade: [flash]
"""))
    for _ in range(2):
        assert asyncio.run(router.ainvoke(QUESTION)).response_metadata["routing"]["status"] == "accepted"
    assert len(gemini_server.requests) == 2
