"""The cascade: call candidates cheapest first, check each answer, escalate, record.

The logic is one generator, :func:`run_cascade`, that yields :class:`ModelCall` requests and
receives :class:`CallOutcome` replies; :mod:`router.routing.caller` performs them (sync or async).
All policy enforcement of calls happens here, in one place: before every call, the rung's (or
the consulted model's) worst case must fit in what is left of the ceiling, and a request under
privacy or offline never yields a call to a network model, whatever asks for it.

Example:
    >>> result = drive(run_cascade(plan), caller)
    >>> result.decision.status
    'accepted'
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from router.checks.builtin import Answer, CheckResult, CheckSpec
from router.checks.consulting import ConsultingCheck
from router.errors import ModelUnavailableError, ProviderError
from router.policy.policy_file import PolicySettings
from router.routing.catalog import Catalog
from router.routing.completeness import completeness
from router.routing.decision import Attempt, Decision, Estimate, Exclusion, TaskRoute
from router.routing.model_call import CallOutcome, ModelCall
from router.routing.outcome import warn_lost_rungs
from router.routing.selection import Selection, format_usd
from router.routing.tokens import message_text

Cascade = Generator[ModelCall, CallOutcome, "CascadeResult"]
#: Why an answer with no text (after stripping whitespace) and no tool call is never accepted.
EMPTY_ANSWER = "empty answer: no text and no tool call"


@dataclass
class Plan:
    """Everything decided before the first call."""

    catalog: Catalog
    settings: PolicySettings
    messages: tuple[BaseMessage, ...]
    selection: Selection
    rule: str | None = None
    tools_bound: bool = False
    tools: tuple[dict[str, Any], ...] = ()  # the bound tools (OpenAI format): their calls are validated
    # Set by routing (router.estimators.route): rungs accepted on their own checks, no consulting.
    trusted: frozenset[str] = frozenset()
    estimator: str | None = None
    estimates: tuple[Estimate, ...] = ()
    task: TaskRoute | None = None

    @property
    def policy_name(self) -> str:
        return self.catalog.policy.name

    def new_decision(self) -> Decision:
        return Decision(policy=self.catalog.policy.name, effective=self.settings.summary(),
                        candidates=list(self.selection.candidates),
                        excluded=list(self.selection.excluded), rule=self.rule,
                        estimator=self.estimator, estimates=list(self.estimates), task=self.task)


@dataclass
class CascadeResult:
    decision: Decision
    message: AIMessage | None = None
    chunks: list[Any] = field(default_factory=list)
    last_error: ProviderError | None = None


def answer_text(message: AIMessage) -> str:
    """What checks read: the text, or the tool calls as JSON when the answer is a tool call."""
    text = message_text(message)
    if not text.strip() and message.tool_calls:
        return json.dumps([{"name": c["name"], "args": c["args"]} for c in message.tool_calls])
    return text


@dataclass
class _Request:
    """What this request has spent (for the before-every-call ceiling check) and the answers it
    has already paid for. A deterministic call (temperature 0) made twice in one request — a model
    consulted by two rungs' checks, or a rung a check already asked — is answered from here at
    no cost instead of being bought again."""

    ceiling: float
    spent: float = 0.0
    paid: dict[tuple[Any, ...], CallOutcome] = field(default_factory=dict)
    overrun: str | None = None  # a provider reported more than its bound: no further paid call

    def left(self) -> float:
        return self.ceiling - self.spent

    def refusal(self, worst: float) -> str | None:
        """Why a call of this worst case may not be made now (None: it may)."""
        if self.overrun is not None and worst > 0:
            return f"no paid call after an overrun ({self.overrun})"
        if worst > self.left():
            return f"over ceiling: worst case {format_usd(worst)} > {format_usd(self.left())} left"
        return None

    def reuse(self, request: ModelCall, plan: Plan) -> CallOutcome | None:
        key = _reuse_key(request, plan)
        paid = self.paid.get(key) if key is not None else None
        if paid is None:
            return None
        return replace(paid, cost_usd=0.0, latency_s=0.0, chunks=[], reused=True)

    def remember(self, request: ModelCall, outcome: CallOutcome, plan: Plan) -> None:
        key = _reuse_key(request, plan)
        if key is not None and outcome.ok:
            self.paid.setdefault(key, outcome)


def _reuse_key(request: ModelCall, plan: Plan) -> tuple[Any, ...] | None:
    if float(request.settings.get("temperature", plan.settings.temperature)) > 0:
        return None  # samples are meant to differ
    tools = plan.tools_bound and request.purpose == "answer"  # only rungs get the bound tools
    return (request.model, tuple((m.type, message_text(m)) for m in request.messages),
            repr(sorted(request.settings.items())), tools)


def run_cascade(plan: Plan) -> Cascade:
    """The cascade for ``plan``; a rung lost to configuration (a refused key, a missing GGUF
    file) is logged once per router (:func:`router.routing.outcome.warn_lost_rungs`)."""
    result = yield from _cascade(plan)
    warn_lost_rungs(plan.catalog, result.decision)
    return result


def _cascade(plan: Plan) -> Cascade:
    decision = plan.new_decision()
    settings = plan.settings
    spending = _Request(settings.cost_ceiling)
    best: tuple[tuple[int, float, int], CallOutcome] | None = None
    last_error: ProviderError | None = None
    for rank, name in enumerate(plan.selection.candidates):
        worst = plan.selection.worst_case_usd[name]  # the bound tools' schemas included
        request = ModelCall(name, plan.messages, worst_case_usd=worst, room_usd=spending.left())
        outcome = spending.reuse(request, plan)
        if outcome is None:
            refusal = spending.refusal(worst)
            if refusal is not None:
                decision.excluded.append(Exclusion(name, f"{refusal} after {len(decision.attempts)} attempt(s)"))
                continue
            outcome = yield request
            if outcome.skipped is not None:
                decision.excluded.append(Exclusion(name, outcome.skipped))
                continue
            worst = max(worst, outcome.worst_case_usd)  # a retried call reserved one per try
            decision.estimated_cost_usd += worst
            spending.remember(request, outcome, plan)
        attempt = Attempt(model=name, provider=plan.catalog.spec(name).provider,
                          latency_s=outcome.latency_s, input_tokens=outcome.input_tokens,
                          output_tokens=outcome.output_tokens, cost_usd=outcome.cost_usd,
                          cost_estimated=outcome.cost_estimated, worst_case_usd=worst,
                          reused=outcome.reused, retries=[n.to_dict() for n in outcome.retries],
                          overrun=outcome.overrun)
        decision.attempts.append(attempt)
        spending.spent += outcome.cost_usd
        _note_overrun(spending, name, outcome)
        if outcome.error is not None or outcome.message is None:
            last_error = outcome.error
            attempt.error = outcome.error.to_dict() if outcome.error else {"kind": "empty"}
            if outcome.shown:
                _stop_after_shown(decision, plan, rank)
                break
            continue
        answer = Answer(model=name, text=answer_text(outcome.message), message=outcome.message,
                        token_logprobs=outcome.token_logprobs, prompt=plan.messages)
        if answer.mean_logprob is not None:
            attempt.mean_logprob = round(answer.mean_logprob, 4)
        adapter = plan.catalog.adapter(name)
        ended = completeness(outcome.message, tools=plan.tools, reasons=adapter.finish_reasons,
                             expects_finish_reason=adapter.reports_finish_reason)
        attempt.finish_reason, attempt.truncated = ended.finish_reason, ended.truncated
        if ended.problem is None and not answer.text.strip():
            ended = replace(ended, problem=EMPTY_ANSWER)  # every policy's, not only min_length's
        if ended.problem is not None:  # never accepted: no check (some cost money) can change that
            attempt.checks.append(CheckResult("complete", False, None, ended.problem))
        for check in settings.confidence if ended.problem is None else ():
            if name in plan.trusted and isinstance(check, ConsultingCheck):
                attempt.checks.append(CheckResult(check.check, True, None, "not run: trusted by routing"))
                continue
            result = yield from _run_check(check, answer, plan, spending)
            attempt.checks.append(result)
            if not result.passed:
                break  # later checks may cost money; one failure already decides
        attempt.accepted = all(c.passed for c in attempt.checks)
        if attempt.accepted:
            decision.final_model, decision.status = name, "accepted"
            return CascadeResult(decision, outcome.message, outcome.chunks, last_error)
        # Under on_exhausted: best only a complete, non-empty answer may come back (a cut-off
        # answer, a truncated tool call's JSON or an empty one is no answer); among those more
        # checks passed, then confidence, then the later rung.
        score = (sum(c.passed for c in attempt.checks),
                 attempt.mean_logprob if attempt.mean_logprob is not None else -math.inf, rank)
        usable = ended.problem is None
        if usable and (best is None or score > best[0]):
            best = (score, outcome)
        if outcome.shown:  # its tokens reached the caller: no later rung may follow them
            best = (score, outcome) if usable else None
            _stop_after_shown(decision, plan, rank)
            break
    if best is None:  # nothing complete and non-empty: a typed error, never an empty "answer"
        decision.status = "failed"
        return CascadeResult(decision, None, [], last_error)
    decision.status = "exhausted"
    if settings.on_exhausted == "raise":
        return CascadeResult(decision, None, [], last_error)
    decision.final_model = best[1].model
    return CascadeResult(decision, best[1].message, best[1].chunks, last_error)


def _stop_after_shown(decision: Decision, plan: Plan, rank: int) -> None:
    """A live attempt that was not accepted ends the cascade: the caller has seen its tokens, and
    a later rung's answer would follow them in the same stream (LangChain's fallbacks, too, only
    fall back before the first chunk)."""
    for name in plan.selection.candidates[rank + 1:]:
        decision.excluded.append(Exclusion(name, "not tried: the live answer before it was already shown"))


def _run_check(check: CheckSpec, answer: Answer, plan: Plan,
               spending: _Request) -> Generator[ModelCall, CallOutcome, CheckResult]:
    """Run one check; police, charge (or answer from what this request already paid for) any
    model call it makes."""
    try:
        run = check.run(answer, plan)
    except Exception as exc:  # a plug-in check's bug fails that check, recorded; the request goes on
        return _broken_check(check, exc)
    if not inspect.isgenerator(run):
        return run if isinstance(run, CheckResult) else _broken_check(check, None, run)
    spent = 0.0
    calls: list[dict[str, Any]] = []
    reply: CallOutcome | None = None
    try:
        while True:
            try:
                request = run.send(reply) if reply is not None else next(run)
            except StopIteration:
                raise
            except Exception as exc:  # as above, for a check that consults models
                result = _broken_check(check, exc)
                break
            if not isinstance(request, ModelCall):
                run.close()
                result = _broken_check(check, None, request)
                break
            reply = spending.reuse(request, plan)
            if reply is None:
                refusal, worst = _refusal(request, plan, spending)
                request = replace(request, worst_case_usd=worst, room_usd=spending.left())
                if refusal is not None:
                    reply = CallOutcome(request.model, skipped=refusal)
                else:
                    reply = yield request
                    spending.spent += reply.cost_usd
                    spent += reply.cost_usd
                    spending.remember(request, reply, plan)
                    _note_overrun(spending, request.model, reply)
            calls.append(_call_entry(request, reply))
    except StopIteration as stop:
        result = stop.value if isinstance(stop.value, CheckResult) else _broken_check(check, None, stop.value)
    result.cost_usd += spent
    result.calls = calls
    return result


def _note_overrun(spending: _Request, model: str, outcome: CallOutcome) -> None:
    """A call reported more than its bound: no further paid call in this request."""
    if outcome.overrun is not None and spending.overrun is None:
        spending.overrun = f"{model}: {outcome.overrun}"


def _call_entry(request: ModelCall, reply: CallOutcome) -> dict[str, Any]:
    """A check's model call as its result records it."""
    entry = {"model": request.model, "cost_usd": round(reply.cost_usd, 10), "skipped": reply.skipped,
             "reused": reply.reused, "error": reply.error.kind if reply.error else None}
    if reply.overrun is not None:
        entry["overrun"] = reply.overrun
    return entry


def _broken_check(check: CheckSpec, exc: Exception | None, returned: object = None) -> CheckResult:
    """The failed result of a check that raised ``exc`` or returned/yielded ``returned``
    (neither a CheckResult nor a ModelCall)."""
    if exc is not None:
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
    else:
        error = f"returned {type(returned).__name__}, expected CheckResult (or bool/number from a function)"
    return CheckResult(check.check, False, None, "check failed to run", error=error)


def _refusal(request: ModelCall, plan: Plan, spending: _Request) -> tuple[str | None, float]:
    """Why a check's model call may not be made (or None), and its worst-case cost.
    Same rules as the cascade's rungs."""
    catalog, settings = plan.catalog, plan.settings
    if request.model not in catalog.policy.models:
        return f"unknown model {request.model!r}", 0.0
    spec = catalog.spec(request.model)
    if settings.local_only and not spec.local:
        return ("not local: privacy" if settings.privacy else "not local: offline"), 0.0
    reason = catalog.unavailable_reason(request.model)
    if reason:
        return reason, 0.0
    try:
        tokens = catalog.count_tokens(request.model, request.messages)
    except ModelUnavailableError as err:
        return f"unavailable: {err}", 0.0
    max_tokens = int(request.settings.get("max_tokens", settings.max_output_tokens))
    worst = spec.worst_case_usd(tokens, max_tokens) * int(request.settings.get("n", 1))
    return spending.refusal(worst), worst


def drive(cascade: Generator[ModelCall, CallOutcome, Any],
          perform: Callable[[ModelCall], CallOutcome]) -> Any:
    """Run a cascade generator to the end, answering each request with ``perform``."""
    try:
        request = next(cascade)
        while True:
            request = cascade.send(perform(request))
    except StopIteration as stop:
        return stop.value


async def adrive(cascade: Generator[ModelCall, CallOutcome, Any],
                 perform: Callable[[ModelCall], Any]) -> Any:
    """The async twin of :func:`drive`: ``perform`` returns an awaitable."""
    try:
        request = next(cascade)
        while True:
            request = cascade.send(await perform(request))
    except StopIteration as stop:
        return stop.value
