"""The recorded provider inside the real PolicyRouter: recorded answers, recorded cost as the
attempt's actual cost, and escalation past a missing record."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.messages import HumanMessage, SystemMessage

from router import PolicyRouter, RoutingError, loads_policy

TINY = Path(__file__).parent / "fixtures" / "tiny.jsonl"

POLICY = f"""
version: 1
name: tiny-recorded
models:
  cheap: {{provider: recorded, model: cheap, dataset: "{TINY}", local: true, tier: basic,
          price: {{input: 1.0, output: 2.0}}}}
  big: {{provider: recorded, model: big, dataset: "{TINY}", local: true, tier: premium,
        price: {{input: 10.0, output: 30.0}}}}
policy:
  cost_ceiling: 1.0
  max_output_tokens: 8
  cascade: [cheap, big]
  confidence:
    - check: regex
      pattern: '^[A-D]$'
"""


def make_router(text: str = POLICY) -> PolicyRouter:
    return PolicyRouter(policy=loads_policy(text, "tiny.yaml"))


def test_answers_with_the_recorded_response_and_reports_its_cost():
    msg = make_router().invoke("Q1? Answer with a letter.")
    assert msg.content == "A"
    routing = msg.response_metadata["routing"]
    assert routing["final_model"] == "cheap" and routing["status"] == "accepted"
    attempt = routing["attempts"][0]
    assert attempt["provider"] == "recorded"
    # the recorded cost, not tokens x price
    assert attempt["cost_usd"] == pytest.approx(0.001) and attempt["cost_estimated"] is False
    assert routing["total_cost_usd"] == pytest.approx(0.001)
    assert attempt["input_tokens"] > 5 and attempt["output_tokens"] == 1
    assert msg.usage_metadata["input_tokens"] == attempt["input_tokens"]


def test_failed_check_escalates_and_both_recorded_costs_count():
    routing = make_router().invoke("Q2? Answer with a letter.").response_metadata["routing"]
    assert [a["model"] for a in routing["attempts"]] == ["cheap", "big"]
    assert routing["final_model"] == "big"
    assert routing["total_cost_usd"] == pytest.approx(0.011)


def test_missing_record_is_a_typed_error_and_escalates():
    msg = make_router().invoke("Q4? Answer with a letter.")  # "cheap" has no outcome for Q4
    routing = msg.response_metadata["routing"]
    first, second = routing["attempts"]
    assert first["model"] == "cheap" and first["error"]["kind"] == "missing_record"
    assert first["error"]["provider"] == "recorded" and first["cost_usd"] == 0.0
    assert second["model"] == "big" and second["accepted"]
    assert msg.content == "A"


def test_unknown_prompt_fails_every_rung_without_leaking_the_prompt():
    with pytest.raises(RoutingError) as err:
        make_router().invoke("my secret medical question")
    kinds = [a.error["kind"] for a in err.value.decision.attempts]
    assert kinds == ["missing_record", "missing_record"]
    assert "secret" not in err.value.decision.to_json()


def test_looks_up_the_last_human_message_with_normalised_whitespace():
    msg = make_router().invoke([SystemMessage("be brief"), HumanMessage("Q3?  Answer with\na letter. ")])
    assert msg.content == "C"


def test_usage_callback_counts_each_recorded_call_once():
    with get_usage_metadata_callback() as cb:
        msg = make_router().invoke("Q2? Answer with a letter.")
    routing = msg.response_metadata["routing"]
    total_in = sum(a["input_tokens"] for a in routing["attempts"])
    assert sum(u["input_tokens"] for u in cb.usage_metadata.values()) == total_in


async def test_async_invoke_answers_the_same():
    msg = await make_router().ainvoke("Q2? Answer with a letter.")
    assert msg.content == "B" and msg.response_metadata["routing"]["final_model"] == "big"


def test_privacy_allows_local_recorded_models():
    msg = make_router().invoke("Q1? Answer with a letter.", config={"configurable": {"privacy": True}})
    assert msg.response_metadata["routing"]["candidates"] == ["cheap", "big"]


def test_unavailable_without_dataset_or_when_the_model_is_not_recorded(tmp_path: Path):
    text = POLICY.replace(f'dataset: "{TINY}", local: true, tier: basic', "local: true, tier: basic")
    text = text.replace("model: big,", "model: nobody,")
    decision = make_router(text).explain("Q1? Answer with a letter.")
    reasons = {e.model: e.reason for e in decision.excluded}
    assert reasons["cheap"] == "unavailable: no dataset: for this recorded model"
    assert reasons["big"].startswith("unavailable: model 'nobody' not recorded in")
    missing = POLICY.replace(str(TINY), str(tmp_path / "gone.jsonl"))
    reasons = {e.model: e.reason for e in make_router(missing).explain("x").excluded}
    assert "cannot read dataset" in reasons["cheap"]


def test_relative_dataset_paths_resolve_against_the_working_directory(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(TINY.parent)
    router = make_router(POLICY.replace(str(TINY), TINY.name))
    assert router.invoke("Q1? Answer with a letter.").content == "A"
