"""``routing.tasks[*]`` with its own ``cascade:`` and ``confidence:``: validated like ``policy:``
(typed PolicyError at file:line:col with did-you-mean), applied by the router through the same
selection as the policy's cascade (privacy, offline, tier floor and ceiling still exclude the
task's models), shown in the record, mirrored by the calibration table, and searched per task by
:mod:`router.lab.task_designs`. Recorded models over the shipped RouterBench sample."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from router import PolicyRouter, load_policy
from router.errors import PolicyError, RoutingError
from router.estimators import FeatureSpec, read_estimator
from router.lab.cascade_table import Design, Rung, build_table
from router.lab.joint import Point
from router.lab.simulate import simulate
from router.lab.targets import parse_target
from router.lab.task_choice import choose_split
from router.lab.task_designs import choose, design_checks, gate_options, score_picks, task_candidates, task_front
from router.lab.task_routing import TASK_PATTERNS
from router.lab.train import train_estimator
from router.policy.routing_block import Thresholds, prompt_share
from router.routing.decision import decision_from_dict

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "policies" / "cascade-routerbench.yaml"
SAMPLE = ROOT / "data" / "routerbench-sample"
FILES = [SAMPLE / "arc_challenge.jsonl", SAMPLE / "winogrande.jsonl", SAMPLE / "mbpp.jsonl"]
DATASET_VAR = "${ROUTERBENCH_DATASET:-data/routerbench-sample/arc_challenge.jsonl}"
MAIN = ["mistral-7b", "gpt-3.5-turbo", "gpt-4"]
MBPP = {"name": "mbpp", "match": TASK_PATTERNS["mbpp"], "cascade": ["gpt-3.5-turbo", "gpt-4"],
        "confidence": [{"check": "refusal"}]}


@pytest.fixture(scope="module")
def artifact(sample_estimator: Path, tmp_path_factory) -> Path:
    """The session's sample estimator, in this module's own folder (its policies are written beside it)."""
    where = tmp_path_factory.mktemp("tasks") / sample_estimator.name
    shutil.copyfile(sample_estimator, where)
    return where


def raw_policy(tasks: list[dict[str, Any]], *, estimator: str = "sample.estimator.npz",
               dataset: Path | None = None) -> dict[str, Any]:
    """The shipped recorded catalog, cascade ``MAIN`` guarded by an agreement check, and ``tasks``."""
    text = SHIPPED.read_text()
    if dataset is not None:
        text = text.replace(DATASET_VAR, str(dataset))
    raw = yaml.safe_load(text)
    raw["policy"]["cascade"] = list(MAIN)
    raw["policy"]["confidence"] = [{"check": "refusal"},
                                   {"check": "agreement", "models": ["mixtral-8x7b"], "extract": "choice",
                                    "apply_to": ["mistral-7b", "gpt-3.5-turbo"]}]
    raw["routing"] = {"estimator": estimator, "tasks": tasks}
    return raw


def write(where: Path, raw: dict[str, Any], name: str = "p.yaml") -> Path:
    path = where / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def router_for(artifact: Path, tasks: list[dict[str, Any]], dataset: Path = FILES[2],
               edit: Any = None) -> PolicyRouter:
    raw = raw_policy(tasks, dataset=dataset)
    if edit is not None:
        edit(raw)
    return PolicyRouter(policy=load_policy(write(artifact.parent, raw, f"p{abs(hash(repr(raw))) % 10**8}.yaml")))


def mbpp_prompt(sample) -> str:
    return next(r.prompt for r in sample.records if r.task == "mbpp")


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("task", "key", "message", "suggestion"), [
    ({"cascadee": ["gpt-4"]}, "routing.tasks.0.cascadee", "unknown key 'cascadee'", "cascade"),
    ({"cascade": ["gpt4"]}, "routing.tasks.0.cascade.0", "'gpt4' is not in models:", "gpt-4"),
    ({"cascade": ["gpt-4", "yi-34b"]}, "routing.tasks.0.cascade", "weaker to stronger tiers", None),
    ({"cascade": ["yi-34b", "yi-34b"]}, "routing.tasks.0.cascade.1", "named twice", None),
    ({"cascade": []}, "routing.tasks.0.cascade", "at least 1 item", None),
    ({"confidence": [{"check": "refusl"}]}, "routing.tasks.0.confidence.0.check", "unknown check 'refusl'",
     "refusal"),
    ({"confidence": [{"check": "agreement", "models": ["mixtrl-8x7b"]}]}, "routing.tasks.0.confidence.0",
     "'mixtrl-8x7b' is not in models:", "mixtral-8x7b"),
    ({"confidence": [{"check": "agreement", "modls": ["yi-34b"]}]}, "routing.tasks.0.confidence.0.modls",
     "unknown key 'modls'", "models"),
    ({"rungs": {"yi-34b": {"skip_gapp": 0.1}}}, "routing.tasks.0.rungs.yi-34b.skip_gapp", "unknown key", "skip_gap"),
    ({"rungs": {"yi-34": {"skip_gap": 0.1}}}, "routing.tasks.0.rungs.yi-34", "'yi-34' is not in models:", "yi-34b"),
])
def test_a_task_cascade_is_validated_like_the_policy_block(tmp_path, task, key, message, suggestion):
    path = write(tmp_path, raw_policy([{"name": "t", "match": "x", **task}], estimator="x.npz"))
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    issue = next(i for i in err.value.issues if i.key == key)
    assert message in issue.message
    assert issue.suggestion == suggestion
    assert issue.file == str(path) and issue.line > 0 and issue.column > 0
    assert f"{path}:{issue.line}:{issue.column}" in str(err.value)


def test_a_task_check_naming_code_needs_allow_code(tmp_path):
    path = write(tmp_path, raw_policy([{"name": "t", "match": "x", "confidence": [{"check": "os:system"}]}],
                                      estimator="x.npz"))
    with pytest.raises(PolicyError, match="allow") as err:
        load_policy(path)
    assert err.value.issues[0].key == "routing.tasks.0.confidence.0.check"


def test_a_valid_task_cascade_loads_with_built_checks(tmp_path):
    policy = load_policy(write(tmp_path, raw_policy([MBPP], estimator="x.npz")))
    assert policy.routing is not None
    task = policy.routing.tasks[0]
    assert task.cascade == ("gpt-3.5-turbo", "gpt-4") and [c.check for c in task.confidence] == ["refusal"]


# --------------------------------------------------------------------------- the router


def test_a_task_cascade_changes_which_model_answers_an_mbpp_prompt(artifact, sample):
    prompt = mbpp_prompt(sample)
    plain = router_for(artifact, [{k: v for k, v in MBPP.items() if k in ("name", "match")}])
    own = router_for(artifact, [MBPP])
    before = plain.invoke(prompt).response_metadata["routing"]
    after = own.invoke(prompt).response_metadata["routing"]
    assert before["attempts"][0]["model"] == "mistral-7b"  # the policy's cascade, whatever the thresholds
    assert before["task"] == {"name": "mbpp", "cascade": None, "note": ""}
    assert after["candidates"] == ["gpt-3.5-turbo", "gpt-4"]
    assert [a["model"] for a in after["attempts"]] == ["gpt-3.5-turbo"]
    assert after["final_model"] == "gpt-3.5-turbo" and after["status"] == "accepted"
    assert [c["check"] for c in after["attempts"][0]["checks"]] == ["refusal"]  # the task's checks
    assert after["task"] == {"name": "mbpp", "cascade": ["gpt-3.5-turbo", "gpt-4"], "note": ""}
    assert after["total_cost_usd"] < before["total_cost_usd"]
    # A prompt of no listed task keeps the policy's cascade.
    choice = next(r.prompt for r in sample.records if r.task == "arc-challenge")
    other = own.explain(choice)
    assert other.candidates[0] == "mistral-7b" and other.task is None


def test_a_share_sends_the_same_part_of_a_tasks_prompts_to_its_entry_every_time(artifact, sample):
    split = {**MBPP, "share": 0.5}
    rest = {"name": "mbpp", "match": MBPP["match"], "cascade": ["gpt-4"], "confidence": [{"check": "refusal"}]}
    router = router_for(artifact, [split, rest])
    code = [r.prompt for r in sample.records if r.task == "mbpp"]
    ran = {p: router.invoke(p).response_metadata["routing"]["task"]["cascade"] for p in code}
    inside = {p for p in code if prompt_share(p) < 0.5}
    assert 0 < len(inside) < len(code)  # both entries are used
    assert all(ran[p] == ["gpt-3.5-turbo", "gpt-4"] for p in inside)
    assert all(ran[p] == ["gpt-4"] for p in code if p not in inside)
    # The same prompt, with other whitespace, falls in the same place; and the choice is stable.
    first = code[0]
    assert prompt_share("  " + first.replace(" ", "  ") + "\n") == prompt_share(first)
    assert router.explain(first).task == router.explain(first).task
    # The record says where the prompt fell and which entry that chose.
    notes = {p: router.explain(p).task.note for p in code}
    assert all(notes[p] == f"prompt share {prompt_share(p):.3f} < 0.5: this entry of the split task" for p in inside)
    assert all(notes[p].endswith(">= 0.5: the rest of the split task") for p in code if p not in inside)


@pytest.mark.parametrize("share", [0, 1, 1.5, -0.1])
def test_a_share_outside_zero_to_one_is_refused_with_its_location(tmp_path, share):
    with pytest.raises(PolicyError) as err:
        load_policy(write(tmp_path, raw_policy([{**MBPP, "share": share}])))
    assert err.value.issues[0].key == "routing.tasks.0.share" and err.value.issues[0].line > 0


def test_explain_shows_the_task_and_its_cascade(artifact, sample):
    record = router_for(artifact, [MBPP]).explain(mbpp_prompt(sample))
    assert record.task is not None and record.task.name == "mbpp"
    assert record.task.cascade == ("gpt-3.5-turbo", "gpt-4")
    assert "task 'mbpp': cascade gpt-3.5-turbo, gpt-4" in record.summary()
    assert decision_from_dict(record.to_dict()).task == record.task
    assert [e.model for e in record.estimates] == ["gpt-3.5-turbo", "gpt-4"]


def _network(raw: dict[str, Any]) -> None:
    raw["models"]["gpt-3.5-turbo"]["local"] = False  # a model that leaves the machine


@pytest.mark.parametrize("override", [{"privacy": True}, {"offline": True}], ids=lambda o: next(iter(o)))
def test_privacy_and_offline_exclude_a_network_model_of_the_task_cascade(artifact, sample, override):
    router = router_for(artifact, [MBPP], edit=_network)
    prompt = mbpp_prompt(sample)
    assert router.explain(prompt).candidates == ["gpt-3.5-turbo", "gpt-4"]
    record = router.invoke(prompt, config={"configurable": override}).response_metadata["routing"]
    reason = "not local: privacy" if "privacy" in override else "not local: offline"
    assert {e["model"]: e["reason"] for e in record["excluded"]}["gpt-3.5-turbo"] == reason
    assert "gpt-3.5-turbo" not in [a["model"] for a in record["attempts"]]
    assert record["candidates"] == ["gpt-4"] and record["final_model"] == "gpt-4"


def test_a_privacy_rule_also_binds_the_task_cascade(artifact, sample):
    def edit(raw: dict[str, Any]) -> None:
        _network(raw)
        raw["rules"] = [{"name": "pii", "when": {"metadata": {"data_class": "pii"}}, "set": {"privacy": True}}]

    record = router_for(artifact, [MBPP], edit=edit).explain(mbpp_prompt(sample),
                                                            config={"metadata": {"data_class": "pii"}})
    assert record.candidates == ["gpt-4"] and record.task is not None and record.task.cascade is not None


def test_the_tier_floor_and_the_ceiling_apply_to_the_task_cascade(artifact, sample):
    router = router_for(artifact, [MBPP])
    prompt = mbpp_prompt(sample)
    premium = router.explain(prompt, config={"configurable": {"quality_tier": "premium"}})
    assert premium.candidates == ["gpt-4"]
    assert {e.model: e.reason for e in premium.excluded}["gpt-3.5-turbo"].startswith("below tier floor")
    with pytest.raises(RoutingError, match="no eligible model") as err:
        router.invoke(prompt, config={"configurable": {"cost_ceiling": 1e-9}})
    poor = err.value.decision
    assert poor.candidates == [] and poor.attempts == [] and poor.task is not None
    assert {e.model: e.reason.split(":")[0] for e in poor.excluded} == {
        "gpt-3.5-turbo": "over ceiling", "gpt-4": "over ceiling"}


def test_a_rule_or_override_that_sets_the_cascade_wins_over_the_task(artifact, sample):
    router = router_for(artifact, [MBPP])
    prompt = mbpp_prompt(sample)
    record = router.explain(prompt, config={"configurable": {"cascade": ["yi-34b", "gpt-4"]}})
    assert "yi-34b" in [*record.candidates, *(e.model for e in record.excluded)]
    assert record.task is not None and record.task.cascade is None and "not used" in record.task.note
    plain = router.explain(prompt)
    assert plain.task is not None and plain.task.cascade == ("gpt-3.5-turbo", "gpt-4")


def test_a_pinned_model_wins_over_the_task_cascade(artifact, sample):
    router = router_for(artifact, [MBPP])
    record = router.invoke(mbpp_prompt(sample), model="mistral-7b").response_metadata["routing"]
    assert [a["model"] for a in record["attempts"]] == ["mistral-7b"]
    assert record["task"]["cascade"] is None and "pins" in record["task"]["note"]


@pytest.mark.parametrize("split", [False, True], ids=["one design per task", "winogrande split"])
def test_the_table_scores_per_task_designs_exactly_as_the_real_router_replays_them(artifact, sample, tmp_path, split):
    picks = {
        "arc-challenge": Point(0, 0, Design((Rung("yi-34b", ("mixtral-8x7b",)), Rung("gpt-4"))),
                               (Thresholds(trust_gap=0.1), Thresholds())),
        "winogrande": Point(0, 0, Design((Rung("mixtral-8x7b", ("yi-34b", "gpt-3.5-turbo"), 1, ("B",)),
                                          Rung("gpt-3.5-turbo", ("yi-34b",)), Rung("gpt-4"))),
                            (Thresholds(skip_gap=0.3, trust_gap=0.3), Thresholds(skip_below=0.6), Thresholds())),
        "mbpp": Point(0, 0, Design((Rung("gpt-3.5-turbo"), Rung("gpt-4"))), (Thresholds(skip_gap=0.1), Thresholds())),
    }
    base = load_policy(SHIPPED)
    refusal = [c for c in base.policy.confidence if c.check != "agreement"]
    assert {"check": "answer_in", "values": ["B"], "extract": "choice", "apply_to": ["mixtral-8x7b"]} in design_checks(
        picks["winogrande"].design, refusal, "choice")

    def entry(task: str, pt: Point) -> dict[str, Any]:
        return {"name": task, "match": TASK_PATTERNS[task], "cascade": [r.model for r in pt.design.rungs],
                "confidence": design_checks(pt.design, refusal, "choice"),
                "rungs": {r.model: x.model_dump(exclude_defaults=True)
                          for r, x in zip(pt.design.rungs, pt.thresholds, strict=True)}}

    tasks = [entry(t, pt) for t, pt in picks.items()]
    # Split: 40% of Winogrande's prompts (by prompt_share) run yi-34b guarded by mixtral-8x7b first.
    splits = {"winogrande": (Point(0, 0, Design((Rung("yi-34b", ("mixtral-8x7b",)), Rung("gpt-4"))),
                                   (Thresholds(), Thresholds())), 0.4)} if split else {}
    tasks[1:1] = [entry("winogrande", pt) | {"share": share} for pt, share in splits.values()]
    text = yaml.safe_dump(raw_policy(tasks, estimator=str(artifact)), sort_keys=False)
    policy = load_policy(write(tmp_path, yaml.safe_load(text)))
    estimator = read_estimator(artifact)
    table = build_table(policy, sample.records, refusal, "choice")
    raw, _ = estimator.predict_matrix([r.prompt for r in sample.records])
    p = raw[[estimator.models.index(m) for m in table.recorded]]
    task_of = np.array([r.task for r in sample.records])
    shares = np.array([prompt_share(r.prompt) for r in sample.records])
    right, spent, _ = score_picks(table, p, task_of, picks, splits, shares)
    real = simulate(policy, sample, progress=False)
    assert [bool(c) for c in right] == [bool(r.correct) for r in real.rows]
    assert spent == pytest.approx(np.array([r.cost_usd for r in real.rows]), rel=1e-9, abs=1e-12)
    if split:  # the split changed what some Winogrande prompts cost
        plain = score_picks(table, p, task_of, picks)[1]
        wino = task_of == "winogrande"
        moved = wino & (shares < 0.4)
        assert moved.any() and (plain[moved] != spent[moved]).any()
        assert (plain[wino & ~moved] == spent[wino & ~moved]).all()


def test_choose_finds_the_cheapest_mix_that_meets_the_pooled_accuracy():
    rng = np.random.default_rng(1)
    design = Design((Rung("gpt-4"),))
    fronts = {}
    for task in ("a", "b", "c"):
        cost = np.sort(rng.random(7))
        acc = np.sort(rng.random(7))
        fronts[task] = [Point(float(a), float(c), design, ()) for a, c in zip(acc, cost, strict=True)]
    sizes = {"a": 5, "b": 9, "c": 3}
    for need in (0.2, 0.5, 0.7, 0.9):
        got = choose(fronts, sizes, need)
        brute = [(sum(p.cost for p in pick), pick) for pick in itertools.product(*fronts.values())
                 if sum(p.accuracy * sizes[t] for p, t in zip(pick, fronts, strict=True)) / 17 >= need - 1e-9]
        if not brute:
            assert got is None
            continue
        assert got is not None and got[2] == pytest.approx(min(b[0] for b in brute))


def test_a_bagged_estimator_is_the_mean_of_its_fold_fits(sample):
    from router.lab.train import out_of_fold

    spec = FeatureSpec(n_features=1024, word_ngrams=1)
    bagged = train_estimator(sample.records, grid=(spec,), c_grid=(1.0,), folds=3, bagged=True)
    refit = train_estimator(sample.records, grid=(spec,), c_grid=(1.0,), folds=3)
    assert bagged.estimator.meta["fit"] == "mean of the 3 fold fits" and refit.estimator.meta["fit"] == "all records"
    fits: list = []
    models = list(bagged.estimator.models)
    out_of_fold(sample.records, models, spec, 1.0, folds=3, fits=fits)
    text = sample.records[0].prompt
    logits = [np.log(p / (1 - p)) for p in (np.array([f.predict(text)[m].p_correct for m in models]) for f in fits)]
    mean = 1 / (1 + np.exp(-np.mean(logits, axis=0)))
    got = np.array([bagged.estimator.predict(text)[m].p_correct for m in models])
    assert got == pytest.approx(mean, abs=1e-9)
    assert bagged.out_of_fold == pytest.approx(refit.out_of_fold)  # the search sees the same estimates


def test_gate_options_are_each_common_answer_alone_and_all_but_each():
    policy = load_policy(SHIPPED)
    from router.lab.datasets import load_dataset

    arc = load_dataset(SAMPLE / "arc_challenge.jsonl")
    table = build_table(policy, arc.records, [], "choice")
    assert gate_options(table, "yi-34b") == [("A",), ("B",), ("C",), ("D",), ("B", "C", "D"), ("A", "C", "D"),
                                             ("A", "B", "D"), ("A", "B", "C")]
    code = build_table(policy, load_dataset(SAMPLE / "mbpp.jsonl").records, [], "choice")
    assert gate_options(code, "gpt-3.5-turbo") == []  # no choice is extracted from code


def test_the_gated_search_tries_gates_and_its_front_is_never_worse(sample):
    policy = load_policy(SHIPPED)
    wino = [r for r in sample.records if r.task == "winogrande"]
    table = build_table(policy, wino, [c for c in policy.policy.confidence if c.check == "refusal"], "choice")
    target = parse_target("accuracy>=0.97*gpt-4-1106-preview")
    cheap = ["mistral-7b", "mixtral-8x7b", "yi-34b", "gpt-3.5-turbo"]
    tiers = dict.fromkeys([*cheap, "gpt-4"], 0)
    p = np.full(table.correct.shape, 0.5)
    common = {"final": "gpt-4", "cheap": cheap, "tiers": tiers, "max_voters": 2, "designs": 2}
    plain, _ = task_candidates(table, target, cache={}, **common)
    both, _ = task_candidates(table, target, cache={}, gates=True, **common)
    assert all(not r.accept for d in plain for r in d.rungs)
    gated = [d for d in both if any(r.accept for r in d.rungs)]
    assert both[:len(plain)] == plain and {d.rungs[0].accept for d in gated} == {("A",), ("B",)}
    front, _ = task_front(table, p, target, **common)
    wider, _ = task_front(table, p, target, gates=True, **common)
    for pt in front:  # every point of the plain front is matched or beaten
        assert any(q.accuracy >= pt.accuracy - 1e-12 and q.cost <= pt.cost + 1e-12 for q in wider)


def test_a_split_choice_is_never_dearer_and_as_cheap_as_any_one_task_split():
    """choose_split against brute force: every task's pair of points mixed at the exact share,
    the other tasks' points all enumerated; the split may cost at most the share's rounding more."""
    rng = np.random.default_rng(7)
    design = Design((Rung("gpt-4"),))
    for trial in range(30):
        fronts = {}
        for task in ("a", "b"):
            k = int(rng.integers(2, 6))
            fronts[task] = [Point(float(a), float(c), design, ())
                            for a, c in zip(np.sort(rng.random(k)), np.sort(rng.random(k)), strict=True)]
        sizes = {"a": int(rng.integers(3, 20)), "b": int(rng.integers(3, 20))}
        total = sum(sizes.values())
        need = float(rng.uniform(0.2, 0.9))
        got = choose_split(fronts, sizes, need)
        single = choose(fronts, sizes, need)
        if single is None:
            assert got is None
            continue
        assert got is not None and got.cost <= single[2] + 1e-12
        assert got.accuracy >= need - 1e-9
        expected = sum(p.accuracy * sizes[t] for t, p in got.picks.items()) / total
        expected += sum(share * (dear.accuracy - got.picks[t].accuracy) * sizes[t]
                        for t, (dear, share) in got.splits.items()) / total
        assert got.accuracy == pytest.approx(expected)
        assert all(0 < share < 1 for _, share in got.splits.values())
        best = single[2]
        for t, other in (("a", "b"), ("b", "a")):
            for lo, hi in itertools.combinations(sorted(fronts[t], key=lambda q: q.accuracy), 2):
                for q in fronts[other]:
                    rest = need * total - q.accuracy * sizes[other] - lo.accuracy * sizes[t]
                    gain = (hi.accuracy - lo.accuracy) * sizes[t]
                    if gain <= 0:
                        continue
                    share = min(max(rest / gain, 0.0), 1.0)
                    if rest <= gain + 1e-12:
                        best = min(best, q.cost + lo.cost + share * (hi.cost - lo.cost))
        spread = max(max(q.cost for q in f) - min(q.cost for q in f) for f in fronts.values())
        assert got.cost <= best + 0.01 * spread * len(fronts) + 1e-9, trial
