"""Apply a policy's ``routing:`` block to a plan: skip and trust rungs by their estimates.

Called once per request after selection (so privacy, offline, tiers, context windows and the
ceiling have already removed what they remove), before the first call. When the artifact cannot
be read the request runs the plain cascade and ``estimator`` in the record is
``"unavailable: <why>"``. Skipped rungs leave the
candidates with an exclusion reason ``routing: ...``; trusted rungs go into ``plan.trusted``;
every candidate the estimator knows gets an :class:`~router.routing.decision.Estimate` in the
decision record, next to the estimator's digest.

A ``routing.tasks`` entry that names its own ``cascade:``/``confidence:`` replaces the request's
before anything else here: selection (:func:`router.routing.selection.select_candidates`, the
same function and the same settings otherwise) is run again on the task's cascade, so privacy,
offline, tiers, context windows and the ceiling exclude the task's models exactly as they would
the policy's. ``plan.task`` records the task and the cascade it ran; an entry whose ``match``
ran out of time (:data:`router.policy.routing_block.MATCH_TIMEOUT_S`) counts as no match, and
``plan.task.note`` says so.

Example:
    >>> plan = route(router.plan("Write a python function to reverse a list."))
    >>> [(e.model, e.action) for e in plan.estimates]
    [('yi-34b', 'skip'), ('gpt-3.5-turbo', 'trust'), ('gpt-4', 'last')]
"""

from __future__ import annotations

from dataclasses import replace

from langchain_core.messages import HumanMessage

from router.estimators.estimator import EstimatorError, Prediction, load_estimator
from router.policy.routing_block import RoutingBlock, RungRules, TaskRules, prompt_share
from router.routing.cascade import Plan
from router.routing.decision import Estimate, Exclusion, TaskRoute
from router.routing.selection import select_candidates
from router.routing.tokens import message_text


def prompt_of(plan: Plan) -> str:
    """The text estimates are made from: the last human message (the whole request if none)."""
    for message in reversed(plan.messages):
        if isinstance(message, HumanMessage):
            return message_text(message)
    return "\n".join(message_text(m) for m in plan.messages)


def estimator_name(block: RoutingBlock, plan: Plan, name: str) -> str:
    spec = plan.catalog.spec(name)
    return block.models.get(name) or spec.model or name


def decide(block: RungRules, candidates: list[str], known: dict[str, Prediction], *,
           task: str | None = None) -> list[Estimate]:
    """What routing does with each known candidate (in cascade order); ``task``: the name of
    the ``routing.tasks`` entry ``block`` is, said in every reason."""
    if not known:
        return []
    best_name = max(known, key=lambda n: known[n].p_correct)
    best = known[best_name].p_correct
    out = []
    for i, name in enumerate(candidates):
        guess = known.get(name)
        if guess is None:
            continue
        p, gap = guess.p_correct, best - guess.p_correct
        rule = block.thresholds(name)
        if i == len(candidates) - 1:
            action, reason = "last", "the last candidate is always tried"
        elif p < rule.skip_below:
            action, reason = "skip", f"P(correct) {p:.2f} < skip_below {rule.skip_below:g}"
        elif rule.skip_gap is not None and gap > rule.skip_gap:
            action, reason = "skip", f"{gap:.2f} below {best_name}'s {best:.2f} > skip_gap {rule.skip_gap:g}"
        elif rule.trust_gap is not None and gap <= rule.trust_gap:
            action, reason = "trust", (f"{gap:.2f} below {best_name}'s {best:.2f} <= trust_gap "
                                       f"{rule.trust_gap:g}: accepted on checks that consult no model")
        else:
            action, reason = "try", "every check decides"
        out.append(Estimate(name, p, guess.cost_usd, action, f"task {task}: {reason}" if task else reason))
    return out


def with_task(plan: Plan, task: TaskRules, share: str = "") -> Plan:
    """``plan`` on ``task``'s own cascade and checks, re-selected with the request's settings;
    ``plan`` itself (with a note) when the request changed the policy's cascade or checks (a
    rule, ``configurable``, ``--set``) or pinned a model: those win over the task. ``share``: why
    this entry of a task split by ``share`` took the prompt (the record's note)."""
    policy, settings = plan.catalog.policy, plan.settings
    if not task.designs:
        return replace(plan, task=TaskRoute(task.name, note=share))
    if settings.cascade != policy.policy.cascade or settings.confidence != policy.policy.confidence:
        why = f"rule {plan.rule!r}" if plan.rule else "an override"
        return replace(plan, task=TaskRoute(task.name, note=f"task cascade not used: {why} set the cascade or checks"))
    if plan.selection.pinned is not None:
        return replace(plan, task=TaskRoute(task.name, note="task cascade not used: the request pins a model"))
    update: dict[str, object] = {}
    if task.cascade is not None:
        update["cascade"] = task.cascade
    if task.confidence is not None:
        update["confidence"] = task.confidence
    task_settings = settings.model_copy(update=update)
    selection = select_candidates(plan.catalog, task_settings, plan.messages, needs_tools=plan.tools_bound,
                                  tools=plan.tools)
    return replace(plan, settings=task_settings, selection=selection,
                   task=TaskRoute(task.name, tuple(task_settings.cascade), note=share))


def _share_note(block: RoutingBlock, task: TaskRules, prompt: str) -> str:
    """For a task split by ``share``: where this prompt falls, and which entry that chose."""
    shares = [t.share for t in block.tasks if t.name == task.name and t.share is not None]
    if not shares:
        return ""
    where = prompt_share(prompt)
    if task.share is not None:
        return f"prompt share {where:.3f} < {task.share:g}: this entry of the split task"
    return f"prompt share {where:.3f} >= {max(shares):g}: the rest of the split task"


def route(plan: Plan) -> Plan:
    """``plan`` with its policy's routing applied (unchanged when the policy has no ``routing:``)."""
    policy = plan.catalog.policy
    block = policy.routing
    if block is None:
        return plan
    prompt = prompt_of(plan)
    found = block.match_task(prompt)
    task = found.task
    if task is not None:
        plan = with_task(plan, task, _share_note(block, task, prompt))
        if found.timed_out and plan.task is not None:
            plan = replace(plan, task=replace(plan.task, note="; ".join(filter(None, (found.note, plan.task.note)))))
    elif found.timed_out:  # no entry took the prompt, but one could not tell: the record says so
        plan = replace(plan, task=TaskRoute(found.timed_out[0], note=found.note))
    try:
        estimator = load_estimator(block.estimator_path(policy.source))
    except EstimatorError as err:
        # Routing only narrows and trusts what selection allowed, so without its estimator the
        # request runs the plain cascade (dearer, never less safe); the record says why.
        return replace(plan, estimator=f"unavailable: {err}")
    candidates = list(plan.selection.candidates)
    if not candidates:
        return replace(plan, estimator=estimator.digest)
    predictions = estimator.predict(prompt)
    known = {n: predictions[key] for n in candidates if (key := estimator_name(block, plan, n)) in predictions}
    rules: RungRules = task if task is not None else block
    estimates = decide(rules, candidates, known, task=task.name if task is not None else None)
    skipped = {e.model: e for e in estimates if e.action == "skip"}
    selection = replace(plan.selection, candidates=[n for n in candidates if n not in skipped],
                        excluded=[*plan.selection.excluded,
                                  *(Exclusion(n, f"routing: {e.reason}") for n, e in skipped.items())])
    return replace(plan, selection=selection, estimator=estimator.digest, estimates=tuple(estimates),
                   trusted=frozenset(e.model for e in estimates if e.action == "trust"))


__all__ = ["decide", "estimator_name", "prompt_of", "route", "with_task"]
