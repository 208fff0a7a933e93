"""The judgment checks on hand-built answers: token_logprob (chosen tokens only), answer_type,
the key extractor, agreement on a tool call, and the labeled-set grader."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage
from pydantic import ValidationError

from router.checks import Answer, build_check
from router.checks.answer_type import expected_type
from router.checks.extractors import extract
from router.checks.grading import grade
from router.checks.token_logprob import chosen_logprobs


def answer(tokens: list[tuple[str, float]], prompt: str = "Q?", calls: list[dict] | None = None) -> Answer:
    calls = [{"name": c["name"], "args": c["args"], "id": f"c{i}", "type": "tool_call"} for i, c in enumerate(calls or [])]
    text = "".join(t for t, _ in tokens)
    message = AIMessage(content="" if calls else text, tool_calls=calls,
                        response_metadata={"logprobs": {"content": [{"token": t, "logprob": lp} for t, lp in tokens]}})
    return Answer(model="m", text=json.dumps([{"name": c["name"], "args": c["args"]} for c in calls]) if calls else text,
                  message=message, token_logprobs=tuple(lp for _, lp in tokens), prompt=(HumanMessage(prompt),))


# What gemma-270m generated under bind_tools([get_weather], tool_choice="any") for "What is the weather
# in Paris?": the syntax and the only tool's name are forced by the grammar and score low.
FORCED_CALL = [('{"', -4.1), ("name", -6.0), ('":', -3.2), (' "', -2.5), ("get", -5.1), ("_weather", -0.9),
               ('",', -3.3), (' "', -2.0), ("arguments", -7.2), ('":', -1.1), (' {"', -2.2), ("city", -0.4),
               ('":', -0.2), (' "', -0.3), ("Paris", -0.21), ('"}}', -1.9)]


def test_forced_tool_call_scores_only_the_argument_value():
    ans = answer(FORCED_CALL, "What is the weather in Paris?", [{"name": "get_weather", "args": {"city": "Paris"}}])
    assert chosen_logprobs(ans) == [-0.21]
    assert ans.mean_logprob < -1.5  # what the mean-logprob check rejected
    check = build_check({"check": "token_logprob", "statistic": "min", "min_logprob": -1.0})
    result = check.run(ans, None)
    assert result.passed and result.score == -0.21


def test_guessed_argument_value_fails():
    tokens = [*FORCED_CALL[:14], ("Lond", -2.9), ("on", -0.1), ('"}}', -1.9)]
    ans = answer(tokens, "What is the weather in Paris?", [{"name": "get_weather", "args": {"city": "London"}}])
    assert chosen_logprobs(ans) == [-2.9, -0.1]
    assert not build_check({"check": "token_logprob", "min_logprob": -1.0}).run(ans, None).passed


def test_min_and_first_skip_whitespace_tokens():
    ans = answer([(" Rio", -2.5), (" de", -0.1), (" Janeiro", -0.05), ("\n", -3.0)])
    assert build_check({"check": "token_logprob", "statistic": "first", "min_logprob": -2.6}).run(ans, None).passed
    result = build_check({"check": "token_logprob", "statistic": "min", "min_logprob": -2.0}).run(ans, None)
    assert not result.passed and result.score == -2.5
    assert build_check({"check": "token_logprob", "statistic": "mean",
                        "min_logprob": -1.0}).run(ans, None).score == pytest.approx(-0.8833, abs=1e-4)


def test_missing_and_empty():
    check = build_check({"check": "token_logprob"})
    assert check.run(Answer.from_text("Paris"), None).passed  # no logprobs: pass with a note
    assert not build_check({"check": "token_logprob", "when_missing": "fail"}).run(Answer.from_text("x"), None).passed
    assert not check.run(answer([("\n", -0.1)]), None).passed  # only whitespace: nothing chosen


@pytest.mark.parametrize("bad", [{"min_logprob": 0.5}, {"min_logprob": float("-inf")}, {"statistic": "max"},
                                 {"min_logprob": "-1"}, {"threshold": -1.0}])
def test_token_logprob_parameters_are_validated(bad):
    with pytest.raises(ValidationError):
        build_check({"check": "token_logprob", **bad})


@pytest.mark.parametrize(("prompt", "kind"), [
    ("What is 12 + 5?", "number"), ("What is 7 times 8?", "number"), ("How many legs does a spider have?", "number"),
    ("Is the Sun a star? Answer yes or no.", "yes_no"), ("Does the Earth orbit the Sun?", "yes_no"),
    ("Answer with one word. What color is snow?", "one_word"),
    ("Reply with only the number, nothing else: what is 3 + 4?", "number_only"),
    ("What is the capital of France?", None), ("Write a haiku about rain.", None)])
def test_expected_type(prompt, kind):
    assert expected_type(prompt) == kind


@pytest.mark.parametrize(("prompt", "text", "passed"), [
    ("What is 12 + 5?", " The answer is 17.", True),
    ("What is 12 + 5?", " What is 12 + 5?", True),  # has a number: answer_type cannot tell (token checks can)
    ("What is 12 plus 5?", " plus", False),
    ("Is the Sun a star? Answer yes or no.", " Yes.", True),
    ("Is the Sun a star? Answer yes or no.", " The Sun is a star.", False),
    ("Answer with one word. What color is snow?", " White.", True),
    ("Answer with one word. What color is snow?", " Snow is white.", False),
    ("Reply with only the number, nothing else: what is 3 + 4?", "7", True),
    ("Reply with only the number, nothing else: what is 3 + 4?", "3 + 4 = 7", False),
    ("What is the capital of France?", " Lyon", True),
])
def test_answer_type(prompt, text, passed):
    ans = answer([(text, -0.1)], prompt)
    assert build_check({"check": "answer_type"}).run(ans, None).passed is passed


def test_answer_type_passes_tool_calls():
    ans = answer(FORCED_CALL, "Is it raining in Paris?", [{"name": "get_weather", "args": {"city": "Paris"}}])
    assert build_check({"check": "answer_type"}).run(ans, None).passed


@pytest.mark.parametrize(("prompt", "a", "b", "same"), [
    ("What is the capital of France?", " The capital of France is Paris.", "Paris", True),
    ("What is the capital of Brazil?", " The capital of Brazil is Rio de Janeiro.", "Brasília", False),
    ("What is 7 * 8?", " 56", "7 * 8 = 56", True),
    ("Is a bat a mammal? Answer yes or no.", "Yes, a bat is a mammal.", " yes", True),
    ("Is a bat a mammal? Answer yes or no.", "No.", " yes", False),
])
def test_key_extractor(prompt, a, b, same):
    assert (extract("key", a, prompt) == extract("key", b, prompt)) is same


def test_key_of_a_restated_question_is_none():
    assert extract("key", " What is the capital of France?", "What is the capital of France?") is None


def test_agreement_on_tool_call():
    ans = answer(FORCED_CALL, "What is the weather in Paris?", [{"name": "get_weather", "args": {"city": "Paris"}}])
    run = build_check({"check": "agreement", "models": ["x"], "extract": "key", "on_tool_call": "pass"}).run(ans, None)
    assert run.passed and run.detail == "tool call: not compared"


@pytest.mark.parametrize(("row", "text", "right"), [
    ({"extract": "contains", "reference": "Brasília", "aliases": ["Brasilia"]}, "It is Brasilia.", True),
    ({"extract": "contains", "reference": "Rome"}, "Romero", False),
    ({"extract": "number", "reference": "-12"}, "The result is -12.", True),
    ({"extract": "number_only", "reference": "7"}, "7.", True),
    ({"extract": "number_only", "reference": "7"}, "It is 7", False),
    ({"extract": "yes_no", "reference": "no"}, "No, it is not.", True),
    ({"extract": "one_word", "reference": "cold"}, "Cold.", True),
    ({"extract": "one_word", "reference": "cold"}, "It is cold.", False),
    ({"extract": "open", "reference": None}, "A cat naps.", True),
    ({"extract": "open", "reference": None}, "  ", False),
])
def test_grade(row, text, right):
    assert grade(row, text) is right


def test_grade_tool_call_and_cut_off_open_answer():
    row = {"extract": "tool_call", "reference": {"name": "get_weather", "args": {"city": "Paris"}}}
    assert grade(row, "", [{"name": "get_weather", "args": {"city": "Paris"}}])
    assert not grade(row, "", [{"name": "get_weather", "args": {"city": "paris"}}])
    assert not grade({"extract": "open", "reference": None}, "Once upon a", complete=False)


@given(st.text(max_size=300), st.text(max_size=200))
def test_answer_type_and_key_never_raise(text, prompt):
    ans = answer([(text, -0.5)], prompt)
    assert isinstance(build_check({"check": "answer_type"}).run(ans, None).passed, bool)
    assert extract("key", text, prompt) is None or isinstance(extract("key", text, prompt), str)
    assert isinstance(build_check({"check": "token_logprob"}).run(ans, None).passed, bool)


def test_apply_to_limits_the_local_checks_to_their_rungs():
    wrong_shape = answer([(" The Sun is a star.", -3.0)], "Is the Sun a star? Answer yes or no.")
    for raw in ({"check": "answer_type"}, {"check": "token_logprob", "min_logprob": -1.0}):
        assert not build_check(raw).run(wrong_shape, None).passed
        limited = build_check({**raw, "apply_to": ["gemma-270m"]}).run(wrong_shape, None)
        assert limited.passed and limited.detail == "not applied to m"
