"""The ``routing:`` block: estimates skip and trust rungs, the record shows each candidate's
estimate and the estimator's digest, privacy/tiers/ceiling still decide first, and the fast
table used by calibration scores routed designs exactly as the real router replays them.
Recorded models over the shipped RouterBench sample; the estimator is trained here on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from router import PolicyRouter, load_policy
from router.errors import PolicyError
from router.estimators import read_estimator
from router.lab.calibrate import policy_yaml
from router.lab.cascade_table import (
    Design,
    Rung,
    build_table,
    evaluate,
    evaluate_many,
    is_design_check,
    routing_masks,
)
from router.lab.simulate import simulate
from router.policy.routing_block import Thresholds
from router.routing.decision import decision_from_dict

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "policies" / "cascade-routerbench.yaml"
SAMPLE = ROOT / "data" / "routerbench-sample"
FILES = [SAMPLE / "arc_challenge.jsonl", SAMPLE / "winogrande.jsonl", SAMPLE / "mbpp.jsonl"]
D0 = Design((Rung("yi-34b", ("mixtral-8x7b",)), Rung("gpt-3.5-turbo", ("mixtral-8x7b", "yi-34b")), Rung("gpt-4")))
# answer_in gates consult no model: a trusted rung still runs its gate.
GATED = Design((Rung("yi-34b", ("mixtral-8x7b",), accept=("A", "B")), Rung("gpt-3.5-turbo", accept=("B", "C", "D")),
                Rung("gpt-4")))


@pytest.fixture(scope="module")
def artifact(sample_estimator: Path, tmp_path_factory) -> Path:
    """The session's sample estimator, in this module's own folder (its policies are written beside it)."""
    where = tmp_path_factory.mktemp("routing") / sample_estimator.name
    shutil.copyfile(sample_estimator, where)
    return where


def routed_policy(artifact: Path, design: Design, rules: list[Thresholds], dataset: Path | None = None) -> Path:
    """The shipped catalog with ``design`` and a routing block, written beside ``artifact``."""
    base = load_policy(SHIPPED)
    rungs = {r.model: t.model_dump(exclude_defaults=True) for r, t in zip(design.rungs, rules, strict=True)
             if t.model_dump(exclude_defaults=True)}
    text = policy_yaml(SHIPPED, design, base_checks=base.policy.confidence, extract="choice", name="routed",
                       routing={"estimator": artifact.name, "rungs": rungs})
    if dataset is not None:
        text = text.replace("${ROUTERBENCH_DATASET:-data/routerbench-sample/arc_challenge.jsonl}", str(dataset))
    path = artifact.with_name(f"routed-{abs(hash((str(design), str(rules)))) % 10**8}.yaml")
    path.write_text(text)
    return path


def test_routing_block_is_validated_with_locations(tmp_path):
    raw = yaml.safe_load(SHIPPED.read_text())
    raw["routing"] = {"estimator": "x.npz", "skip_gpa": 0.2}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(PolicyError) as err:
        load_policy(tmp_path / "p.yaml")
    issue = err.value.issues[0]
    assert issue.key == "routing.skip_gpa" and issue.suggestion == "skip_gap" and issue.line > 0
    raw["routing"] = {"estimator": "x.npz", "rungs": {"yi-34b": {"trust_gap": 1.5}}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(PolicyError, match="less than or equal to 1"):
        load_policy(tmp_path / "p.yaml")



def test_designs_scored_together_score_exactly_as_each_alone(artifact, sample):
    """Searches score designs in batches (rows of one array per rung); one design scored alone is
    what the real router replays (above), so a batch must give every row exactly that: nothing a
    row pays, accepts or answers may leak into another, whatever the mix of sizes and routing."""
    policy = load_policy(routed_policy(artifact, D0, [Thresholds()] * 3))
    table = build_table(policy, sample.records, [c for c in policy.policy.confidence if not is_design_check(c)],
                        "choice")
    estimator = read_estimator(artifact)
    raw, _ = estimator.predict_matrix([r.prompt for r in sample.records])
    p = raw[[estimator.models.index(m) for m in table.recorded]]
    rules = [[Thresholds(skip_gap=0.2, trust_gap=0.05), Thresholds(skip_gap=0.3, trust_gap=0.08), Thresholds()],
             [Thresholds(skip_below=0.6), Thresholds(trust_gap=0.1), Thresholds()]]
    pair = Design((Rung("mixtral-8x7b", ("yi-34b", "gpt-3.5-turbo"), 1), Rung("gpt-4")))
    # The same models at other places: one row's voter is another's rung.
    swapped = Design((Rung("mixtral-8x7b", ("yi-34b",)), Rung("gpt-3.5-turbo", ("yi-34b",)), Rung("gpt-4")))
    cases = [(D0, None), (pair, None), (GATED, rules[0]), (Design((Rung("gpt-4"),)), None), (D0, rules[1]),
             (swapped, None), (pair, [Thresholds(trust_gap=0.05), Thresholds()]), (GATED, None), (D0, rules[0]),
             (swapped, rules[1])]
    masks = [routing_masks(table, d, p, r) if r is not None else None for d, r in cases]
    together = evaluate_many(table, [d for d, _ in cases], routings=masks, cache={})
    for (design, _), mask, got in zip(cases, masks, together, strict=True):
        alone = evaluate(table, design, routing=mask)
        assert got.design == design
        assert (got.accuracy, got.cost, got.accepted) == (alone.accuracy, alone.cost, alone.accepted)
        assert np.array_equal(got.correct, alone.correct) and np.array_equal(got.cost_each, alone.cost_each)
    assert len({(s.cost, s.accuracy) for s in together}) >= 8  # the rows differ, or a leak could hide


def test_explain_shows_each_candidates_estimate_and_why_it_was_skipped(artifact, sample):
    path = routed_policy(artifact, D0, [Thresholds(skip_below=0.99), Thresholds(), Thresholds()], FILES[2])
    router = PolicyRouter(policy=load_policy(path))
    prompt = next(r.prompt for r in sample.records if r.task == "mbpp")
    record = router.explain(prompt)
    assert record.candidates == ["gpt-3.5-turbo", "gpt-4"]
    skipped = next(e for e in record.excluded if e.model == "yi-34b")
    assert skipped.reason.startswith("routing: P(correct) ") and "< skip_below 0.99" in skipped.reason
    digest = read_estimator(artifact).digest
    shown = record.to_dict()
    assert shown["estimator"] == digest
    assert [(e["model"], e["action"]) for e in shown["estimates"]] == [
        ("yi-34b", "skip"), ("gpt-3.5-turbo", "try"), ("gpt-4", "last")]
    assert all(0 < e["p_correct"] < 1 and e["cost_usd"] >= 0 for e in shown["estimates"])
    assert "P(correct)" in record.summary() and digest in record.summary()
    # The answered request carries the same record.
    answered = router.invoke(prompt).response_metadata["routing"]
    assert answered["estimator"] == digest
    assert decision_from_dict(answered).estimates[0].model == "yi-34b"
    assert answered["attempts"][0]["model"] == "gpt-3.5-turbo"


def test_a_trusted_rung_is_accepted_on_its_own_checks_without_paying_for_consultations(artifact, sample):
    prompt = next(r for r in sample.records if r.task == "mbpp")
    trusted = PolicyRouter(policy=load_policy(routed_policy(
        artifact, D0, [Thresholds(skip_below=0.99), Thresholds(trust_gap=1.0), Thresholds()], FILES[2])))
    plain = PolicyRouter(policy=load_policy(routed_policy(
        artifact, D0, [Thresholds(skip_below=0.99), Thresholds(), Thresholds()], FILES[2])))
    got = trusted.invoke(prompt.prompt).response_metadata["routing"]
    assert got["final_model"] == "gpt-3.5-turbo" and got["status"] == "accepted"
    agreement = [c for c in got["attempts"][0]["checks"] if c["check"] == "agreement"]
    assert agreement and all(c["detail"] == "not run: trusted by routing" and "calls" not in c for c in agreement)
    assert got["total_cost_usd"] == pytest.approx(prompt.outcomes["gpt-3.5-turbo-1106"].cost_usd)
    # Untrusted, the same rung consults mixtral (a code answer has no choice letter: it fails and escalates).
    other = plain.invoke(prompt.prompt).response_metadata["routing"]
    assert other["total_cost_usd"] > got["total_cost_usd"]


def test_routing_acts_only_among_candidates_and_never_drops_the_last(artifact, sample):
    path = routed_policy(artifact, D0, [Thresholds(skip_below=0.99)] * 3, FILES[0])
    router = PolicyRouter(policy=load_policy(path))
    prompt = sample.records[0].prompt
    # Every rung but the last is skipped; the last is always tried.
    assert router.explain(prompt).candidates == ["gpt-4"]
    # A tier floor removes rungs first: routing only sees what selection left.
    record = router.explain(prompt, config={"configurable": {"quality_tier": "premium"}})
    assert record.candidates == ["gpt-4"]
    assert [e.model for e in record.estimates] == ["gpt-4"]
    assert {e.model: e.reason for e in record.excluded}["yi-34b"].startswith("below tier floor")
    # The ceiling still applies to what routing keeps.
    poor = router.explain(prompt, config={"configurable": {"cost_ceiling": 1e-9}})
    assert poor.candidates == [] and poor.estimates == []


def test_without_its_estimator_a_routed_policy_runs_the_plain_cascade_and_says_why(artifact, sample, tmp_path):
    path = routed_policy(artifact, D0, [Thresholds(skip_below=0.99), Thresholds(), Thresholds()], FILES[2])
    moved = tmp_path / path.name
    moved.write_text(path.read_text())  # the policy without the artifact beside it
    prompt = next(r.prompt for r in sample.records if r.task == "mbpp")
    record = PolicyRouter(policy=load_policy(moved)).invoke(prompt).response_metadata["routing"]
    assert record["estimator"].startswith("unavailable: ") and "estimator file not found" in record["estimator"]
    assert record["estimates"] == []
    assert record["attempts"][0]["model"] == "yi-34b"  # nothing skipped


@pytest.mark.parametrize("rules", [
    [Thresholds(skip_gap=0.2, trust_gap=0.05), Thresholds(skip_gap=0.3, trust_gap=0.08), Thresholds()],
    [Thresholds(skip_below=0.6), Thresholds(trust_gap=0.1), Thresholds()],
    [Thresholds(trust_gap=0.0), Thresholds(skip_gap=0.05), Thresholds()],
], ids=str)
@pytest.mark.parametrize("design", [D0, GATED], ids=str)
def test_table_scores_routed_designs_exactly_as_the_real_router_replays_them(artifact, sample, rules, design):
    policy = load_policy(routed_policy(artifact, design, rules))
    estimator = read_estimator(artifact)
    base = [c for c in policy.policy.confidence if not is_design_check(c)]
    table = build_table(policy, sample.records, base, "choice")
    raw, _ = estimator.predict_matrix([r.prompt for r in sample.records])
    p = raw[[estimator.models.index(m) for m in table.recorded]]
    fast = evaluate(table, design, routing=routing_masks(table, design, p, rules))
    real = simulate(policy, sample, progress=False)
    assert real.n == 260
    assert [bool(c) for c in fast.correct] == [bool(r.correct) for r in real.rows]
    assert fast.cost_each == pytest.approx(np.array([r.cost_usd for r in real.rows]), rel=1e-9, abs=1e-12)
    # Routing changed something, or this case would not test it.
    plain = evaluate(table, design)
    assert (plain.cost_each != fast.cost_each).any()
    if design is GATED:  # and so did the gates
        ungated = Design(tuple(Rung(r.model, r.voters, r.min_agree) for r in design.rungs))
        assert (evaluate(table, ungated, routing=routing_masks(table, ungated, p, rules)).correct != fast.correct).any()


PER_TASK = {"arc-challenge": [Thresholds(trust_gap=0.1), Thresholds(skip_gap=0.1), Thresholds()],
            "mbpp": [Thresholds(skip_below=1.0), Thresholds(trust_gap=1.0), Thresholds()],
            "winogrande": [Thresholds(skip_below=0.6), Thresholds(), Thresholds()]}


def tasks_policy(artifact: Path, per_task: dict[str, list[Thresholds]], dataset: Path | None = None,
                 only: tuple[str, ...] | None = None) -> Path:
    """``routed_policy`` with a ``routing.tasks`` entry per task (prompt patterns of task_routing,
    in their order: the first match wins, and the mbpp pattern would also match some other prompts)."""
    from router.lab.task_routing import TASK_PATTERNS

    path = routed_policy(artifact, D0, [Thresholds()] * 3, dataset)
    raw = yaml.safe_load(path.read_text())
    raw["routing"]["tasks"] = [
        {"name": t, "match": TASK_PATTERNS[t],
         "rungs": {r.model: x.model_dump(exclude_defaults=True) for r, x in zip(D0.rungs, rules, strict=True)}}
        for t in TASK_PATTERNS if (rules := per_task.get(t)) is not None and (only is None or t in only)]
    out = path.with_name("tasks-" + path.name)
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def test_routing_tasks_are_validated_with_locations(tmp_path):
    raw = yaml.safe_load(SHIPPED.read_text())
    raw["routing"] = {"estimator": "x.npz", "tasks": [{"name": "code", "match": "def ("}]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(PolicyError, match="not a regular expression") as err:
        load_policy(tmp_path / "p.yaml")
    assert err.value.issues[0].key == "routing.tasks.0.match" and err.value.issues[0].line > 0
    raw["routing"] = {"estimator": "x.npz", "tasks": [{"name": "code"}]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(PolicyError, match="match"):
        load_policy(tmp_path / "p.yaml")


def test_each_task_gets_its_own_rules_and_an_unmatched_prompt_the_blocks(artifact, sample):
    router = PolicyRouter(policy=load_policy(tasks_policy(artifact, PER_TASK, FILES[2], only=("mbpp",))))
    code = next(r.prompt for r in sample.records if r.task == "mbpp")
    record = router.explain(code)
    # mbpp: yi-34b always skipped, gpt-3.5-turbo always trusted; the reason names the task.
    assert record.candidates == ["gpt-3.5-turbo", "gpt-4"]
    assert {e.model: e.reason for e in record.excluded}["yi-34b"].startswith("routing: task mbpp: P(correct)")
    assert [(e.model, e.action) for e in record.estimates] == [
        ("yi-34b", "skip"), ("gpt-3.5-turbo", "trust"), ("gpt-4", "last")]
    answered = router.invoke(code).response_metadata["routing"]
    assert answered["final_model"] == "gpt-3.5-turbo" and len(answered["attempts"]) == 1
    # A prompt of no listed task: the block's own rules (here none), every rung tried.
    choice = next(r.prompt for r in sample.records if r.task == "arc-challenge")
    other = router.explain(choice)
    assert other.candidates == ["yi-34b", "gpt-3.5-turbo", "gpt-4"]
    assert all(not e.reason.startswith("task ") for e in other.estimates)


def test_table_scores_per_task_routing_exactly_as_the_real_router_replays_it(artifact, sample):
    from router.lab.task_routing import task_masks

    policy = load_policy(tasks_policy(artifact, PER_TASK))
    estimator = read_estimator(artifact)
    base = [c for c in policy.policy.confidence if c.check != "agreement"]
    table = build_table(policy, sample.records, base, "choice")
    raw, _ = estimator.predict_matrix([r.prompt for r in sample.records])
    p = raw[[estimator.models.index(m) for m in table.recorded]]
    tasks = np.array([r.task for r in sample.records])
    fast = evaluate(table, D0, routing=task_masks(table, D0, p, tasks, PER_TASK))
    real = simulate(policy, sample, progress=False)
    assert [bool(c) for c in fast.correct] == [bool(r.correct) for r in real.rows]
    assert fast.cost_each == pytest.approx(np.array([r.cost_usd for r in real.rows]), rel=1e-9, abs=1e-12)
    # The tasks were told apart: mbpp prompts cost what gpt-3.5-turbo alone costs.
    code = tasks == "mbpp"
    gpt35 = table.cost[table.model_index("gpt-3.5-turbo")]
    assert fast.cost_each[code] == pytest.approx(gpt35[code])
    assert (fast.cost_each[~code] != gpt35[~code]).any()
