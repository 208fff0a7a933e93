"""What the spend tests share besides fixtures: the Gemini policy with a budget, and a reply
whose usage makes each call cost exactly its reserved worst case."""

from __future__ import annotations

import time

GEMINI_KEY = "test-spend-key-7c1e"
MAX_TOKENS = 100
OUTPUT_PRICE = 10.0  # USD / 1M tokens: a call's worst case is exactly $0.001

GEMINI_POLICY = """
version: 1
name: {name}
models:
  flash:
    provider: google_genai
    model: gemini-2.0-flash
    tier: basic
    base_url: {base_url}
    price: {{input: 0, output: {price}}}
    max_retries: 0
policy:
  cost_ceiling: 1.0
  max_output_tokens: {max_tokens}
  cascade: [flash]
  confidence:
    - check: min_length
      chars: 1
budgets:
  - name: daily
    period: day
    limit_usd: {limit}
ledger: {ledger}
"""


def gemini_policy(base_url: str, ledger: str, *, limit: float, name: str = "spend-test") -> str:
    return GEMINI_POLICY.format(name=name, base_url=base_url, ledger=ledger, limit=limit,
                                price=OUTPUT_PRICE, max_tokens=MAX_TOKENS)


def full_length_reply(model: str, request: dict) -> str:
    """As many words as the request allows: the server reports exactly maxOutputTokens output
    tokens, so each call's actual cost equals its reserved worst case (admissions are exact)."""
    time.sleep(0.02)  # keep calls in flight long enough to overlap
    return " ".join(["word"] * int(request["generationConfig"]["maxOutputTokens"]))
