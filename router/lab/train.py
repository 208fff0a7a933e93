"""Fit the per-model estimators of :mod:`router.estimators` on recorded outcomes.

For every recorded model: a logistic regression of "answered correctly" and a ridge regression
of the call's cost in USD, both over the hashed prompt features of
:mod:`router.estimators.features`. The feature set and the regularisation are chosen by
k-fold held-out log loss (mean over models) from a small grid; the report lists every
configuration tried with its figures, so the choice is on record. Training is deterministic:
the same records give the same artifact bytes' weights (folds are seeded, solvers are exact).

Needs scikit-learn (the ``lab`` extra); the artifact it writes is applied with numpy only.

Why hashed n-grams and not embeddings from the local GGUF (llama.cpp's embedding mode): measured
on 450 prompts of the RouterBench tuned share (5-fold), mean-pooled SmolLM2-135M embeddings of the
prompt's last 800 characters reached log loss 0.5628 against 0.5674 for these n-grams and ranked
ARC-Challenge prompts better for some models (yi-34b: within-task AUC 0.69 against 0.42), but one
embedding took 2-3 s on the 2-core test machine, where a routing decision has 1 ms
(``bench/estimator_overhead.py``: the n-gram estimator takes 0.37 ms median). The same model's
input token vectors averaged over a prompt (no forward pass; 0.49 ms to tokenise 500 characters)
rank ARC-Challenge prompts at AUC 0.68 alone, but beside the n-grams the policy calibrated on them
did worse on the held-out half (0.978x at 42.0% against 0.968x at 32.7%), so they are not a feature
set here either (README, "Predictive routing").

``bagged=True`` (what ``calibrate --routing`` uses) ships the *mean of the k fold fits* (their
weights averaged: still one linear model per model) instead of a refit on every record. The
routing thresholds are tuned on the fold fits' out-of-fold estimates; a refit on all records is
more confident than any fold fit (more data, same C), so absolute thresholds such as
``skip_below: 0.6`` would act differently on its estimates than they did in the search. The mean
of the fold fits sees every record and predicts on a scale like the estimates the search used.

Example:
    >>> fitted = train_estimator(load_dataset("data/routerbench-sample/mbpp.jsonl").records)
    >>> fitted.estimator.save("mbpp.estimator.npz")
    >>> print(fitted.report())
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from router.estimators.estimator import QualityEstimator
from router.estimators.features import FeatureSpec, feature_matrix
from router.lab.cascade_table import CalibrationError
from router.lab.datasets import Record

FEATURE_GRID: tuple[FeatureSpec, ...] = (
    FeatureSpec(n_features=4096, word_ngrams=1, char_ngrams=0),
    FeatureSpec(n_features=4096, word_ngrams=2, char_ngrams=0),
    FeatureSpec(n_features=4096, word_ngrams=2, char_ngrams=4),
)
# Featurised on the prompt's last characters, where a few-shot prompt's question is (``--tail-features``).
# Not in the default grid: on the RouterBench train files they win the log-loss selection (0.5655
# against 0.5665) and rank ARC-Challenge prompts better (within-task AUC 0.540 against 0.484), but
# the policy calibrated with them fell below the accuracy target on the held-out half (0.968x at
# 36.5% of gpt-4, against 0.981x at 40.8%); that comparison used the held-out figures.
TAIL_GRID: tuple[FeatureSpec, ...] = (
    FeatureSpec(n_features=4096, word_ngrams=2, char_ngrams=0, max_chars=1000, tail=True),
    FeatureSpec(n_features=4096, word_ngrams=2, char_ngrams=0, max_chars=300, tail=True),
)
C_GRID: tuple[float, ...] = (0.5, 2.0)


@dataclass(frozen=True)
class Trial:
    """One configuration's k-fold figures (means over models)."""

    spec: FeatureSpec
    c: float
    log_loss: float
    brier: float
    auc: float
    cost_mae: float

    def to_dict(self) -> dict[str, Any]:
        return {"features": self.spec.to_dict(), "C": self.c, "log_loss": round(self.log_loss, 5),
                "brier": round(self.brier, 5), "auc": round(self.auc, 4), "cost_mae_usd": self.cost_mae}


@dataclass
class Fitted:
    estimator: QualityEstimator
    chosen: Trial
    trials: list[Trial] = field(default_factory=list)
    baseline_log_loss: float = 0.0   # predicting each model's base rate
    out_of_fold: np.ndarray | None = None  # the chosen configuration's k-fold P(correct), (models, records)
    task_auc: dict[str, float] = field(default_factory=dict)  # see within_task_auc

    def report(self) -> str:
        lines = [f"{'features':36} {'C':>5} {'log loss':>9} {'brier':>7} {'AUC':>6} {'cost MAE':>10}"]
        for t in self.trials:
            mark = " <- chosen" if t == self.chosen else ""
            lines.append(f"{_describe(t.spec):36} {t.c:>5g} {t.log_loss:>9.4f} {t.brier:>7.4f} {t.auc:>6.3f} "
                         f"${t.cost_mae:>9.6f}{mark}")
        lines.append(f"base rate only: log loss {self.baseline_log_loss:.4f}")
        if self.task_auc:
            lines.append(f"within-task AUC (chosen; 0.5: no better than chance at telling a task's easy prompts "
                         f"from its hard ones): {describe_task_auc(self.task_auc)}")
        return "\n".join(lines)


def describe_task_auc(task_auc: dict[str, float]) -> str:
    return ", ".join(f"{task} {auc:.3f}" for task, auc in task_auc.items())


def within_task_auc(p: np.ndarray, labels: tuple[np.ndarray, np.ndarray, np.ndarray],
                    tasks: Sequence[str | None]) -> dict[str, float]:
    """Per task, the mean over models of the AUC of ``p`` among that task's prompts only.

    The pooled AUC rewards telling tasks apart (a model right on 90% of ARC and 40% of MBPP is
    ranked well by a task detector alone); routing inside a task needs this one, and a value near
    0.5 says the estimator knows the task and nothing more."""
    from sklearn.metrics import roc_auc_score

    present, correct, _ = labels
    names = np.array([t or "" for t in tasks])
    out: dict[str, float] = {}
    for task in sorted(set(names) - {""}):
        in_task = names == task
        aucs = [float(roc_auc_score(correct[i, m], p[i, m])) for i in range(len(present))
                if 0 < (y := correct[i, (m := present[i] & in_task)]).sum() < len(y)]
        if aucs:
            out[task] = float(np.mean(aucs))
    return out


def _describe(spec: FeatureSpec) -> str:
    words = "words" if spec.word_ngrams == 1 else f"word 1-{spec.word_ngrams}grams"
    chars = f" + char {spec.char_ngrams}-grams" if spec.char_ngrams else ""
    clip = f", last {spec.max_chars} chars" if spec.tail else ""
    return f"{words}{chars} ({spec.n_features}{clip})"


def _labels(records: Sequence[Record], models: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shape = (len(models), len(records))
    present, correct, cost = np.zeros(shape, bool), np.zeros(shape, bool), np.zeros(shape)
    for j, record in enumerate(records):
        for i, model in enumerate(models):
            outcome = record.outcomes.get(model)
            if outcome is not None and outcome.correct is not None:
                present[i, j], correct[i, j], cost[i, j] = True, outcome.correct, outcome.cost_usd
    return present, correct, cost


def _fit_one(x: Any, y: np.ndarray, cost: np.ndarray, c: float) -> tuple[np.ndarray, float, np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression, Ridge

    if y.all() or not y.any():  # one class: a constant
        rate = np.clip(y.mean() if len(y) else 0.5, 1e-3, 1 - 1e-3)
        quality_w, quality_b = np.zeros(x.shape[1]), float(np.log(rate / (1 - rate)))
    else:
        clf = LogisticRegression(C=c, max_iter=2000, solver="lbfgs").fit(x, y)
        quality_w, quality_b = clf.coef_[0], float(clf.intercept_[0])
    reg = Ridge(alpha=1.0 / c).fit(x, cost)
    return quality_w, quality_b, np.asarray(reg.coef_), float(reg.intercept_)


def _fit(texts: list[str], records_y: tuple[np.ndarray, np.ndarray, np.ndarray], models: Sequence[str],
         spec: FeatureSpec, c: float, meta: dict[str, Any]) -> QualityEstimator:
    from scipy.sparse import csr_matrix

    present, correct, cost = records_y
    x = csr_matrix(feature_matrix(texts, spec), shape=(len(texts), spec.width))
    parts = [_fit_one(x[present[i]], correct[i, present[i]], cost[i, present[i]], c) for i in range(len(models))]
    stack = [np.array([p[k] for p in parts]) for k in range(4)]
    return QualityEstimator(tuple(models), spec, *stack, meta=meta, digest="(unsaved)")


def out_of_fold(records: Sequence[Record], models: Sequence[str], spec: FeatureSpec, c: float, *,
                folds: int = 5, seed: int = 0,
                fits: list[QualityEstimator] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each record's P(correct) and cost predicted by a fit that did not see it: (models, records).
    ``fits``: a list that receives the fold estimators."""
    texts = [r.prompt for r in records]
    labels = _labels(records, models)
    order = np.random.default_rng(seed).permutation(len(records))
    p = np.zeros((len(models), len(records)))
    c_hat = np.zeros_like(p)
    for k in range(folds):
        held = np.sort(order[k::folds])
        keep = np.setdiff1d(np.arange(len(records)), held)
        est = _fit([texts[i] for i in keep], tuple(a[:, keep] for a in labels), models, spec, c, {})
        p[:, held], c_hat[:, held] = est.predict_matrix([texts[i] for i in held])
        if fits is not None:
            fits.append(est)
    return p, c_hat


def _figures(p: np.ndarray, c_hat: np.ndarray, labels: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[float, ...]:
    from sklearn.metrics import roc_auc_score

    present, correct, cost = labels
    losses, briers, aucs, maes = [], [], [], []
    for i in range(len(present)):
        m = present[i]
        y, q = correct[i, m], np.clip(p[i, m], 1e-6, 1 - 1e-6)
        losses.append(float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean()))
        briers.append(float(((q - y) ** 2).mean()))
        if 0 < y.sum() < len(y):
            aucs.append(float(roc_auc_score(y, q)))
        maes.append(float(np.abs(c_hat[i, m] - cost[i, m]).mean()))
    return float(np.mean(losses)), float(np.mean(briers)), float(np.mean(aucs)) if aucs else 0.5, float(np.mean(maes))


def _mean_of(fits: Sequence[QualityEstimator], meta: dict[str, Any]) -> QualityEstimator:
    """One estimator whose weights are the mean of ``fits``' (same models and features)."""
    first = fits[0]
    quality_w = np.mean([f._quality.T for f in fits], axis=0)
    cost_w = np.mean([f._cost.T for f in fits], axis=0)
    quality_b = np.mean([f._quality_b for f in fits], axis=0)
    cost_b = np.mean([f._cost_b for f in fits], axis=0)
    return QualityEstimator(first.models, first.spec, quality_w, quality_b, cost_w, cost_b, meta=meta,
                            digest="(unsaved)")


def train_estimator(records: Sequence[Record], models: Sequence[str] | None = None, *,
                    grid: Sequence[FeatureSpec] = FEATURE_GRID, c_grid: Sequence[float] = C_GRID,
                    folds: int = 5, seed: int = 0, source: str = "", bagged: bool = False) -> Fitted:
    """Pick features and C by ``folds``-fold log loss, then fit on all ``records`` (``bagged``:
    ship the mean of the chosen configuration's fold fits instead; see the module doc).
    :class:`CalibrationError` without scikit-learn or records."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise CalibrationError("training estimators needs scikit-learn: pip install 'policy-router[lab]'") from None
    if not records:
        raise CalibrationError("no records to train on")
    names = list(models) if models is not None else sorted({m for r in records for m in r.outcomes})
    labels = _labels(records, names)
    present, correct, _ = labels
    rates = np.array([correct[i, present[i]].mean() if present[i].any() else 0.5 for i in range(len(names))])
    base = np.repeat(rates[:, None], len(records), axis=1)
    baseline = _figures(base, np.zeros_like(base), labels)[0]
    trials, oof, fold_fits = [], [], []
    for spec in grid:
        for c in c_grid:
            fits: list[QualityEstimator] = []
            p, c_hat = out_of_fold(records, names, spec, c, folds=folds, seed=seed, fits=fits)
            trials.append(Trial(spec, c, *_figures(p, c_hat, labels)))
            oof.append(p)
            fold_fits.append(fits)
    pick = min(range(len(trials)), key=lambda i: (trials[i].log_loss, trials[i].spec.char_ngrams,
                                                  trials[i].spec.word_ngrams, trials[i].spec.tail, -trials[i].c))
    chosen = trials[pick]
    task_auc = within_task_auc(oof[pick], labels, [r.task for r in records]) if len({r.task for r in records}) > 1 else {}
    meta = {"trained_on": source, "n_records": len(records), "folds": folds, "seed": seed, "C": chosen.c,
            "within_task_auc": {t: round(a, 4) for t, a in task_auc.items()},
            "chosen": chosen.to_dict(), "trials": [t.to_dict() for t in trials],
            "baseline_log_loss": round(baseline, 5), "fit": f"mean of the {folds} fold fits" if bagged else "all records"}
    if bagged:
        estimator = _mean_of(fold_fits[pick], meta)
    else:
        estimator = _fit([r.prompt for r in records], labels, names, chosen.spec, chosen.c, meta)
    return Fitted(estimator, chosen, trials, baseline, oof[pick], task_auc)


__all__ = ["C_GRID", "FEATURE_GRID", "TAIL_GRID", "Fitted", "Trial", "describe_task_auc", "out_of_fold", "train_estimator",
           "within_task_auc"]
