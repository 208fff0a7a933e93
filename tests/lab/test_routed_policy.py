"""``calibrate --routing`` end to end on the shipped sample, and the shipped
policies/routed-routerbench.yaml: its artifact is in the repo and matches its header, it never
costs more than gpt-4 alone on any task, and (when the full train files sit beside the repo, in
../shared/data/routerbench) its held-out figures are reproduced by the real router."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from router import PolicyRouter, load_policy
from router.cli.main import main
from router.estimators import read_estimator
from router.lab.calibrate import calibrate, combine, split
from router.lab.datasets import Dataset, register_dataset
from router.lab.frontier import frontier_path, score_frontier
from router.lab.simulate import score_model, simulate

ROOT = Path(__file__).resolve().parents[2]
ROUTED = ROOT / "policies" / "routed-routerbench.yaml"
SAMPLE = ROOT / "data" / "routerbench-sample"
FILES = [SAMPLE / "arc_challenge.jsonl", SAMPLE / "winogrande.jsonl", SAMPLE / "mbpp.jsonl"]
FULL = ROOT.parent / "shared" / "data" / "routerbench"
FULL_FILES = [FULL / "arc_challenge_train.csv", FULL / "winograde_train.csv", FULL / "mbpp_train.csv"]
GPT4 = "gpt-4-1106-preview"


def test_calibrate_with_routing_writes_policy_estimator_and_frontier_that_replay_exactly(tmp_path):
    out = tmp_path / "routed-sample.yaml"
    report = calibrate(ROOT / "policies" / "cascade-routerbench.yaml", FILES, f"accuracy>=0.95*{GPT4}", out=out,
                       holdout=0.5, seed=3, routing=True, task_designs=1)
    policy = load_policy(out)
    assert policy.routing is not None and policy.routing.estimator == "routed-sample.estimator.npz"
    estimator = read_estimator(tmp_path / "routed-sample.estimator.npz")
    text = out.read_text()
    assert f"Routing: estimator routed-sample.estimator.npz ({estimator.digest}" in text
    assert "per task (accuracy, cost vs the same)" in text
    # The table (estimates from the written artifact) and the real router agree on both shares.
    assert report.tuned.agrees and report.held_out is not None and report.held_out.agrees
    assert set(report.held_out.per_task) == {"arc-challenge", "winogrande", "mbpp"}
    assert report.met
    # Three known tasks: a cascade per task was searched and (cheaper on the tuned share) kept,
    # its design count and margin chosen by cross-validation on the tuned share.
    names = [t.name for t in policy.routing.tasks]
    assert list(dict.fromkeys(names)) == ["arc-challenge", "winogrande", "mbpp"]
    # A task split between two designs (here, on this seed): an entry with a share, then one for the
    # rest of its prompts; the replay above agreed with the table's split.
    assert any(t.share is not None for t in policy.routing.tasks)
    for i, task in enumerate(policy.routing.tasks):
        if task.share is not None:
            assert names[i + 1] == task.name and policy.routing.tasks[i + 1].share is None
            assert f"    {task.name}, {task.share:.0%} of its prompts (routing.tasks share" in text
    assert all(t.cascade and t.confidence is not None for t in policy.routing.tasks)
    assert "a cascade per task (routing.tasks" in text
    assert "chosen by 5-fold cross-validation on the tuned share only" in text
    points = score_frontier(policy, combine(FILES))
    assert frontier_path(out).is_file() and len(points) >= 2


def test_shipped_routed_policy_matches_its_artifact_and_frontier():
    policy = load_policy(ROUTED)
    assert policy.routing is not None
    artifact = policy.routing.estimator_path(policy.source)
    assert artifact.parent == ROUTED.parent and artifact.stat().st_size < 200_000
    digest = read_estimator(artifact).digest
    assert f"({digest}," in ROUTED.read_text(), "artifact changed without recalibrating the policy"
    assert frontier_path(ROUTED).is_file()


@pytest.mark.parametrize("task_file", FILES, ids=lambda p: p.stem)
def test_shipped_routed_policy_never_costs_more_than_gpt4_alone_on_a_task(task_file):
    report = simulate(ROUTED, task_file, progress=False)
    gpt4 = report.baselines[GPT4]
    assert report.statuses.get("failed", 0) == 0
    assert report.cost_usd <= gpt4.cost_usd
    first = combine([task_file]).records[0]
    record = PolicyRouter(policy=load_policy(ROUTED)).explain(first.prompt)
    assert record.estimator == read_estimator(ROUTED.with_name("routed-routerbench.estimator.npz")).digest
    assert record.estimates and all(e.reason.startswith(f"task {first.task}: ") for e in record.estimates)
    task = load_policy(ROUTED).routing.task_for(first.prompt)  # a split task has two entries
    assert task is not None and task.name == first.task
    assert record.task is not None and record.task.name == first.task and record.task.cascade == task.cascade


def test_the_frontier_keeps_each_tasks_own_designs_for_a_one_task_dataset():
    mixed = score_frontier(load_policy(ROUTED), combine(FILES))
    code = score_frontier(load_policy(ROUTED), combine([FILES[2]]))
    assert mixed and not any(label.startswith("mbpp: ") for *_, label in mixed)
    own = [label for *_, label in code if label.startswith("mbpp: ")]
    assert own and any("gpt-3.5-turbo -> gpt-4" in label for label in own)
    assert len(code) == len(mixed) + len(own)


def test_simulate_plot_draws_the_searched_designs(tmp_path, capsys):
    png = tmp_path / "frontier.png"
    assert main(["simulate", "--policy", str(ROUTED), "--dataset", str(FILES[2]), "--plot", str(png)]) == 0
    assert png.stat().st_size > 10_000
    assert "plot written" in capsys.readouterr().out


@pytest.mark.skipif(not all(p.is_file() for p in FULL_FILES),
                    reason="the full RouterBench train files are not beside the repo (../shared/data/routerbench)")
def test_shipped_routed_policy_held_out_figures_are_reproduced_by_the_real_router():
    data = combine(FULL_FILES)
    tune_cols, held = split(data, 0.5, 0)
    subset = register_dataset(Dataset([data.records[i] for i in held], data.name + "#held-out-test"))
    report = simulate(ROUTED, subset, progress=False)
    header = re.search(r"# held-out: n=(\d+), accuracy ([0-9.]+) .*cost \$([0-9.]+)", ROUTED.read_text())
    assert header is not None
    assert report.n == int(header.group(1))
    assert report.accuracy == pytest.approx(float(header.group(2)), abs=1e-4)
    assert report.cost_usd == pytest.approx(float(header.group(3)), abs=1e-4)
    gpt4 = score_model(subset.records, GPT4)
    mixed = re.search(r"# held-out: n=\d+, accuracy [0-9.]+ \(([0-9.]+)x ", ROUTED.read_text())
    assert mixed is not None and round(report.accuracy / gpt4.accuracy, 3) == pytest.approx(float(mixed.group(1)))
    held_line = ROUTED.read_text().split("# held-out: ", 1)[1].split("\n", 2)[1]
    claimed = {t: (float(a), float(c)) for t, a, c in re.findall(r"([a-z-]+) ([0-9.]+)x, ([0-9.]+)%", held_line)}
    assert set(claimed) == {"arc-challenge", "winogrande", "mbpp"}
    for task in ("arc-challenge", "winogrande", "mbpp"):
        rows = [row for row, rec in zip(report.rows, subset.records, strict=True) if rec.task == task]
        recs = [rec for rec in subset.records if rec.task == task]
        cap = sum(rec.outcomes[GPT4].cost_usd for rec in recs if GPT4 in rec.outcomes)
        spent = sum(r.cost_usd for r in rows)
        assert spent <= cap  # no task costs more than gpt-4 alone
        ratio = (sum(bool(r.correct) for r in rows)
                 / sum(bool(rec.outcomes[GPT4].correct) for rec in recs if GPT4 in rec.outcomes))
        assert (round(ratio, 3), round(100 * spent / cap, 1)) == pytest.approx(claimed[task], abs=1e-3)
    # The header's mixed figures, whatever they are (the goal of 0.97x at <= 30% is stated in the
    # closing report, met or not). Where it was tuned, the target is met, as the header says.
    tune = register_dataset(Dataset([data.records[i] for i in tune_cols], data.name + "#tuned-test"))
    tuned = simulate(ROUTED, tune, progress=False)
    line = re.search(r"# tuned: n=(\d+), accuracy ([0-9.]+) .*cost \$([0-9.]+)", ROUTED.read_text())
    assert line is not None and tuned.n == int(line.group(1))
    assert (tuned.accuracy, tuned.cost_usd) == pytest.approx((float(line.group(2)), float(line.group(3))), abs=1e-4)
    assert "met on the tuned prompts" in ROUTED.read_text()
    assert tuned.accuracy >= 0.97 * score_model(tune.records, GPT4).accuracy


@pytest.mark.skipif(not all(p.is_file() for p in FULL_FILES),
                    reason="the full RouterBench train files are not beside the repo (../shared/data/routerbench)")
def test_shipped_routed_policy_header_bound_is_recomputed_from_the_tuned_share():
    """The header's bound (router.lab.bound) is what the tuned share gives, and the shipped
    design, one of the trees it ranges over, costs no less than it on those prompts; its trees'
    figures on the held-out share are what they give there."""
    import numpy as np

    from router.checks.consulting import ConsultingCheck
    from router.lab.bound import answer_bound
    from router.lab.calibrate import build_table

    data = combine(FULL_FILES)
    tune_cols, held_cols = split(data, 0.5, 0)
    policy = load_policy(ROUTED)
    base_checks = [c for c in policy.policy.confidence if not isinstance(c, ConsultingCheck)]
    table = build_table(policy, [data.records[i] for i in tune_cols], base_checks, "choice")
    held = build_table(policy, [data.records[i] for i in held_cols], base_checks, "choice")
    gpt4 = table.model_index("gpt-4")
    cheap = [m for m in table.models if m != "gpt-4"
             and table.cost[table.model_index(m)].mean() < table.cost[gpt4].mean()]
    tasks = np.array([data.records[i].task for i in tune_cols])
    held_tasks = np.array([data.records[i].task for i in held_cols])
    bound = answer_bound(table, final="gpt-4", cheap=cheap, needed=0.97 * table.correct[gpt4].sum(), tasks=tasks,
                         replay=(held, held_tasks))
    text = ROUTED.read_text()
    claimed = re.search(r"# Bound: .* below ([0-9.]+)% of", text)
    assert claimed is not None, "the header states no bound"
    assert round(100 * bound.cost_ratio, 1) == pytest.approx(float(claimed.group(1)), abs=1e-9)
    tuned = re.search(r"# tuned: n=\d+, .*\(([0-9.]+)% of \$", text)
    assert tuned is not None and float(tuned.group(1)) >= 100 * bound.cost_ratio
    assert bound.replayed is not None
    assert f"#   the same trees as fitted, on the held-out prompts: {bound.replayed.ratios}\n" in text


def test_calibrate_command_passes_no_split_and_gates_on(tmp_path):
    """The same data and seed as above split a task by default; ``--no-split`` keeps one design
    per task, and ``--gates`` puts answer_in gates among the candidates (the header says so)."""
    out = tmp_path / "plain.yaml"
    code = main(["calibrate", "--policy", str(ROOT / "policies" / "cascade-routerbench.yaml"),
                 *(a for f in FILES for a in ("--dataset", str(f))), "--target", f"accuracy>=0.95*{GPT4}",
                 "--seed", "3", "--routing", "--task-designs", "1", "--no-split", "--gates", "--no-verify",
                 "--out", str(out)])
    assert code == 0
    policy = load_policy(out)
    assert policy.routing is not None and policy.routing.tasks
    assert all(t.share is None for t in policy.routing.tasks)
    assert len({t.name for t in policy.routing.tasks}) == len(policy.routing.tasks)
    assert "each also with an answer_in gate on its first rung" in out.read_text()
