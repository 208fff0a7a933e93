"""``answer_type``: the answer has the shape the question asked for.

A question that asks for a number ("What is 7 * 8?", "How many legs...") needs an answer with a
number; one that asks for yes or no ("... Answer yes or no.", "Is ...?") needs an answer that
starts with yes or no; "Answer with one word" needs one word; "only the number" needs nothing
but a number. Small models often answer with the wrong kind of thing (a restated question, a
sentence for a yes/no): that answer is wrong whatever its logprobs. A question that asks for
none of these passes.

Example:
    >>> from router.checks import build_check, Answer
    >>> expected_type("What is 12 + 5?")
    'number'
    >>> answer_is("number", "The answer is 17.")
    True
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from router.checks.builtin import Answer, CheckContext, CheckResult, CheckSpec, register_check
from router.checks.consulting import prompt_text
from router.checks.extractors import extract_number, normalize_text

Kind = Literal["number", "number_only", "yes_no", "one_word"]

_ONLY_NUMBER = re.compile(r"\bonly (?:the|a) number\b|\bjust (?:the|a) number\b", re.IGNORECASE)
_ONE_WORD = re.compile(r"\b(?:in|with) (?:one|a single) word\b", re.IGNORECASE)
_YES_NO = re.compile(r"\byes or no\b|^\s*(?:is|are|do|does|did|can|could|was|were|has|have|will)\b", re.IGNORECASE)
_NUMBER = re.compile(r"\bhow (?:many|much)\b|^\s*what is -?\d+\s*(?:[-+*/x×]|plus|minus|times|divided by)\s*-?\d+",
                     re.IGNORECASE)
_ANSWER_YES_NO = re.compile(r"^\W*(?:yes|no)\b", re.IGNORECASE)
_WORD_NUMBERS = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                 "twelve", "twenty", "sixty", "hundred"}


def expected_type(question: str) -> Kind | None:
    """The kind of answer ``question`` asks for, or None."""
    if _ONLY_NUMBER.search(question):
        return "number_only"
    if _ONE_WORD.search(question):
        return "one_word"
    if _YES_NO.search(question):
        return "yes_no"
    if _NUMBER.search(question):
        return "number"
    return None


def answer_is(kind: Kind, text: str) -> bool:
    """Does ``text`` have the shape ``kind``?"""
    if kind == "yes_no":
        return _ANSWER_YES_NO.match(text) is not None
    words = (normalize_text(text) or "").split()
    if kind == "one_word":
        return len(words) == 1
    if kind == "number_only":
        return re.fullmatch(r"\s*-?\d+(?:[.,]\d+)?\s*\.?\s*", text) is not None
    return extract_number(text) is not None or any(w in _WORD_NUMBERS for w in words)


@register_check("answer_type")
class AnswerTypeCheck(CheckSpec):
    """Fails an answer whose shape is not the one the question asked for (``kinds`` limits
    which expectations are enforced; default: all). Tool-call answers pass (the grammar gave
    them their shape). ``apply_to: [model, ...]`` limits it to those rungs."""

    kinds: tuple[Kind, ...] = Field(("number", "number_only", "yes_no", "one_word"), min_length=1)
    apply_to: tuple[str, ...] = ()

    def run(self, answer: Answer, ctx: CheckContext | None) -> CheckResult:
        if self.apply_to and answer.model not in self.apply_to:
            return CheckResult(self.check, True, None, f"not applied to {answer.model}")
        if answer.message.tool_calls:
            return CheckResult(self.check, True, None, "tool call")
        kind = expected_type(prompt_text(answer.prompt))
        if kind is None or kind not in self.kinds:
            return CheckResult(self.check, True, None, "no expected type")
        passed = answer_is(kind, answer.text)
        return CheckResult(self.check, passed, None, f"{kind} asked" + ("" if passed else f", got {answer.text[:40]!r}"))


__all__ = ["AnswerTypeCheck", "answer_is", "expected_type"]
