"""Confidence checks that consult other models: ``agreement``, ``verifier``, ``self_consistency``.

Each is declared in the policy like any check and validated when the file loads. Their ``run``
is a generator: it yields a :class:`ModelCall` per consultation and receives the
:class:`CallOutcome`. The cascade polices every such call exactly like a rung (privacy and
offline never reach a network model, unavailable models are refused, the worst case must fit
in what is left of the ceiling) and charges its cost to the check's entry in the record.
The policy loader checks that ``models``, ``model`` and ``apply_to`` name catalog entries.
A consultation that was refused (``skipped``) or failed (``error``) makes the check fail, with
the reason in its ``detail``: a check that could not look is not a check that passed.

``apply_to: [model, ...]`` limits a check to answers from those rungs; on other rungs it passes
with the detail ``not applied to <model>`` (the last rung of a cascade usually needs no
second opinion).

Example (YAML)::

    confidence:
      - check: agreement          # accept mistral-7b's answer when mixtral picks the same letter
        models: [mixtral-8x7b]
        extract: choice
        apply_to: [mistral-7b]
      - check: verifier           # AutoMix-style: ask a model whether the answer is right
        model: gemma
        threshold: 0.6
      - check: self_consistency   # 4 samples at T=0.8; the answer must be the majority, >= 60%
        n: 4
        temperature: 0.8
        threshold: 0.6
        extract: text
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Generator
from typing import Any, ClassVar, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import Field, StrictBool, StrictFloat, StrictInt, field_validator, model_validator

from router.checks.builtin import Answer, CheckContext, CheckResult, CheckSpec, register_check
from router.checks.extractors import EXTRACTORS, get_extractor
from router.routing.model_call import CallOutcome, ModelCall
from router.routing.tokens import message_text

Consult = Generator[ModelCall, CallOutcome, CheckResult]


def prompt_text(messages: tuple[BaseMessage, ...]) -> str:
    """The question an answer responds to: the last human message's text."""
    for message in reversed(messages):
        if message.type == "human":
            return message_text(message)
    return message_text(messages[-1]) if messages else ""


def why_not(outcome: CallOutcome) -> str | None:
    """Why a consultation gave nothing to judge by, or None when it answered."""
    if outcome.skipped is not None:
        return f"{outcome.model} call skipped: {outcome.skipped}"
    if outcome.error is not None:
        return f"{outcome.model} call failed: {outcome.error.kind}"
    if outcome.message is None:
        return f"{outcome.model} call returned nothing"
    return None


class ConsultingCheck(CheckSpec):
    """Base of checks that call models. Subclasses implement :meth:`consult`."""

    apply_to: tuple[str, ...] = ()
    max_tokens: StrictInt | None = Field(None, gt=0)

    @field_validator("extract", check_fields=False)
    @classmethod
    def _known_extractor(cls, name: str) -> str:
        if name not in EXTRACTORS:
            raise ValueError(f"unknown extractor {name!r}; known: {', '.join(sorted(EXTRACTORS))}")
        return name

    def run(self, answer: Answer, ctx: CheckContext | None) -> CheckResult | Consult:
        if self.apply_to and answer.model not in self.apply_to:
            return CheckResult(self.check, True, None, f"not applied to {answer.model}")
        return self.consult(answer, ctx)

    def consult(self, answer: Answer, ctx: CheckContext | None) -> Consult:  # pragma: no cover
        raise NotImplementedError

    def _own_answer(self, answer: Answer) -> tuple[Any, str, Any]:
        """The extractor named by ``extract``, the question, and the answer's extracted value
        (None when nothing could be extracted)."""
        extractor = get_extractor(self.extract)  # type: ignore[attr-defined]
        question = prompt_text(answer.prompt)
        return extractor, question, extractor(answer.text, question)

    def _settings(self, **extra: Any) -> dict[str, Any]:
        settings = dict(extra)
        if self.max_tokens is not None:
            settings["max_tokens"] = self.max_tokens
        return settings


@register_check("agreement")
class AgreementCheck(ConsultingCheck):
    """Ask other models the same prompt; pass when enough of them give the same answer.

    ``extract`` (``choice``, ``number``, ``code``, ``text``) says what "the same" means.
    ``min_agree`` is how many consulted models must agree (default: all). Models are asked in
    order and asking stops as soon as the verdict is certain, so a disagreement early saves
    the later calls. The answering model itself is never consulted (at temperature 0 it
    would only echo itself); with nobody left to ask the check passes.
    Score: the share of consulted models that agreed.

    A tool-call answer has no text to compare, and consultations run without tools:
    ``on_tool_call: pass`` accepts it as far as this check goes (leave it to a check that
    scores the call, such as ``token_logprob``); the default ``fail`` rejects it.
    """

    models: tuple[str, ...] = Field(min_length=1)
    extract: str = "text"
    min_agree: StrictInt | None = Field(None, gt=0)
    on_tool_call: Literal["pass", "fail"] = "fail"

    @model_validator(mode="after")
    def _enough_models(self) -> AgreementCheck:
        if self.min_agree is not None and self.min_agree > len(self.models):
            raise ValueError(f"min_agree {self.min_agree} > number of models {len(self.models)}")
        return self

    def run(self, answer: Answer, ctx: CheckContext | None) -> CheckResult | Consult:
        if answer.message.tool_calls and self.on_tool_call == "pass":
            return CheckResult(self.check, True, None, "tool call: not compared")
        return super().run(answer, ctx)

    def consult(self, answer: Answer, ctx: CheckContext | None) -> Consult:
        extractor, question, mine = self._own_answer(answer)
        if mine is None:
            return CheckResult(self.check, False, 0.0, f"no {self.extract} answer to compare")
        others = [m for m in self.models if m != answer.model]
        if not others:
            return CheckResult(self.check, True, None, "no other model to consult")
        needed = min(self.min_agree or len(others), len(others))
        agreed, asked, dissent = 0, 0, []
        for i, model in enumerate(others):
            outcome = yield ModelCall(model, answer.prompt, purpose=self.check, settings=self._settings())
            problem = why_not(outcome)
            if problem is not None:
                return CheckResult(self.check, False, _share(agreed, asked), problem)
            asked += 1
            theirs = extractor(answer_of(outcome), question)
            if theirs == mine:
                agreed += 1
            else:
                dissent.append(f"{model}={theirs!r}")
            left = len(others) - i - 1
            if agreed >= needed or agreed + left < needed:
                break
        passed = agreed >= needed
        detail = f"{agreed}/{asked} agree on {mine!r}" + ("" if passed else f"; {', '.join(dissent)}")
        return CheckResult(self.check, passed, _share(agreed, asked), detail)


VERIFIER_PROMPT = (
    "Question: {question}\n"
    "Proposed answer: {answer}\n"
    "Is the proposed answer to the question correct? Reply yes or no."
)


@register_check("verifier")
class VerifierCheck(ConsultingCheck):
    """AutoMix-style verification: ask ``model`` (default: the answering model itself) whether
    the answer is correct; pass when P(yes) ≥ ``threshold``.

    P(yes) comes from the verifier's first-token logprobs when the provider reports them
    (``top_logprobs`` when present: p(yes) / (p(yes) + p(no)); else the sampled token's own
    probability), otherwise from the text: "yes" → 1, "no" → 0. ``prompt`` is the template,
    with ``{question}`` and ``{answer}``.
    """

    uses_logprobs: ClassVar[bool] = True
    model: str | None = None
    threshold: StrictFloat = Field(0.5, ge=0, le=1, allow_inf_nan=False)
    prompt: str = VERIFIER_PROMPT
    max_tokens: StrictInt | None = Field(4, gt=0)
    top_logprobs: StrictInt = Field(0, ge=0, le=20)

    @field_validator("prompt")
    @classmethod
    def _placeholders(cls, template: str) -> str:
        for name in ("{question}", "{answer}"):
            if name not in template:
                raise ValueError(f"verifier prompt must contain {name}")
        return template

    def consult(self, answer: Answer, ctx: CheckContext | None) -> Consult:
        model = self.model or answer.model
        text = self.prompt.replace("{question}", prompt_text(answer.prompt)).replace("{answer}", answer.text.strip())
        extra: dict[str, Any] = {"temperature": 0.0}
        if self.top_logprobs:
            extra.update(logprobs=True, top_logprobs=self.top_logprobs)
        outcome = yield ModelCall(model, (HumanMessage(text),), purpose=self.check, settings=self._settings(**extra))
        problem = why_not(outcome)
        if problem is not None:
            return CheckResult(self.check, False, None, problem)
        assert outcome.message is not None
        p_yes, source = p_yes_of(outcome.message)
        if p_yes is None:
            return CheckResult(self.check, False, None, f"verifier gave no yes/no: {answer_of(outcome)[:40]!r}")
        return CheckResult(self.check, p_yes >= self.threshold, round(p_yes, 4), f"P(yes) from {source}")


def p_yes_of(message: AIMessage) -> tuple[float | None, str]:
    """P(yes) of a yes/no reply and where it came from (``top_logprobs``, ``logprobs``, ``text``)."""
    content = (message.response_metadata.get("logprobs") or {}).get("content") or []
    for item in content:
        word = _yes_no(str(item.get("token", "")))
        if word is None and str(item.get("token", "")).strip():
            break  # the first real token is neither yes nor no: fall back to the text
        if word is None:
            continue
        top = item.get("top_logprobs") or []
        if top:
            yes = sum(math.exp(t["logprob"]) for t in top if _yes_no(str(t.get("token", ""))) == "yes")
            no = sum(math.exp(t["logprob"]) for t in top if _yes_no(str(t.get("token", ""))) == "no")
            if yes + no > 0:
                return yes / (yes + no), "top_logprobs"
        p = math.exp(float(item["logprob"]))
        return (p if word == "yes" else 1.0 - p), "logprobs"
    word = _yes_no(message_text(message).strip().split(maxsplit=1)[0] if message_text(message).strip() else "")
    if word is None:
        return None, "text"
    return (1.0 if word == "yes" else 0.0), "text"


def _yes_no(token: str) -> str | None:
    word = token.strip().strip(".,!:;\"'").casefold()
    return word if word in ("yes", "no") else None


@register_check("self_consistency")
class SelfConsistencyCheck(ConsultingCheck):
    """Sample ``n`` answers at ``temperature`` from ``model`` (default: the answering model) and
    pass when the answer is the majority and the majority's share ≥ ``threshold``.

    Each sample is its own call (works with every provider); ``seed`` makes sample ``i`` use
    ``seed + i`` for providers that take a seed (llama.cpp, OpenAI). The answer itself counts
    as one vote unless ``include_answer: false``. Score: the majority's share. (A recorded model
    replays one answer whatever the temperature, so on recorded data every sample agrees.)
    """

    n: StrictInt = Field(4, ge=1, le=20)
    temperature: StrictFloat = Field(0.7, gt=0, le=2, allow_inf_nan=False)
    threshold: StrictFloat = Field(0.6, gt=0, le=1, allow_inf_nan=False)
    model: str | None = None
    extract: str = "text"
    include_answer: StrictBool = True
    seed: StrictInt | None = None

    def consult(self, answer: Answer, ctx: CheckContext | None) -> Consult:
        extractor, question, mine = self._own_answer(answer)
        if mine is None:
            return CheckResult(self.check, False, 0.0, f"no {self.extract} answer to compare")
        votes: list[str | None] = [mine] if self.include_answer else []
        for i in range(self.n):
            extra: dict[str, Any] = {"temperature": self.temperature}
            if self.seed is not None:
                extra["seed"] = self.seed + i
            outcome = yield ModelCall(self.model or answer.model, answer.prompt, purpose=self.check,
                                      settings=self._settings(**extra))
            problem = why_not(outcome)
            if problem is not None:
                return CheckResult(self.check, False, None, problem)
            votes.append(extractor(answer_of(outcome), question))
        counted = Counter(v for v in votes if v is not None)
        top, top_count = counted.most_common(1)[0] if counted else (None, 0)
        share = top_count / len(votes)
        mine_count = counted[mine]
        passed = mine_count == top_count and share >= self.threshold
        detail = f"{mine_count}/{len(votes)} votes for the answer; majority {top!r} at {share:.2f}"
        return CheckResult(self.check, passed, round(share, 4), detail)


def answer_of(outcome: CallOutcome) -> str:
    """The text of a consulted model's reply."""
    return message_text(outcome.message) if outcome.message is not None else ""


def _share(agreed: int, asked: int) -> float:
    return round(agreed / asked, 4) if asked else 0.0


__all__ = ["AgreementCheck", "ConsultingCheck", "SelfConsistencyCheck", "VERIFIER_PROMPT", "VerifierCheck",
           "p_yes_of", "prompt_text", "why_not"]
