"""The shipped ``offline`` policy's calibrated checks with the real bundled llama.cpp models:
a forced tool call is accepted locally, known-wrong answers to held-out prompts are not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from langchain_core.tools import tool

from router import PolicyRouter
from router.checks.grading import grade

ROOT = Path(__file__).resolve().parents[2]
ROWS = {r["id"]: r for r in map(json.loads, (ROOT / "data" / "labeled" / "prompts.jsonl").open(encoding="utf-8"))}
# Held-out prompts both bundled models answer wrong at temperature 0 (data/labeled/answers-local.jsonl).
KNOWN_WRONG = ["capital-002", "capital-011"]


@tool
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"Sunny in {city}."


@pytest.fixture(scope="module")
def offline() -> PolicyRouter:
    data = yaml.safe_load((ROOT / "policies" / "offline.yaml").read_text(encoding="utf-8"))
    data["policy"]["max_output_tokens"] = 32
    return PolicyRouter.from_string(yaml.safe_dump(data, sort_keys=False), "offline.yaml")


def test_forced_tool_call_is_accepted_locally(offline: PolicyRouter):
    msg = offline.bind_tools([get_weather], tool_choice="any").invoke("What is the weather in Paris?")
    routing = msg.response_metadata["routing"]
    assert routing["status"] == "accepted", routing
    assert routing["final_model"] in ("gemma-270m", "smollm2-135m")
    assert [(c["name"], c["args"]) for c in msg.tool_calls] == [("get_weather", {"city": "Paris"})]
    assert routing["total_cost_usd"] == 0.0


@pytest.mark.parametrize("item", KNOWN_WRONG)
def test_known_wrong_answers_are_not_accepted(offline: PolicyRouter, item: str):
    row = ROWS[item]
    assert row["split"] == "heldout"
    msg = offline.invoke(row["prompt"])
    routing = msg.response_metadata["routing"]
    text = msg.content if isinstance(msg.content, str) else ""
    assert routing["status"] != "accepted" or grade(row, text), (text, routing["attempts"])


def test_a_right_answer_is_accepted(offline: PolicyRouter):
    # Both models answer Nairobi (held-out capital-015); "What is the capital of France?" is not
    # accepted: smollm2's answer there does not agree with gemma's " Paris".
    msg = offline.invoke("What is the capital of Kenya?")
    assert msg.response_metadata["routing"]["status"] == "accepted"
    assert "nairobi" in str(msg.content).lower()
