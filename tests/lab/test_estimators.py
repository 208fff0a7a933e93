"""Per-model estimators: deterministic features, training that picks features by held-out log
loss, an artifact that round-trips through numpy only, and typed errors for bad files. Trained
on the shipped RouterBench sample (data/routerbench-sample, 260 prompts over three tasks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from router.cli.main import main
from router.estimators import EstimatorError, FeatureSpec, featurize, load_estimator, read_estimator
from router.lab.train import train_estimator

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "routerbench-sample"
FILES = [SAMPLE / "arc_challenge.jsonl", SAMPLE / "winogrande.jsonl", SAMPLE / "mbpp.jsonl"]
SMALL_GRID = (FeatureSpec(n_features=1024, word_ngrams=1), FeatureSpec(n_features=1024, word_ngrams=2))


@pytest.fixture(scope="module")
def fitted(sample):
    return train_estimator(sample.records, grid=SMALL_GRID, c_grid=(1.0,), folds=3, source="sample")


def test_features_are_the_same_in_every_process_whatever_the_hash_seed():
    text = "Write a python function to find the shared elements from the given two lists."
    index, value = featurize(text, FeatureSpec())
    code = ("import json;from router.estimators import featurize, FeatureSpec;"
            f"i,v=featurize({text!r}, FeatureSpec());print(json.dumps([i.tolist(), v.tolist()]))")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        other_index, other_value = json.loads(out.stdout)
        assert other_index == index.tolist()
        assert other_value == pytest.approx(value.tolist(), abs=0)


def test_training_picks_features_by_held_out_log_loss_and_beats_base_rates(fitted):
    assert len(fitted.trials) == 2
    assert fitted.chosen == min(fitted.trials, key=lambda t: t.log_loss)
    # Out-of-fold: every prompt predicted by a fit that never saw it.
    assert fitted.chosen.log_loss < fitted.baseline_log_loss
    assert fitted.chosen.auc > 0.6
    assert "<- chosen" in fitted.report()


def test_estimates_follow_the_recorded_outcomes_per_task(fitted, sample):
    """mistral-7b answers ARC prompts right far more often than MBPP ones (0.67 vs 0.33 in the
    RouterBench train files); the estimator must say so from the prompt text alone."""
    est = fitted.estimator
    by_task: dict[str, list[float]] = {}
    for record in sample.records:
        by_task.setdefault(record.task, []).append(est.predict(record.prompt)["mistralai/mistral-7b-chat"].p_correct)
    assert np.mean(by_task["arc-challenge"]) > np.mean(by_task["mbpp"]) + 0.15
    # Expected cost: an MBPP call (long code answer) costs gpt-4 more than an ARC letter.
    mbpp = next(r for r in sample.records if r.task == "mbpp")
    arc = next(r for r in sample.records if r.task == "arc-challenge")
    assert est.predict(mbpp.prompt)["gpt-4-1106-preview"].cost_usd > est.predict(arc.prompt)["gpt-4-1106-preview"].cost_usd


def test_artifact_round_trips_with_numpy_only_and_its_digest_names_the_bytes(fitted, sample, tmp_path):
    path = tmp_path / "est.npz"
    digest = fitted.estimator.save(path)
    assert digest.startswith("sha256:") and len(digest) == 7 + 16
    loaded = read_estimator(path)
    assert loaded.digest == digest and loaded.models == fitted.estimator.models
    for record in sample.records[:20]:
        mine, theirs = fitted.estimator.predict(record.prompt), loaded.predict(record.prompt)
        for model in loaded.models:
            assert theirs[model].p_correct == pytest.approx(mine[model].p_correct, abs=1e-4)
    assert path.stat().st_size < 200_000
    assert load_estimator(path) is load_estimator(path)  # read once per process
    # The runtime path never imports scikit-learn.
    code = (f"import sys;from router.estimators import load_estimator;e=load_estimator({str(path)!r});"
            "e.predict('hello');print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_or_malformed_artifacts_are_typed_errors(tmp_path):
    with pytest.raises(EstimatorError, match="not found"):
        load_estimator(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(EstimatorError, match="not an estimator artifact"):
        read_estimator(bad)
    other = tmp_path / "other.npz"
    np.savez(other, quality_w=np.zeros((1, 3)), quality_b=np.zeros(1), cost_w=np.zeros((1, 3)),
             cost_b=np.zeros(1), meta=np.array(json.dumps({"format": "something-else", "models": ["m"],
                                                            "features": FeatureSpec(1).to_dict()})))
    with pytest.raises(EstimatorError, match="unknown format"):
        read_estimator(other)


def test_router_train_command_writes_the_artifact_beside_the_policy(tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text((ROOT / "policies" / "cascade-routerbench.yaml").read_text())
    assert main(["train", "--policy", str(policy), "--dataset", str(FILES[2]), "--folds", "2", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    out = tmp_path / "p.estimator.npz"
    assert shown["out"] == str(out) and out.is_file()
    assert shown["digest"] == read_estimator(out).digest
    assert len(shown["trials"]) >= 2 and shown["chosen"] in shown["trials"]


def _synthetic(kind_of_prompt: str) -> list:
    """Two tasks; model "m" is right on 80% of task "easy" and 20% of "hard". With
    ``kind_of_prompt == "keyword"`` it is right exactly on the prompts that say "plainly", in
    either task; with "noise" which prompts it gets right is random."""
    from router.lab.datasets import Outcome, Record

    rng = np.random.default_rng(7)
    words = ["river", "stone", "cloud", "metal", "glass", "seed", "orbit", "salt", "wave", "flame"]
    out = []
    for i in range(240):
        task = "easy" if i % 2 else "hard"
        right = bool(rng.random() < (0.8 if task == "easy" else 0.2))
        filler = " ".join(rng.choice(words, 6))
        marker = ("plainly " if right else "") if kind_of_prompt == "keyword" else ""
        prompt = f"{'Explain' if task == 'easy' else 'Prove'} {marker}{filler} #{i}"
        out.append(Record(f"p{i}", prompt, outcomes={"m": Outcome("x", right, 0.001)}, task=task))
    return out


def test_within_task_auc_tells_knowing_the_task_from_knowing_the_prompt():
    """A task detector alone scores a high pooled AUC; the within-task AUC shows it knows nothing
    more (about 0.5), and rises when the prompt text does say which prompts the model gets right."""
    grid, c_grid = (FeatureSpec(n_features=1024, word_ngrams=1),), (1.0,)
    noise = train_estimator(_synthetic("noise"), grid=grid, c_grid=c_grid, folds=4)
    assert noise.chosen.auc > 0.75
    assert set(noise.task_auc) == {"easy", "hard"}
    assert all(0.35 < auc < 0.65 for auc in noise.task_auc.values()), noise.task_auc
    keyword = train_estimator(_synthetic("keyword"), grid=grid, c_grid=c_grid, folds=4)
    assert all(auc > 0.9 for auc in keyword.task_auc.values()), keyword.task_auc
    assert "within-task AUC" in keyword.report()
    assert keyword.estimator.meta["within_task_auc"] == {t: round(a, 4) for t, a in keyword.task_auc.items()}


def test_tail_features_see_the_question_after_a_long_shared_prefix():
    """A few-shot prompt: the same long examples, then the question. Featurised from its head
    the question is cut off; from its tail the keyword that decides correctness is seen."""
    prefix = "Example: which is heavier, a stone or a feather? Answer: a stone.\n" * 70  # ~4,700 chars
    records = _synthetic("keyword")
    few_shot = [type(r)(r.id, prefix + r.prompt, outcomes=r.outcomes, task=r.task) for r in records]
    head = FeatureSpec(n_features=1024, word_ngrams=1)
    tail = FeatureSpec(n_features=1024, word_ngrams=1, max_chars=300, tail=True)
    assert featurize(few_shot[0].prompt, head)[0].tolist() == featurize(few_shot[1].prompt, head)[0].tolist()
    fitted = train_estimator(few_shot, grid=(head, tail), c_grid=(1.0,), folds=4)
    assert fitted.chosen.spec == tail, fitted.report()
    assert all(auc > 0.9 for auc in fitted.task_auc.values()), fitted.task_auc
    assert "last 300 chars" in fitted.report()
    # The spec round-trips through an artifact; a head spec is written as before ``tail`` existed.
    assert FeatureSpec(**tail.to_dict()) == tail and "tail" not in head.to_dict()


def test_router_train_tail_features_adds_the_tail_grid(tmp_path, capsys):
    from router.lab.train import FEATURE_GRID, TAIL_GRID

    policy = tmp_path / "p.yaml"
    policy.write_text((ROOT / "policies" / "cascade-routerbench.yaml").read_text())
    args = ["train", "--policy", str(policy), "--dataset", str(FILES[0]), "--folds", "2", "--json"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*args, "--tail-features"]) == 0
    tails = json.loads(capsys.readouterr().out)
    assert [t["features"] for t in plain["trials"][::2]] == [s.to_dict() for s in FEATURE_GRID]
    assert [t["features"] for t in tails["trials"][::2]] == [s.to_dict() for s in (*FEATURE_GRID, *TAIL_GRID)]
    assert read_estimator(tmp_path / "p.estimator.npz").spec in (*FEATURE_GRID, *TAIL_GRID)
