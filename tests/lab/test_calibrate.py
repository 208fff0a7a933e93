"""``router calibrate``: the target syntax, the fast table against the real router's replay, and
calibrated policies that validate and meet their target on the data they were tuned on. Runs on
the shipped RouterBench sample (data/routerbench-sample) and a small hand-made dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from router import PolicyRouter, load_policy
from router.cli.main import main
from router.lab.calibrate import (
    CalibrationError,
    Constraint,
    Design,
    Rung,
    build_table,
    calibrate,
    combine,
    evaluate,
    parse_target,
    policy_yaml,
)
from router.lab.cascade_table import is_design_check
from router.lab.simulate import score_model, simulate

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "policies" / "cascade-routerbench.yaml"
SAMPLE = ROOT / "data" / "routerbench-sample"
SAMPLES = [SAMPLE / "arc_challenge.jsonl", SAMPLE / "winogrande.jsonl"]
GPT4 = "gpt-4-1106-preview"


# --------------------------------------------------------------------------- target syntax


def test_target_syntax():
    target = parse_target("accuracy>=0.97*gpt-4-1106-preview, cost<=40%*gpt-4")
    assert target.constraints == (Constraint("accuracy", ">=", 0.97, GPT4), Constraint("cost", "<=", 0.4, "gpt-4"))
    assert target.objective == "min_cost"
    assert parse_target("cost<=2.5").objective == "max_accuracy"
    assert parse_target("accuracy>=0.9").constraints == (Constraint("accuracy", ">=", 0.9),)
    for bad in ("accuracy>0.9", "latency<=1", "cost<=cheap", ""):
        with pytest.raises(CalibrationError, match="cannot read target"):
            parse_target(bad)


# --------------------------------------------------------------------------- fast path == real router


TINY = [  # a, b cheap; c strong. Covers agreement, a missing record, refusals, the best-of fallback.
    {"id": "p1", "prompt": "Q1\nA) x\nB) y", "models": {"a": ("A", True), "b": ("A", True), "c": ("A", True)}},
    {"id": "p2", "prompt": "Q2\nA) x\nB) y", "models": {"a": ("B", False), "b": ("A", True), "c": ("A", True)}},
    {"id": "p3", "prompt": "Q3\nA) x\nB) y", "models": {"b": ("B", True), "c": ("B", True)}},
    {"id": "p4", "prompt": "Q4\nA) x\nB) y", "models": {"a": ("A", True), "b": ("B", False)}},
    {"id": "p5", "prompt": "Q5\nA) x\nB) y", "models": {"a": ("B", True), "b": ("A", False),
                                                       "c": ("I don't know", False)}},
    {"id": "p6", "prompt": "Q6\nA) x\nB) y", "models": {"a": ("I am not sure", False), "b": ("B", True),
                                                       "c": ("B", True)}},
]
TINY_POLICY = """
version: 1
name: tiny
models:
  a: {{provider: recorded, model: a, dataset: {data}, local: true, price: {{input: 1, output: 1}}}}
  b: {{provider: recorded, model: b, dataset: {data}, local: true, price: {{input: 2, output: 2}}}}
  c: {{provider: recorded, model: c, dataset: {data}, local: true, tier: premium, price: {{input: 9, output: 9}}}}
policy:
  cost_ceiling: 1.0
  on_exhausted: {on_exhausted}
  cascade: [a, c]
  confidence:
    - check: refusal
"""


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "tiny.jsonl"
    costs = {"a": 0.001, "b": 0.002, "c": 0.01}
    data.write_text("".join(json.dumps({"id": r["id"], "prompt": r["prompt"], "models": {
        m: {"response": text, "correct": ok, "cost_usd": costs[m]} for m, (text, ok) in r["models"].items()}}) + "\n"
        for r in TINY))
    return data, tmp_path


@pytest.mark.parametrize("on_exhausted", ["best", "raise"])
@pytest.mark.parametrize("design", [
    Design((Rung("a", ("b",)), Rung("c"))),
    Design((Rung("a", ("b", "c"), 1), Rung("c"))),
    Design((Rung("a", ("b",)), Rung("b", ("a",)), Rung("c"))),
    Design((Rung("c"),)),
    # answer_in gates: with and without agreement, several in one design (their order in the
    # policy decides how many checks a rejected answer passed, hence the best-of fallback).
    Design((Rung("a", ("b",), accept=("A",)), Rung("c"))),
    Design((Rung("a", accept=("B",)), Rung("b", ("a",), accept=("A",)), Rung("c"))),
    Design((Rung("a", accept=("A",)), Rung("b", ("c",)), Rung("c", accept=("B",)))),
    Design((Rung("a", ("b",)), Rung("b", accept=("B",)), Rung("c", accept=("B",)))),  # p2: a's answer is the best
], ids=str)
def test_table_scores_equal_the_real_router_replay_on_edge_cases(design, on_exhausted, tiny):
    data, tmp = tiny
    base = tmp / "base.yaml"
    base.write_text(TINY_POLICY.format(data=data, on_exhausted=on_exhausted))
    policy = load_policy(base)
    text = policy_yaml(base, design, base_checks=policy.policy.confidence, extract="choice", name="tiny")
    (tmp / "tiny.yaml").write_text(text)
    tuned = load_policy(tmp / "tiny.yaml")
    table = build_table(tuned, combine([data]).records, tuned.policy.confidence[:1], "choice")
    fast = evaluate(table, design, raise_on_exhausted=on_exhausted == "raise")
    real = simulate(tuned, data, progress=False)
    assert [bool(c) for c in fast.correct] == [bool(r.correct) for r in real.rows]
    assert list(fast.cost_each) == pytest.approx([r.cost_usd for r in real.rows])
    assert fast.accuracy == pytest.approx(real.accuracy) and fast.cost == pytest.approx(real.cost_usd)


@pytest.mark.parametrize("design", [
    Design((Rung("mistral-7b", ("mixtral-8x7b", "yi-34b"), 1), Rung("gpt-3.5-turbo", ("claude-instant",)),
            Rung("gpt-4"))),
    Design((Rung("wizardlm-13b", ("mistral-7b", "mixtral-8x7b", "llama-2-70b"), 2), Rung("gpt-4"))),
    Design((Rung("yi-34b", ("mixtral-8x7b",), accept=("B",)), Rung("gpt-3.5-turbo", accept=("A", "C")),
            Rung("gpt-4"))),
], ids=str)
def test_table_scores_equal_the_real_router_replay_on_the_sample(design, tmp_path):
    data = combine(SAMPLES)
    shipped = load_policy(SHIPPED)
    text = policy_yaml(SHIPPED, design, base_checks=shipped.policy.confidence, extract="choice", name="x")
    (tmp_path / "x.yaml").write_text(text)
    policy = load_policy(tmp_path / "x.yaml")
    base = [c for c in policy.policy.confidence if not is_design_check(c)]
    fast = evaluate(build_table(policy, data.records, base, "choice"), design)
    real = simulate(policy, data, progress=False)
    assert real.n == 200
    assert fast.accuracy == pytest.approx(real.accuracy, abs=1e-12)
    assert fast.cost == pytest.approx(real.cost_usd, rel=1e-9)


# --------------------------------------------------------------------------- calibrate


def test_calibrated_policy_validates_and_meets_its_target_where_it_was_tuned(tmp_path):
    out = tmp_path / "tuned-sample.yaml"
    target = f"accuracy>=0.95*{GPT4},cost<=0.5*{GPT4}"
    report = calibrate(SHIPPED, SAMPLES, target, out=out, holdout=0.5, seed=1)
    policy = load_policy(out)
    assert policy.name == "tuned-sample"
    assert out.read_text().startswith("# Calibrated by `router calibrate`")
    assert report.met
    tuned = report.tuned
    assert tuned.n == 100 and report.held_out is not None and report.held_out.n == 100
    # The target, measured on the tuned prompts by the real router's replay:
    assert tuned.simulated_accuracy >= 0.95 * tuned.reference_accuracy
    assert tuned.simulated_cost_usd <= 0.5 * tuned.reference_cost_usd
    assert tuned.agrees and report.held_out.agrees
    assert list(policy.policy.cascade) == [r.model for r in report.design.rungs]
    assert policy.policy.cascade[-1] == "gpt-4"


def test_cost_only_target_maximises_accuracy_within_the_budget():
    report = calibrate(SHIPPED, SAMPLES, f"cost<=0.3*{GPT4}", out=None, holdout=0.0, verify=False)
    assert report.met and report.held_out is None
    assert report.tuned.cost_usd <= 0.3 * report.tuned.reference_cost_usd
    # It beats every single model that fits the budget, and a wider search never does worse than
    # a narrower one (one voter per check).
    data = combine(SAMPLES)
    budget = 0.3 * score_model(data.records, GPT4).cost_usd
    affordable = [score_model(data.records, m) for m in data.models]
    assert report.tuned.accuracy > max(s.accuracy for s in affordable if s.cost_usd <= budget)
    naive = calibrate(SHIPPED, SAMPLES, f"cost<=0.3*{GPT4}", holdout=0.0, verify=False, max_voters=1)
    assert report.tuned.accuracy >= naive.tuned.accuracy


def test_router_calibrate_command(tmp_path, capsys):
    out = tmp_path / "cli-tuned.yaml"

    def args(target: str) -> list[str]:
        return ["calibrate", "--policy", str(SHIPPED), "--dataset", str(SAMPLES[0]), "--dataset", str(SAMPLES[1]),
                "--target", target, "--out", str(out)]

    assert main([*args(f"accuracy>=0.95*{GPT4}"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["met"] and shown["tuned"]["agrees"] and shown["held_out"]["agrees"]
    assert load_policy(out).name == "cli-tuned"
    assert main(["validate", str(out)]) == 0
    # A target nobody can meet: the best effort is written, flagged, and the exit code says so.
    assert main([*args(f"accuracy>=1.2*{GPT4}"), "--no-verify"]) == 1
    assert "NOT met" in out.read_text()
    assert main(args("speed>=1")) == 1
    assert "cannot read target" in capsys.readouterr().err


# --------------------------------------------------------------------------- the shipped policy


def test_shipped_policy_loads_without_its_dataset_and_excludes_models_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data/routerbench-sample/... does not resolve from here
    monkeypatch.delenv("ROUTERBENCH_DATASET", raising=False)
    router = PolicyRouter(policy=load_policy(SHIPPED))
    record = router.explain("Which is heavier?\nA) a\nB) b")
    assert record.candidates == []
    assert {e.model for e in record.excluded} == set(router.policy.policy.cascade)
    assert all(e.reason.startswith("unavailable: ") and "dataset" in e.reason for e in record.excluded)


def test_shipped_policy_replays_the_sample(monkeypatch):
    report = simulate(SHIPPED, SAMPLES[0], progress=False)
    assert report.n == 100 and report.statuses.get("failed", 0) == 0
    gpt4 = report.baselines[GPT4]
    assert report.cost_usd < 0.5 * gpt4.cost_usd
    assert report.accuracy >= 0.9 * gpt4.accuracy


def test_task_patterns_are_checked_against_every_prompts_task():
    import numpy as np

    from router.lab.task_routing import TASK_PATTERNS, task_patterns

    data = combine([SAMPLE / "arc_challenge.jsonl", SAMPLE / "winogrande.jsonl", SAMPLE / "mbpp.jsonl"])
    prompts = [r.prompt for r in data.records]
    tasks = np.array([r.task for r in data.records])
    assert list(task_patterns(prompts, tasks)) == list(TASK_PATTERNS)  # the router's matching order
    swapped = np.where(tasks == "mbpp", "winogrande", np.where(tasks == "winogrande", "mbpp", tasks))
    with pytest.raises(CalibrationError, match=r"misclassify 160 prompt\(s\)"):
        task_patterns(prompts, swapped)
    with pytest.raises(CalibrationError, match="no prompt pattern for task"):
        task_patterns(prompts, np.where(tasks == "mbpp", "humaneval", tasks))
