"""The same request to the same local model gives the same text and logprobs whatever ran before
(issue 9, item 4): in this process after other prompts, and in a fresh process. The KV cache is
reset before each generation unless the model opts into ``prefix_cache: true``."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

from router import PolicyRouter, RoutingError, loads_policy
from router.routing.catalog import Catalog

POLICY = """
version: 1
name: determinism
models:
  gemma:
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    chat_format: qa
    local: true
    context_window: 2048
    n_threads: 1{extra}
policy:
  max_output_tokens: 16
  cascade: [gemma]
  confidence: [{{check: logprob, min_mean: -9}}]
"""
QUESTION = "What is the capital of France?"
OTHER = ("Question: Summarise the plot of a long novel about a lighthouse keeper, his daughter, "
         "three storms and a shipwreck, in one sentence.\nAnswer: The") * 3
SCRIPT = f"""
import json
from router import PolicyRouter, loads_policy
msg = PolicyRouter(policy=loads_policy({POLICY.format(extra="")!r})).invoke({QUESTION!r})
print(json.dumps({{"text": msg.content, "logprobs": msg.response_metadata["logprobs"]["content"]}}))
"""


def answer(router: PolicyRouter, prompt: str = QUESTION) -> dict:
    msg = router.invoke(prompt)
    return {"text": msg.content, "logprobs": msg.response_metadata["logprobs"]["content"]}


def fill_cache(router: PolicyRouter, prompt: str) -> None:
    """Run ``prompt`` for what it leaves in the KV cache; its outcome does not matter (gemma's
    answer to OTHER is empty: no answer, a RoutingError)."""
    with contextlib.suppress(RoutingError):
        router.invoke(prompt)


def test_the_same_request_scores_the_same_after_a_different_prompt():
    router = PolicyRouter(policy=loads_policy(POLICY.format(extra="")))
    first = answer(router)
    fill_cache(router, OTHER)  # a different, longer prompt fills the KV cache in between
    answer(router, QUESTION + " Answer in one word.")  # and one sharing a prefix with it
    again = answer(router)
    assert again == first  # text and every token's logprob, exactly
    assert first["text"].strip() and len(first["logprobs"]) >= 1


def test_the_same_request_scores_the_same_in_a_fresh_process():
    router = PolicyRouter(policy=loads_policy(POLICY.format(extra="")))
    fill_cache(router, OTHER)
    here = answer(router)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env,
                          timeout=300, check=True)
    there = json.loads(done.stdout.strip().splitlines()[-1])
    assert there == here


def test_prefix_cache_is_an_explicit_per_model_option():
    policy = loads_policy(POLICY.format(extra="\n    prefix_cache: true"))
    assert policy.models["gemma"].prefix_cache is True
    assert loads_policy(POLICY.format(extra="")).models["gemma"].prefix_cache is False
    assert Catalog(policy).chat_model("gemma").prefix_cache is True  # handed to the llama.cpp model
    assert answer(PolicyRouter(policy=policy))["text"].strip()  # still answers; reproducibility is what it gives up
