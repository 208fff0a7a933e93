"""Fixtures the routing lab tests share: the RouterBench sample shipped in ``data/`` and an
estimator trained on it once per session (each module copies it into a folder of its own)."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.estimators import FeatureSpec
from router.lab.calibrate import combine
from router.lab.train import train_estimator

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "routerbench-sample"
SAMPLE_FILES = [SAMPLE / "arc_challenge.jsonl", SAMPLE / "winogrande.jsonl", SAMPLE / "mbpp.jsonl"]


@pytest.fixture(scope="session")
def sample():
    return combine(SAMPLE_FILES)


@pytest.fixture(scope="session")
def sample_estimator(sample, tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("sample-estimator") / "sample.estimator.npz"
    fitted = train_estimator(sample.records, grid=(FeatureSpec(n_features=2048, word_ngrams=2),), c_grid=(1.0,),
                             folds=2)
    fitted.estimator.save(where)
    return where
