"""Selection in time linear in the input, and a size cap that is a typed error (issue 24,
point 7). Selection counted a local model's prompt with one llama.cpp call, quadratic in the
messages (a chat template puts special tokens in each): 8,000 messages took 16 s, 50,000
minutes. The bundled GGUFs' tokenizers are real; no model is called."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage

from router import PolicyRouter
from router.errors import InputError, InputTooLargeError, PolicyError
from router.policy import loads_policy
from router.providers.llama_count import pieces
from router.routing.tokens import input_bytes

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "policy", "router", "cost", "ceiling"]
LOCAL = {"provider": "llamacpp", "tier": "basic", "local": True, "price": {"input": 0, "output": 0},
         "context_window": 8192}


def policy(**settings: Any) -> dict[str, Any]:
    return {"version": 1, "name": "size", "models": {
        "smollm2": {**LOCAL, "gguf": "bundled:smollm2-135m", "chat_format": "auto"},
        "gemma": {**LOCAL, "gguf": "bundled:gemma-3-270m", "chat_format": "qa"}},
        "policy": {"cost_ceiling": 0.05, "cascade": ["smollm2", "gemma"], **settings}}


def conversation(count: int, chars: int = 60) -> list[Any]:
    rng = random.Random(count)
    return [(HumanMessage if i % 2 == 0 else AIMessage)(" ".join(rng.choice(WORDS) for _ in range(chars // 6)))
            for i in range(count)]


@pytest.fixture(scope="module")
def router() -> PolicyRouter:
    built = PolicyRouter(policy=policy(max_input_bytes=10_000_000))
    built.plan("warm up")  # loads both tokenizers once
    return built


def plan_seconds(router: PolicyRouter, messages: list[Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    plan = router.plan(messages)
    return time.perf_counter() - started, plan


def test_selection_is_linear_in_the_number_of_messages(router: PolicyRouter):
    small_s, _ = plan_seconds(router, conversation(2_000))
    large_s, large = plan_seconds(router, conversation(16_000))
    assert [e.reason.split(":")[0] for e in large.selection.excluded] == ["context window"] * 2
    assert large_s < 3.0, f"16,000 messages: {large_s:.2f} s"  # was 60 s (quadratic)
    assert large_s < 8 * small_s * 2 + 0.5, (small_s, large_s)  # 8x the messages, at most ~2x worse than linear


def test_a_count_that_fits_is_exact(router: PolicyRouter):
    """Counting in pieces cuts after newlines: a prompt that fits counts as in one call."""
    messages = conversation(300)
    loaded = router.catalog.chat_model("smollm2")
    whole = loaded.count_prompt_tokens(messages)  # type: ignore[attr-defined]
    assert router.plan(messages).selection.input_tokens["smollm2"] == whole


def test_an_input_over_max_input_bytes_is_a_typed_error_before_any_count():
    router = PolicyRouter(policy=policy(max_input_bytes=1000))
    started = time.perf_counter()
    with pytest.raises(InputTooLargeError) as caught:
        router.invoke("x" * 1001)
    assert time.perf_counter() - started < 1.0
    assert isinstance(caught.value, InputError) and (caught.value.size, caught.value.limit) == (1001, 1000)
    with pytest.raises(InputTooLargeError):
        router.explain("y" * 2000)
    assert router.plan("z" * 1000).selection.candidates  # at the cap: allowed


def test_the_default_cap_refuses_a_huge_prompt_at_once():
    router = PolicyRouter(policy=policy())
    started = time.perf_counter()
    with pytest.raises(InputTooLargeError):
        router.plan("word " * 1_000_000)  # 5 MB
    assert time.perf_counter() - started < 1.0


def test_max_input_bytes_is_a_strict_positive_integer():
    for bad in (0, -1, 1.5, True, "1000"):
        with pytest.raises(PolicyError):
            loads_policy(f"version: 1\nname: x\nmodels: {{m: {{provider: llamacpp, gguf: '', local: true}}}}\n"
                         f"policy: {{cascade: [m], max_input_bytes: {bad!r}}}\n")


def test_input_bytes_counts_every_part():
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    call = AIMessage("", tool_calls=[{"name": "f", "args": {"q": "日本"}, "id": "c1"}])
    image = HumanMessage(content=[{"type": "image_url", "image_url": {"url": "data:" + "A" * 500}}])
    assert input_bytes([HumanMessage("日本")]) == 6
    assert input_bytes([call]) > len('{"q": "日本"}')
    assert input_bytes([image]) > 500
    assert input_bytes([HumanMessage("a")], [tool]) > 40


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab \n<|>é"), max_size=400), st.integers(min_value=4, max_value=64))
def test_pieces_cover_the_text_in_order(text: str, size: int):
    parts = list(pieces(text, size))
    assert "".join(parts) == text
    assert all(len(p) <= size for p in parts)
