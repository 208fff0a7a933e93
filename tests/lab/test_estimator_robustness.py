"""Predictive routing survives what a policy's files may hold: a malformed estimator artifact
gives the plain cascade with ``estimator: "unavailable: ..."`` (never a crash), ``dumpd``/``loads``
keeps the artifact where the policy file found it, and a catastrophically backtracking task
pattern costs a bounded time per request (counted as no match, said in the record)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.load import dumpd, loads

from router import PolicyRouter
from router.estimators import read_estimator
from router.estimators.estimator import EstimatorError
from router.policy import routing_block

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "policies" / "routed-routerbench.yaml"
ARTIFACT = ROOT / "policies" / "routed-routerbench.estimator.npz"
ARC = ROOT / "data" / "routerbench-sample" / "arc_challenge.jsonl"
QUESTION = "Which animal is a mammal? A) shark B) whale"


def _base() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with np.load(ARTIFACT) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return arrays, json.loads(str(arrays["meta"]))


def _with_meta(change: Callable[[dict[str, Any]], None]) -> dict[str, np.ndarray]:
    arrays, meta = _base()
    change(meta)
    return {**arrays, "meta": np.array(json.dumps(meta))}


def _with_array(key: str, value: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    arrays, _ = _base()
    return {**arrays, key: value(arrays[key])}


def _no_hashed_features() -> dict[str, np.ndarray]:
    """``n_features: 0`` with weights of that width (2 dense columns): fits, then divides by 0."""
    arrays = _with_meta(lambda m: m["features"].update(n_features=0))
    n = len(arrays["quality_b"])
    return {**arrays, "quality_w": np.zeros((n, 2), np.float16), "cost_w": np.zeros((n, 2), np.float16)}


MALFORMED: dict[str, Callable[[], dict[str, np.ndarray]]] = {
    "n_features 0": _no_hashed_features,
    "n_features a string": lambda: _with_meta(lambda m: m["features"].update(n_features="4096")),
    "word_ngrams huge": lambda: _with_meta(lambda m: m["features"].update(word_ngrams=10**7)),
    "max_chars negative": lambda: _with_meta(lambda m: m["features"].update(max_chars=-1)),
    "unknown feature key": lambda: _with_meta(lambda m: m["features"].update(evil=1)),
    "models a string": lambda: _with_meta(lambda m: m.update(models="abcdefghijk")),
    "meta a list": lambda: {**_base()[0], "meta": np.array("[1, 2]")},
    "cost_w strings": lambda: _with_array("cost_w", lambda a: np.full(a.shape, "x")),
    "quality_b wrong shape": lambda: _with_array("quality_b", lambda a: np.zeros(5, np.float32)),
    "quality_w NaN": lambda: _with_array("quality_w", lambda a: np.full(a.shape, np.nan, np.float16)),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_artifact_is_an_estimator_error(name: str, tmp_path: Path):
    path = tmp_path / "bad.npz"
    np.savez(path, **MALFORMED[name]())
    with pytest.raises(EstimatorError) as caught:
        read_estimator(path)
    assert caught.value.path == str(path)


def _routed_copy(folder: Path, artifact: dict[str, np.ndarray] | None = None, *, tasks_head: str = "") -> Path:
    """The shipped routed policy in ``folder``, beside its artifact (``artifact``: a replacement),
    answering from the ARC sample; ``tasks_head``: entries put first in ``routing.tasks``."""
    folder.mkdir(parents=True, exist_ok=True)
    text = SHIPPED.read_text().replace("${ROUTERBENCH_DATASET:-data/routerbench-sample/arc_challenge.jsonl}", str(ARC))
    if tasks_head:
        text = text.replace("  tasks:\n", "  tasks:\n" + tasks_head, 1)
    policy = folder / SHIPPED.name
    policy.write_text(text)
    if artifact is None:
        shutil.copyfile(ARTIFACT, folder / ARTIFACT.name)
    else:
        np.savez(folder / ARTIFACT.name, **artifact)
    return policy


@pytest.mark.parametrize("name", ["n_features 0", "cost_w strings", "quality_b wrong shape", "n_features a string"])
def test_a_malformed_artifact_gives_the_plain_cascade_and_says_why(name: str, tmp_path: Path):
    router = PolicyRouter.from_yaml(_routed_copy(tmp_path / name.replace(" ", "-"), MALFORMED[name]()))
    record = router.explain(QUESTION).to_dict()
    assert record["estimator"].startswith(f"unavailable: {tmp_path}")
    assert record["candidates"]


def test_dumpd_loads_keeps_the_estimator_beside_the_policy_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    router = PolicyRouter.from_yaml(_routed_copy(tmp_path / "policy"))
    before = router.explain(QUESTION).to_dict()["estimator"]
    assert before.startswith("sha256:")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    again = loads(json.dumps(dumpd(router)), valid_namespaces=["router"], allowed_objects=[PolicyRouter])
    assert again.explain(QUESTION).to_dict()["estimator"] == before


REDOS = "  - {name: redos, match: '^(a|aa)+$', cascade: [gpt-4]}\n"


@pytest.mark.timeout(20)
def test_a_backtracking_task_pattern_is_bounded_and_counts_as_no_match(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(routing_block, "MATCH_TIMEOUT_S", 0.02)
    router = PolicyRouter.from_yaml(_routed_copy(tmp_path / "redos", tasks_head=REDOS))
    prompt = "a" * 60 + "b"  # Python's re: about 6 s at 39 characters, x1.6 per character
    started = time.perf_counter()
    record = router.explain(prompt).to_dict()
    assert time.perf_counter() - started < 2.0
    assert record["task"]["name"] == "redos" and record["task"]["cascade"] is None
    assert "ran out of 0.02 s: counted as no match" in record["task"]["note"]


def test_a_pattern_that_matches_in_time_still_applies(tmp_path: Path):
    router = PolicyRouter.from_yaml(_routed_copy(tmp_path / "fast", tasks_head=REDOS))
    record = router.explain("a" * 30).to_dict()
    assert record["task"] == {"name": "redos", "cascade": ["gpt-4"], "note": ""}
    block = router.policy.routing
    assert block is not None and block.match_task(QUESTION).timed_out == ()
