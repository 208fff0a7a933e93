"""The ``answer_in`` check: accept an answer only when its extracted value is one of a few.

A cheap model's choice is not equally reliable whatever it picks. Recorded outcomes show it: on
the Winogrande train file Yi-34B answers "A" 539 times and "B" 348 times and is right on 81% of
its "B"s against 73% of its "A"s; where Yi-34B and Mixtral both say "B", Yi-34B is right on 85.8%
and gpt-4 on 88.5% (``router calibrate --routing --gates`` searches such gates and writes them).
The check consults no model, so a rung trusted by ``routing:`` still runs it.

``apply_to`` limits it to answers from those rungs (elsewhere it passes, ``not applied``), as
for the checks that consult models.

Example (YAML)::

    confidence:
      - check: answer_in          # yi-34b's answer stands only when it picks "B"
        values: [B]
        extract: choice
        apply_to: [yi-34b]

    >>> from router.checks import Answer, build_check
    >>> gate = build_check({"check": "answer_in", "values": ["B"], "extract": "choice"})
    >>> gate.run(Answer.from_text("B) Dennis"), None).passed
    True
"""

from __future__ import annotations

from pydantic import Field, field_validator

from router.checks.builtin import Answer, CheckContext, CheckResult, CheckSpec, register_check
from router.checks.consulting import prompt_text
from router.checks.extractors import EXTRACTORS, get_extractor


@register_check("answer_in")
class AnswerInCheck(CheckSpec):
    """Passes when the value ``extract`` pulls out of the answer is one of ``values``; fails
    when it is another or when nothing could be extracted."""

    values: tuple[str, ...] = Field(min_length=1)
    extract: str = "choice"
    apply_to: tuple[str, ...] = ()

    @field_validator("extract")
    @classmethod
    def _known_extractor(cls, name: str) -> str:
        if name not in EXTRACTORS:
            raise ValueError(f"unknown extractor {name!r}; known: {', '.join(sorted(EXTRACTORS))}")
        return name

    def run(self, answer: Answer, ctx: CheckContext | None) -> CheckResult:
        if self.apply_to and answer.model not in self.apply_to:
            return CheckResult(self.check, True, None, f"not applied to {answer.model}")
        value = get_extractor(self.extract)(answer.text, prompt_text(answer.prompt))
        if value is None:
            return CheckResult(self.check, False, None, f"no {self.extract} answer to look at")
        if value in self.values:
            return CheckResult(self.check, True, None, f"answer {value!r}")
        return CheckResult(self.check, False, None, f"answer {value!r} is not one of {list(self.values)}")


__all__ = ["AnswerInCheck"]
