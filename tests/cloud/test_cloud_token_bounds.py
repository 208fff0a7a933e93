"""Worst cases that cannot undercount (issue 9, item 2), with the real clients over HTTP.

The Gemini test server counts prompts here with Gemma 3's tokenizer (the bundled GGUF's: Gemma 3
uses Gemini 2.0's tokenizer) or one token per character (what Gemini reports for CJK), instead
of its default ``chars / 4``. The router's bound is one token per UTF-8 byte: a CJK or emoji
prompt that the old ``chars / 4`` estimate let through now fits its ceiling, or is refused before
any call. Over-reported usage (the server's ``over_report`` mode, and llama.cpp's own server,
which counts its prompt with Gemma's tokenizer and template, above cl100k's count) is recorded
as an overrun, stops further paid calls, and budgets settle to the reported amount.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage
from servers.gemini import GeminiTestServer
from servers.openai_llama import LlamaOpenAIServer

from router import PolicyRouter, RoutingError, loads_policy
from router.providers.llama_runtime import tokenizer_for
from router.spend import open_ledger

CJK = "请用一句话解释为什么天空是蓝色的，并说明光的散射原理。" * 20
EMOJI = "🙂🚀🌍🎉🔥" * 60


def policy(*, ceiling: float = 0.02, price: str = "{input: 100, output: 100}", max_tokens: int = 16,
           cascade: str = "[gemini-flash]", tail: str = "") -> PolicyRouter:
    text = f"""
version: 1
name: bounds
models:
  gemini-flash:
    provider: google_genai
    model: gemini-2.0-flash
    tier: standard
    price: {price}
    timeout_s: 10
  gpt-3.5-turbo:
    provider: openai
    model: gpt-3.5-turbo
    tier: standard
    price: {{input: 0.5, output: 1.5}}
    timeout_s: 60
policy:
  cost_ceiling: {ceiling}
  max_output_tokens: {max_tokens}
  cascade: {cascade}
  confidence: [{{check: regex, pattern: '^NEVER$'}}]
{tail}"""
    return PolicyRouter(policy=loads_policy(text, "bounds.yaml"))


@pytest.fixture(scope="module")
def gemma_count(gemma_path: Path):
    llm = tokenizer_for(str(gemma_path), n_ctx=512, n_batch=512).llm
    return lambda text: len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))


@pytest.mark.parametrize("prompt", [CJK, EMOJI], ids=["cjk", "emoji"])
@pytest.mark.parametrize("counter", ["per_char", "gemma3"])
def test_the_ceiling_holds_whatever_gemini_reports(cloud_env: None, gemini_server: GeminiTestServer,
                                                    gemma_count, prompt: str, counter: str):
    gemini_server.prompt_counter = len if counter == "per_char" else gemma_count
    # chars / 4 (the old estimate) would say this fits a $0.02 ceiling at $100/M ...
    assert (len(prompt) / 4 + 16) * 100 / 1e6 < 0.02
    # ... but the server reports more than that. The byte bound refuses the call beforehand.
    assert gemini_server.prompt_counter(prompt) * 100 / 1e6 > (len(prompt) / 4 + 16) * 100 / 1e6
    with pytest.raises(RoutingError) as raised:
        policy().invoke(prompt)
    decision = raised.value.decision
    assert decision.total_cost_usd == 0 and gemini_server.count() == 0
    assert decision.excluded[0].reason.startswith("over ceiling")
    # Under a ceiling the bound fits, the reported cost stays within both.
    msg = policy(ceiling=1.0, tail="  on_exhausted: best\n").invoke(prompt)
    routing = msg.response_metadata["routing"]
    attempt = routing["attempts"][0]
    assert attempt["input_tokens"] == gemini_server.prompt_counter(prompt)
    assert attempt["cost_usd"] <= routing["estimated_cost_usd"] <= 1.0 and attempt["overrun"] is None


def test_images_without_a_bound_are_refused_naming_the_content(cloud_env: None, gemini_server: GeminiTestServer):
    image = HumanMessage(content=[{"type": "text", "text": "What is this?"},
                                  {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}])
    with pytest.raises(RoutingError) as raised:
        policy(cascade="[gemini-flash, gpt-3.5-turbo]").invoke([image])
    reasons = {e.model: e.reason for e in raised.value.decision.excluded}
    assert "'image_url' content (message 0)" in reasons["gemini-flash"]
    assert "'image_url' content (message 0)" in reasons["gpt-3.5-turbo"]
    assert gemini_server.count() == 0


def test_max_tokens_is_always_sent(cloud_env: None, gemini_server: GeminiTestServer,
                                   openai_server: LlamaOpenAIServer):
    policy(ceiling=1.0, cascade="[gemini-flash, gpt-3.5-turbo]", max_tokens=7).invoke("Hi")
    (gemini,) = gemini_server.requests
    (openai,) = openai_server.requests
    assert gemini.json()["generationConfig"]["maxOutputTokens"] == 7
    assert openai.json()["max_tokens"] == 7


def test_over_reported_usage_is_an_overrun_that_stops_paid_calls(cloud_env: None, gemini_server: GeminiTestServer,
                                                                 openai_server: LlamaOpenAIServer, tmp_path: Path):
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    gemini_server.fail("over_report")
    r = policy(ceiling=1.0, price="{input: 1, output: 1}", cascade="[gemini-flash, gpt-3.5-turbo]",
               tail=f"  on_exhausted: best\nbudgets:\n  - name: daily\n    period: day\n    limit_usd: 5\nledger: {ledger}\n")
    routing = r.invoke("What is the capital of France?").response_metadata["routing"]
    (attempt,) = routing["attempts"]
    assert attempt["overrun"].startswith("input 1") and "output 1006 > max_tokens 16" in attempt["overrun"]
    assert {"model": "gpt-3.5-turbo", "reason": f"no paid call after an overrun (gemini-flash: {attempt['overrun']}) "
            "after 1 attempt(s)"} in routing["excluded"]
    assert openai_server.count() == 0
    # Charged what the server reported, beyond the worst case the call was admitted with.
    assert attempt["cost_usd"] == pytest.approx((attempt["input_tokens"] + 1006) / 1e6)
    assert attempt["cost_usd"] > routing["estimated_cost_usd"]
    (entry,) = open_ledger(ledger).entries()
    assert entry.cost_usd == pytest.approx(attempt["cost_usd"]) and entry.cost_usd > entry.worst_case_usd


def test_a_real_server_counting_more_than_the_bound_is_an_overrun(cloud_env: None, gemini_server: GeminiTestServer,
                                                                  openai_server: LlamaOpenAIServer):
    """llama.cpp's server bills Gemma's tokenizer and its chat template: above cl100k's bound."""
    routing = policy(ceiling=1.0, cascade="[gpt-3.5-turbo, gemini-flash]", tail="  on_exhausted: best\n").invoke(
        "What is the capital of France?").response_metadata["routing"]
    (attempt,) = routing["attempts"]
    assert attempt["model"] == "gpt-3.5-turbo" and attempt["overrun"].startswith("input ")
    assert gemini_server.count() == 0 and routing["excluded"][-1]["reason"].startswith("no paid call after an overrun")


def test_openai_over_reported_output_is_an_overrun(cloud_env: None, gemini_server: GeminiTestServer,
                                                   openai_server: LlamaOpenAIServer):
    """The same rule on the OpenAI client: output counted above the ``max_tokens`` sent."""
    openai_server.fail("over_report")
    routing = policy(ceiling=1.0, cascade="[gpt-3.5-turbo, gemini-flash]", tail="  on_exhausted: best\n").invoke(
        "What is the capital of France?").response_metadata["routing"]
    (attempt,) = routing["attempts"]
    assert attempt["model"] == "gpt-3.5-turbo" and "> max_tokens 16" in attempt["overrun"]
    assert attempt["output_tokens"] > 1000
    assert gemini_server.count() == 0 and routing["excluded"][-1]["reason"].startswith("no paid call after an overrun")
