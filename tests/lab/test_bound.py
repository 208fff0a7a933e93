"""The answer-based bound of ``router calibrate`` (router.lab.bound): exact on a hand-worked
table, and never above the cost of any design the search scores at that design's accuracy, on
random tables (missing records, unextracted answers, failed base checks) and on the RouterBench
sample with the real extractor and base checks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router import load_policy
from router.checks import build_check
from router.lab.bound import answer_bound
from router.lab.calibrate import CalibrationError, build_table, calibrate, combine
from router.lab.calibrate_search import staged
from router.lab.cascade_table import Design, OutcomeTable, Rung, evaluate
from router.lab.targets import parse_target

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "routerbench-sample"


def table_of(answer, correct, cost, *, present=None, ok=None) -> OutcomeTable:
    """``answer``: each model's answer per prompt as an integer (the same integer, the same answer;
    -1: nothing extracted); its values are "v0", "v1"..."""
    answer = np.asarray(answer, np.int32)
    shape = answer.shape
    names = (*(f"m{i}" for i in range(shape[0] - 1)), "final")
    present = np.ones(shape, bool) if present is None else np.asarray(present, bool)
    ok = np.ones(shape, bool) if ok is None else np.asarray(ok, bool)
    value = np.array([[f"v{a}" if a >= 0 else None for a in row] for row in answer], object)
    return OutcomeTable(names, names, present, answer, np.asarray(correct, bool), np.asarray(cost, float),
                        ok.astype(np.int16), ok, 1, value)


# Two cheap models agree (and are right) on prompts 0 and 1; on 2 only m0 is right, on 3 only m1;
# the final model is always right. Asking m0 alone: 3 right for 4. For all 4 right the cheapest
# tree asks m0 and m1 and the final model only where they disagree: 2 * 2 + 2 * 12 = 28 (asking
# the final model everywhere costs 40; m0 then the final model 44).
HAND = table_of(answer=[[0, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]],
                correct=[[1, 1, 1, 0], [1, 1, 0, 1], [1, 1, 1, 1]],
                cost=[[1] * 4, [1] * 4, [10] * 4])


@pytest.mark.parametrize(("needed", "cost"), [(3, 4.0), (4, 28.0), (3.5, 16.0), (0, 4.0)])
def test_bound_on_a_hand_worked_table(needed, cost):
    bound = answer_bound(HAND, final="final", cheap=["m0", "m1"], needed=needed)
    assert bound.reachable
    assert bound.cost == pytest.approx(cost)
    assert bound.correct >= needed - 1e-9
    assert bound.reference_cost == 40 and bound.reference_correct == 4


def test_trees_that_see_answer_values_find_what_a_gate_finds():
    # m0 is right whenever it says v1 and on one of its two v0 answers: agreements cannot tell
    # them apart, but "accept m0's v1, else ask the final model" gets all 4 right for 4 + 2 * 10.
    table = table_of(answer=[[1, 1, 0, 0], [0, 0, 0, 0]], correct=[[1, 1, 0, 1], [1, 1, 1, 1]],
                     cost=[[1] * 4, [10] * 4])
    assert answer_bound(table, final="final", cheap=["m0"], needed=4).cost == pytest.approx(40)
    seeing = answer_bound(table, final="final", cheap=["m0"], needed=4, values=True)
    assert seeing.cost == pytest.approx(24) and seeing.values and "their values" in str(seeing)
    gated = evaluate(table, Design((Rung("m0", accept=("v1",)), Rung("final"))))
    assert (gated.correct.sum(), gated.cost) == (4, 24)


def test_replayed_trees_follow_what_they_learned_and_ask_the_final_model_where_they_learned_nothing():
    # Fitted on HAND for all 4 right: ask m0 and m1, take m0's answer where they agree, else ask
    # the final model and take the answer of whoever it agrees with.
    new = table_of(answer=[[0, 1, 0], [0, 0, 1], [1, 0, 1]], correct=[[0, 0, 0], [0, 1, 1], [1, 1, 1]],
                   cost=[[1] * 3, [1] * 3, [10] * 3], present=[[1, 1, 0], [1, 1, 1], [1, 1, 1]])
    bound = answer_bound(HAND, final="final", cheap=["m0", "m1"], needed=4, replay=(new, None))
    assert bound.replayed is not None
    # Prompt 0: m0 and m1 agree, wrongly: m0's answer for 2. Prompt 1: they disagree, the final
    # model sides with m1: m1's answer, right, for 12. Prompt 2: m0 has no record, a state HAND
    # never showed: the final model's answer, right, for 10 (a missing record costs nothing).
    assert (bound.replayed.correct, bound.replayed.cost) == (2, 2 + 12 + 10)
    assert bound.replayed.reference_correct == 3 and bound.replayed.reference_cost == 30


def test_depth_limits_the_trees():
    # With one cheap model the disagreement cannot be seen: all 4 right needs the final model
    # on every prompt m0 answers, so m0 only adds cost.
    assert answer_bound(HAND, final="final", cheap=["m0", "m1"], needed=4, depth=1).cost == pytest.approx(40)
    assert answer_bound(HAND, final="final", cheap=["m0", "m1"], needed=4, depth=0).cost == pytest.approx(40)


def test_unreachable_target_says_so():
    bound = answer_bound(HAND, final="final", cheap=["m0", "m1"], needed=5)
    assert not bound.reachable and "no tree" in str(bound)
    with pytest.raises(CalibrationError, match="depth"):
        answer_bound(HAND, final="final", cheap=["m0"], needed=1, depth=-1)


def test_tasks_get_their_own_trees():
    # m0 and m1 always disagree; m1 is right on task "x", m0 on task "y". A tree per task asks one
    # cheap model (4 in all); one tree for both cannot tell who is right and pays the final model
    # everywhere (40).
    answer = [[0, 1, 0, 1], [1, 0, 1, 0], [0, 0, 0, 0]]
    correct = [[0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1]]
    table = table_of(answer, correct, [[1] * 4, [1] * 4, [10] * 4])
    tasks = np.array(["x", "x", "y", "y"])
    assert answer_bound(table, final="final", cheap=["m0", "m1"], needed=4, tasks=tasks).cost == pytest.approx(4)
    assert answer_bound(table, final="final", cheap=["m0", "m1"], needed=4).cost == pytest.approx(40)


def test_trees_see_failed_base_checks():
    # m0 is right on prompt 0 and fails the base checks (wrong) on prompt 1: "m0 -> final" escalates
    # exactly there, 2 right for 1 + 1 + 10. A bound blind to the verdicts would need 20.
    table = table_of([[0, 0], [0, 0]], [[1, 0], [1, 1]], [[1, 1], [10, 10]], ok=[[1, 0], [1, 1]])
    design = evaluate(table, Design((Rung("m0"), Rung("final"))))
    assert (design.correct.sum(), design.cost) == (2, 12)
    assert answer_bound(table, final="final", cheap=["m0"], needed=2).cost == pytest.approx(12)


def test_trees_fall_back_when_the_final_record_is_missing():
    # m0 and m1 disagree on both prompts; the final model is right on prompt 0 and has no record
    # for prompt 1, where the cascade answers with the best rejected answer, m0's, which is right.
    # The cheapest tree does the same without m1: m0, then the final model, then m0's answer where
    # the final model has none (2 + 10).
    table = table_of([[0, 0], [1, 1], [0, -1]], [[0, 1], [1, 0], [1, 0]], [[1, 1], [1, 1], [10, 0]],
                     present=[[1, 1], [1, 1], [1, 0]])
    design = evaluate(table, Design((Rung("m0", ("m1",)), Rung("final"))))
    assert (design.correct.sum(), design.cost) == (2, 14)
    assert answer_bound(table, final="final", cheap=["m0", "m1"], needed=2).cost == pytest.approx(12)


@st.composite
def random_tables(draw):
    n = draw(st.integers(4, 14))
    models = 4  # three cheap, then the final model
    answer = draw(st.lists(st.lists(st.integers(-1, 2), min_size=n, max_size=n), min_size=models, max_size=models))
    gold = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    present = draw(st.lists(st.lists(st.sampled_from([True, True, True, False]), min_size=n, max_size=n),
                            min_size=models, max_size=models))
    ok = draw(st.lists(st.lists(st.booleans(), min_size=n, max_size=n), min_size=models, max_size=models))
    prices = [draw(st.floats(0.5, 3)) for _ in range(models - 1)] + [draw(st.floats(5, 20))]
    a = np.array(answer)
    correct = (a == np.array(gold)) & np.array(present)
    cost = np.array([[p] * n for p in prices]) * np.array(present)
    return table_of(a, correct, cost, present=present, ok=ok)


def _cheapest(scored) -> dict[int, tuple[float, str]]:
    """Correct answers: the cheapest design with that many."""
    cheapest: dict[int, tuple[float, str]] = {}
    for s in scored:
        right = int(s.correct.sum())
        if right not in cheapest or s.cost < cheapest[right][0]:
            cheapest[right] = (s.cost, str(s.design))
    return cheapest


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_tables())
def test_no_scored_design_is_cheaper_than_the_bound_at_its_accuracy(table):
    cheap = ["m0", "m1", "m2"]
    target = parse_target("accuracy>=0.9*final")
    plain = staged(table, target, final="final", cheap=cheap, tiers=dict.fromkeys([*cheap, "final"], 0),
                   max_voters=2, beam=4)
    for right, (cost, design) in _cheapest(plain).items():
        bound = answer_bound(table, final="final", cheap=cheap, needed=right, depth=3, replay=(table, None))
        assert bound.reachable
        assert bound.cost <= cost + 1e-9, (design, bound.cost, cost)
        # The trees, replayed on the very prompts they were fitted on, are the bound.
        assert bound.replayed is not None
        assert (bound.replayed.correct, bound.replayed.cost) == pytest.approx((bound.correct, bound.cost))
    # With answer_in gates on any rung: the trees that also see values bound those designs.
    gated = [evaluate(table, Design((*s.design.rungs[:k], replace(r, accept=values), *s.design.rungs[k + 1:])))
             for s in plain for k, r in enumerate(s.design.rungs[:-1])
             for values in (("v0",), ("v1",), ("v2",), ("v0", "v1"))]
    for right, (cost, design) in _cheapest(plain + gated).items():
        seeing = answer_bound(table, final="final", cheap=cheap, needed=right, depth=3, values=True)
        assert seeing.cost <= cost + 1e-9, (design, seeing.cost, cost)
        assert seeing.cost <= answer_bound(table, final="final", cheap=cheap, needed=right, depth=3).cost + 1e-9


def test_sample_designs_never_beat_the_bound():
    policy = load_policy(ROOT / "policies" / "cascade-routerbench.yaml")
    data = combine([SAMPLE / "arc_challenge.jsonl", SAMPLE / "winogrande.jsonl"])
    table = build_table(policy, data.records, [build_check({"check": "refusal"})], "choice")
    final = "gpt-4"
    cheap = ["mistral-7b", "mixtral-8x7b", "yi-34b", "gpt-3.5-turbo"]
    target = parse_target("accuracy>=0.97*gpt-4")
    scored = staged(table, target, final=final, cheap=cheap, tiers=dict.fromkeys(table.models, 0), max_voters=2)
    assert len(scored) > 20
    for s in scored[:: max(1, len(scored) // 40)]:
        bound = answer_bound(table, final=final, cheap=cheap, needed=float(s.correct.sum()), depth=3)
        assert bound.cost <= s.cost + 1e-9, str(s.design)


def test_calibrate_reports_the_bound(tmp_path):
    out = tmp_path / "tuned.yaml"
    report = calibrate(ROOT / "tests" / "lab" / "recorded-cascade.yaml",
                       [SAMPLE / "arc_challenge.jsonl", SAMPLE / "winogrande.jsonl"],
                       "accuracy>=0.97*gpt-4-1106-preview", out=out, verify=False)
    assert report.bound is not None and report.bound.reachable
    assert report.bound.cost <= report.tuned.cost_usd + 1e-9  # the searched design is one of the trees
    assert "bound" in str(report)
    header = out.read_text(encoding="utf-8").split("\nversion:")[0]
    assert f"{report.bound.cost_ratio:.1%}" in header and "in-sample" in header
    # Trees that also see which answer each model gave can only do better in-sample.
    assert report.value_bound is not None and report.value_bound.values
    assert report.value_bound.cost <= report.bound.cost + 1e-9
    assert f"(answer_in gates) could get to {report.value_bound.cost_ratio:.1%} in-sample" in header
    assert report.to_dict()["bound_with_values"]["values"] is True
    # ... and both are run, as fitted, on the held-out prompts.
    replayed = report.bound.replayed
    assert replayed is not None and report.held_out is not None
    assert replayed.reference_cost == pytest.approx(report.held_out.reference_cost_usd)
    assert f"the same trees as fitted, on the held-out prompts: {replayed.ratios}" in header
    assert report.to_dict()["bound"]["held_out_replay"]["cost_ratio"] == pytest.approx(replayed.cost_ratio, abs=1e-6)


def test_calibrate_says_when_the_cost_cap_is_below_the_bound(tmp_path):
    files = [SAMPLE / "arc_challenge.jsonl", SAMPLE / "winogrande.jsonl"]
    policy = ROOT / "tests" / "lab" / "recorded-cascade.yaml"
    tight = calibrate(policy, files, "accuracy>=0.97*gpt-4-1106-preview,cost<=0.05*gpt-4-1106-preview",
                      out=tmp_path / "tight.yaml", verify=False)
    assert tight.bound is not None and tight.bound.reachable and not tight.bound.within_cap
    assert tight.bound.cost_cap == pytest.approx(0.05 * tight.tuned.reference_cost_usd)
    assert "is below it" in str(tight) and tight.to_dict()["bound"]["within_cost_cap"] is False
    assert "is below it" in (tmp_path / "tight.yaml").read_text(encoding="utf-8")
    loose = calibrate(policy, files, "accuracy>=0.97*gpt-4-1106-preview,cost<=2*gpt-4-1106-preview",
                      out=tmp_path / "loose.yaml", verify=False)
    assert loose.bound is not None and loose.bound.within_cap and "is below it" not in str(loose)
