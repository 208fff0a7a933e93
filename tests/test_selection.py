"""Selection: every exclusion reason, and privacy/offline never leave a network candidate."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from router import PolicyError, PolicyRouter, load_policy, loads_policy
from router.policy.policy_file import Rule, RuleWhen

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "policies").glob("*.yaml"))
QUESTION = "What is the capital of France?"

MINIMAL = """
version: 1
name: minimal
models:
  local:
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    local: true
    context_window: 2048
  env-gguf:
    provider: llamacpp
    gguf: ${MY_TEST_GGUF:-}
    local: true
  missing-file:
    provider: llamacpp
    gguf: /nonexistent/model.gguf
    local: true
  tiny-window:
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    local: true
    context_window: 64
  cloud:
    provider: openai
    model: gpt-4
    tier: premium
    price: {input: 30, output: 60}
  gemini:
    provider: google_genai
    model: gemini-2.0-flash
    tier: standard
    price: {input: 0.1, output: 0.4}
policy:
  max_output_tokens: 100
  cascade: [local, env-gguf, missing-file, tiny-window, gemini, cloud]
"""


def reasons(router: PolicyRouter, config: dict | None = None) -> dict[str, str]:
    return {e.model: e.reason for e in router.explain(QUESTION, config=config).excluded}


@pytest.fixture
def router() -> PolicyRouter:
    return PolicyRouter(policy=loads_policy(MINIMAL, "minimal.yaml"))


def test_each_exclusion_reason(router: PolicyRouter, monkeypatch: pytest.MonkeyPatch):
    got = reasons(router)
    assert got["env-gguf"] == "unavailable: MY_TEST_GGUF not set"
    assert got["missing-file"] == "unavailable: GGUF file not found: /nonexistent/model.gguf"
    assert got["tiny-window"].startswith("context window: ") and got["tiny-window"].endswith("output tokens > 64")
    assert got["cloud"] == "no credentials: OPENAI_API_KEY not set"
    assert got["gemini"] == "no credentials: GOOGLE_API_KEY not set"
    assert router.explain(QUESTION).candidates == ["local"]

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("GOOGLE_API_KEY", "g-test")
    got = reasons(router, {"configurable": {"cost_ceiling": 0.001}})
    assert got["cloud"].startswith("over ceiling: worst case $0.00")  # 100 × $60/M = $0.006 > $0.001
    assert "gemini" not in got
    assert reasons(router, {"configurable": {"quality_tier": "standard"}})["local"] == \
        "below tier floor: basic < standard"
    assert reasons(router, {"configurable": {"privacy": True}})["cloud"] == "not local: privacy"
    assert reasons(router, {"configurable": {"offline": True}})["gemini"] == "not local: offline"


def test_worst_case_uses_input_tokens_and_max_output(router: PolicyRouter, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    plan = router.plan(QUESTION)
    tokens = plan.selection.input_tokens["cloud"]
    assert plan.selection.worst_case_usd["cloud"] == pytest.approx((tokens * 30 + 100 * 60) / 1e6)
    assert tokens == 3 + 3 + 7  # cl100k: 7 tokens of text, 3 per message, 3 reply priming


def test_secret_values_never_appear_in_the_record(router: PolicyRouter, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-value")
    decision = router.explain(QUESTION)
    assert "sk-very-secret-value" not in decision.to_json() + decision.summary() + repr(router)


NETWORK_LEAK_OVERRIDES = [
    {},
    {"cascade": ["gpt-4", "gpt-3.5-turbo", "gemini-flash"]},
    {"quality_tier": "premium"},
    {"cost_ceiling": 100.0},
    {"offline": False},
    {"privacy": False},
    {"offline": "auto", "quality_tier": "standard"},
]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
@pytest.mark.parametrize("flag", ["privacy", "offline"])
def test_privacy_and_offline_never_leave_a_network_candidate(path: Path, flag: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("GOOGLE_API_KEY", "g-test")
    policy = load_policy(path)
    # Every shipped policy, plus a rule of our own that turns the flag on for tagged requests.
    rule = Rule(when=RuleWhen(tags=("sensitive",)), set={flag: True})
    policy = policy.model_copy(update={"rules": (rule, *policy.rules)})
    router = PolicyRouter(policy=policy)
    ways = [{"configurable": {flag: True}}, {"tags": ["sensitive"]}]
    checked = 0
    for way, extra in itertools.product(ways, NETWORK_LEAK_OVERRIDES):
        config = {**way, "configurable": {**way.get("configurable", {}), **extra}}
        if "cascade" in extra and not set(extra["cascade"]) <= set(policy.models):
            continue
        if flag in extra and flag in way.get("configurable", {}):
            continue  # one dict cannot both set and unset the flag
        try:
            plan = router.plan(QUESTION, config)
        except PolicyError:
            continue  # an override that tries to relax the flag is refused: fails closed
        assert plan.settings.local_only
        assert all(policy.models[m].local for m in plan.selection.candidates), (config, plan.selection.candidates)
        checked += 1
    assert checked >= 6


def test_a_corrupt_gguf_is_excluded_with_a_reason_and_the_next_rung_answers(tmp_path: Path):
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + b"\x00garbage" * 64)
    text = f"""
version: 1
name: corrupt
models:
  broken: {{provider: llamacpp, gguf: "{corrupt}", local: true}}
  local: {{provider: llamacpp, gguf: bundled:gemma-3-270m, local: true, tier: standard}}
policy:
  max_output_tokens: 8
  cascade: [broken, local]
"""
    router = PolicyRouter(policy=loads_policy(text))
    reason = reasons(router)["broken"]
    assert reason.startswith(f"unavailable: cannot load GGUF {corrupt}")
    msg = router.invoke(QUESTION)
    assert msg.response_metadata["routing"]["final_model"] == "local"
