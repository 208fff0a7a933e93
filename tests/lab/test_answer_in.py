"""The ``answer_in`` gate: a rung's answer stands only when its extracted value is one of a few.
Run through the real router on recorded RouterBench models (the shipped Winogrande sample), and
validated at load like every check."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from router import PolicyError, PolicyRouter, loads_policy
from router.checks import Answer, build_check
from router.checks.extractors import extract_choice
from router.lab.datasets import load_dataset

ROOT = Path(__file__).resolve().parents[2]
WINO = ROOT / "data" / "routerbench-sample" / "winogrande.jsonl"
YI = "zero-one-ai/Yi-34B-Chat"

POLICY = f"""
version: 1
name: gated
models:
  yi-34b: {{provider: recorded, model: {YI}, dataset: {WINO}, local: true}}
  gpt-4: {{provider: recorded, model: gpt-4-1106-preview, dataset: {WINO}, local: true, tier: premium}}
policy:
  cascade: [yi-34b, gpt-4]
  confidence:
    - check: refusal
    - check: answer_in
      values: [B]
      extract: choice
      apply_to: [yi-34b]
"""


def test_the_gate_passes_listed_values_fails_others_and_nothing_extracted():
    gate = build_check({"check": "answer_in", "values": ["B"], "apply_to": ["yi-34b"]})
    prompt = (HumanMessage("Who?\nA) Ian\nB) Dennis"),)
    verdicts = {text: gate.run(Answer("yi-34b", text, AIMessage(text), prompt=prompt), None)
                for text in ("B", "Dennis", "A", "no idea")}
    assert {t: v.passed for t, v in verdicts.items()} == {"B": True, "Dennis": True, "A": False, "no idea": False}
    assert verdicts["A"].detail == "answer 'A' is not one of ['B']"
    assert verdicts["no idea"].detail == "no choice answer to look at"
    other = gate.run(Answer("gpt-4", "A", AIMessage("A"), prompt=prompt), None)
    assert other.passed and other.detail == "not applied to gpt-4"


def test_a_gated_rung_is_accepted_only_on_its_listed_answers():
    router = PolicyRouter(policy=loads_policy(POLICY, "gated.yaml"))
    data = load_dataset(WINO)
    said = {r.id: extract_choice(r.outcomes[YI].response, r.prompt) for r in data}
    b = next(r for r in data if said[r.id] == "B")
    a = next(r for r in data if said[r.id] == "A")

    routing = router.invoke(b.prompt).response_metadata["routing"]
    assert routing["final_model"] == "yi-34b"
    assert routing["total_cost_usd"] == pytest.approx(b.outcomes[YI].cost_usd)

    routing = router.invoke(a.prompt).response_metadata["routing"]
    assert [x["model"] for x in routing["attempts"]] == ["yi-34b", "gpt-4"]
    assert routing["final_model"] == "gpt-4"
    # The rejected rung's extracted answer is not quoted in the record (a rejected attempt's text
    # reaches no channel; router.langchain.answer.withhold_rejected): the verdict stays.
    assert routing["attempts"][0]["checks"][-1] == {
        "check": "answer_in", "passed": False, "score": None,
        "detail": "withheld: may quote an answer that was not returned"}
    assert routing["total_cost_usd"] == pytest.approx(a.outcomes[YI].cost_usd + a.outcomes["gpt-4-1106-preview"].cost_usd)


@pytest.mark.parametrize(("entry", "message"), [
    ("      values: []\n", "at least 1 item"),
    ("      values: [B]\n      extract: letter\n", "unknown extractor 'letter'"),
    ("      values: [B]\n      apply_to: [yi-43b]\n", "'yi-43b' is not in models:"),
    ("      value: [B]\n", "value"),
])
def test_the_gate_is_validated_at_load_with_a_location(entry, message):
    text = POLICY.replace("      values: [B]\n      extract: choice\n      apply_to: [yi-34b]\n", entry)
    with pytest.raises(PolicyError) as err:
        loads_policy(text, "gated.yaml")
    assert message in str(err.value)
    assert err.value.issues[0].line > 0 and err.value.file == "gated.yaml"
