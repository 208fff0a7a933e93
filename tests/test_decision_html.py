"""The decision on an answer, typed (``Decision.from_message``) and rendered as HTML for Jupyter.
The answers come from the real bundled llama.cpp model under the shipped offline policy."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage

from router import Decision, DecisionMissingError, PolicyRouter
from router.checks.builtin import CheckResult
from router.routing.decision import Attempt, Exclusion, decision_from_dict

POLICIES = Path(__file__).resolve().parent.parent / "policies"
QUESTION = "What is the capital of France?"
VOID = {"br", "hr", "img", "input", "meta", "link"}


class Structure(HTMLParser):
    """Tag balance, table rows and the text of an HTML fragment."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.rows = 0
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "tr":
            self.rows += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.problems.append(f"unbalanced </{tag}>")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(fragment: str) -> Structure:
    parser = Structure()
    parser.feed(fragment)
    parser.close()
    assert not parser.problems and not parser.stack, (parser.problems, parser.stack)
    return parser


@pytest.fixture(scope="module")
def router() -> PolicyRouter:
    return PolicyRouter.from_yaml(POLICIES / "offline.yaml")


@pytest.mark.slow
def test_from_message_returns_the_typed_decision_of_a_real_answer(router: PolicyRouter):
    message = router.invoke(QUESTION)
    decision = Decision.from_message(message)
    assert isinstance(decision, Decision)
    assert decision.to_dict() == decision_from_dict(message.response_metadata["routing"]).to_dict()
    assert decision.final_model == "gemma-270m" and decision.attempts[0].model == "gemma-270m"

    html = decision._repr_html_()
    page = parse(html)
    assert page.rows == 1 + len(decision.attempts)  # header + one per attempt
    text = "".join(page.text)
    assert "offline" in text and decision.status in text and "gemma-270m" in text
    for exclusion in decision.excluded:
        assert exclusion.reason in text
    for check in decision.attempts[0].checks:
        assert check.check in text


@pytest.mark.slow
def test_from_message_reads_a_stream_as_chunks_or_summed(router: PolicyRouter):
    chunks = list(router.stream(QUESTION))
    from_list = Decision.from_message(chunks)
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert from_list.final_model == "gemma-270m"
    assert Decision.from_message(total).to_dict() == from_list.to_dict()
    assert Decision.from_message(total.response_metadata).to_dict() == from_list.to_dict()
    record = total.response_metadata["routing"]
    assert Decision.from_message(record).to_dict() == from_list.to_dict()
    assert Decision.from_message({"answer": "Paris", "routing": record}).to_dict() == from_list.to_dict()


def test_from_message_without_a_record_is_a_typed_error():
    with pytest.raises(DecisionMissingError) as err:
        Decision.from_message(AIMessage("hello"))
    assert err.value.source == "AIMessage"
    with pytest.raises(DecisionMissingError):
        Decision.from_message([])


def test_explain_renders_without_attempts(router: PolicyRouter):
    page = parse(router.explain(QUESTION)._repr_html_())
    text = "".join(page.text)
    assert "explained" in text and "no model called" in text and page.rows == 2  # header + the note


def test_every_value_is_escaped():
    hostile = "<script>alert(1)</script>"
    decision = Decision(
        policy=hostile, effective={"privacy": hostile}, candidates=[hostile],
        excluded=[Exclusion(hostile, hostile)], final_model=hostile, status="accepted", rule=hostile,
        attempts=[Attempt(model=hostile, provider="x", accepted=True,
                          checks=[CheckResult(hostile, False, 0.5, detail=hostile)]),
                  Attempt(model="m", provider="x", error={"kind": hostile})])
    html = decision._repr_html_()
    page = parse(html)
    assert "script" not in page.tags
    assert "<script>" not in html and html.count("&lt;script&gt;") == 11  # every field above
    assert page.rows == 3
