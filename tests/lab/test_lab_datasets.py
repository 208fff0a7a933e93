"""Dataset loaders on small fixtures: RouterBench CSV and JSONL, lookup, subsets, caching."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from router.lab.datasets import DatasetError, load_dataset, register_dataset

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "routerbench-sample"


def test_routerbench_csv_reads_prompts_outcomes_and_skips_empty_cells():
    ds = load_dataset(FIXTURES / "routerbench_tiny.csv")
    assert [r.id for r in ds] == ["t.1", "t.2", "t.3"]
    assert ds.models == ("small/m-7b", "big-1")
    first = ds.records[0]
    assert first.prompt == "Which is a mammal?\nA) trout\nB) whale\nAnswer:"
    assert first.task == "toy"
    assert first.outcomes["small/m-7b"].response == "A\n"
    assert first.outcomes["small/m-7b"].correct is False
    assert first.outcomes["big-1"].correct is True
    assert first.outcomes["big-1"].cost_usd == pytest.approx(0.002)
    assert ds.records[1].prompt == "It's 2+2?\nAnswer:"
    assert ds.records[1].outcomes["big-1"].response == "It's 4, \"four\"."
    third = ds.records[2]
    assert third.prompt == "turn one\n\nturn two"  # a list of turns, joined
    assert set(third.outcomes) == {"big-1"}  # small/m-7b's correctness cell is empty


def test_csv_cells_are_literals_never_evaluated(tmp_path: Path):
    with pytest.raises(DatasetError) as err:
        load_dataset(FIXTURES / "routerbench_bad_literal.csv")
    assert err.value.line == 2 and "prompt" in str(err.value)


def test_jsonl_reads_labels_defaults_and_reports_bad_lines():
    ds = load_dataset(FIXTURES / "tiny.jsonl")
    assert [r.id for r in ds] == ["p1", "p2", "p3", "p4"]
    assert ds.models == ("cheap", "mid", "big")
    assert ds.records[0].gold == "A" and ds.records[1].gold is None
    assert "cheap" not in ds.records[3].outcomes
    unlabelled = load_dataset(FIXTURES / "unlabelled.jsonl")
    assert [r.id for r in unlabelled] == ["0", "2"]  # line index when no id (blank line skipped)
    assert unlabelled.records[0].outcomes["cheap"].correct is None
    assert unlabelled.records[1].outcomes["cheap"].cost_usd == 0.0
    with pytest.raises(DatasetError) as err:
        load_dataset(FIXTURES / "bad_key.jsonl")
    assert err.value.line == 2 and "cost" in str(err.value)


def test_missing_file_is_a_dataset_error(tmp_path: Path):
    with pytest.raises(DatasetError, match="cannot read"):
        load_dataset(tmp_path / "nope.jsonl")


def test_find_by_exact_or_whitespace_normalised_prompt():
    ds = load_dataset(FIXTURES / "tiny.jsonl")
    assert ds.find("Q2? Answer with a letter.").id == "p2"
    assert ds.find("  Q2?\n Answer   with a letter.\n").id == "p2"
    assert ds.find("Q2? answer with a letter.") is None  # case matters
    assert ds.get("p3").prompt.startswith("Q3")


def test_subset_by_count_ids_and_seed_is_registered():
    ds = load_dataset(FIXTURES / "tiny.jsonl")
    assert [r.id for r in ds.subset(2)] == ["p1", "p2"]
    by_ids = ds.subset(ids=["p4", "p1"])
    assert [r.id for r in by_ids] == ["p4", "p1"]
    assert load_dataset(by_ids.name) is by_ids  # recorded models can answer from it
    assert sorted(r.id for r in ds.subset(3, seed=1)) == sorted(r.id for r in ds.subset(3, seed=1))
    with pytest.raises(KeyError):
        ds.subset(ids=["p9"])


def test_loaded_once_per_process_and_reloaded_when_the_file_changes(tmp_path: Path):
    path = tmp_path / "copy.jsonl"
    shutil.copy(FIXTURES / "tiny.jsonl", path)
    first = load_dataset(path)
    assert load_dataset(str(path)) is first
    with path.open("a") as f:
        f.write('{"id": "p5", "prompt": "Q5", "models": {"big": {"response": "A", "correct": true}}}\n')
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    again = load_dataset(path)
    assert again is not first and len(again) == 5


def test_jsonl_round_trip(tmp_path: Path):
    ds = load_dataset(FIXTURES / "routerbench_tiny.csv")
    ds.to_jsonl(tmp_path / "out.jsonl")
    back = load_dataset(tmp_path / "out.jsonl")
    assert [(r.id, r.prompt, dict(r.outcomes)) for r in back] == [(r.id, r.prompt, dict(r.outcomes)) for r in ds]
    assert register_dataset(back) is back


def test_shipped_sample_has_every_model_for_every_prompt():
    sets = [load_dataset(SAMPLE / name) for name in ("arc_challenge.jsonl", "winogrande.jsonl", "mbpp.jsonl")]
    assert [len(s) for s in sets] == [100, 100, 60]
    for s in sets:
        assert len(s.models) == 11 and "gpt-4-1106-preview" in s.models
        assert all(len(r.outcomes) == 11 for r in s)


def test_derived_gold_letters_match_the_recorded_correctness():
    from router.checks.extractors import extract_choice

    for name in ("arc_challenge.jsonl", "winogrande.jsonl"):
        ds = load_dataset(SAMPLE / name)
        scored = [r for r in ds if r.gold is not None]
        assert len(scored) >= 95
        for record in scored:
            for model, outcome in record.outcomes.items():
                said = extract_choice(outcome.response, record.prompt)
                assert (said == record.gold) == outcome.correct, (name, record.id, model)
