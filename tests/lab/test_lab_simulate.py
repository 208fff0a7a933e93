"""``simulate`` and ``router simulate`` on a tiny dataset whose expected figures are computed by
hand, and on the shipped sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from router import loads_policy
from router.cli.main import main
from router.lab.datasets import load_dataset
from router.lab.simulate import simulate

HERE = Path(__file__).parent
TINY = HERE / "fixtures" / "tiny.jsonl"
ROOT = HERE.parents[1]
SAMPLE_ARC = ROOT / "data" / "routerbench-sample" / "arc_challenge.jsonl"
CASCADE_POLICY = HERE / "recorded-cascade.yaml"

# cheap -> big, escalating when the answer is not a bare letter. "dataset:" points nowhere on
# purpose: simulate makes every recorded model answer from the dataset it is given.
POLICY = """
version: 1
name: tiny-cascade
models:
  cheap: {provider: recorded, model: cheap, dataset: nowhere.jsonl, local: true, tier: basic,
          price: {input: 1.0, output: 2.0}}
  big: {provider: recorded, model: big, dataset: nowhere.jsonl, local: true, tier: premium,
        price: {input: 10.0, output: 30.0}}
policy:
  cost_ceiling: 1.0
  max_output_tokens: 8
  cascade: [cheap, big]
  confidence:
    - check: regex
      pattern: '^[A-D]$'
"""


def test_simulate_equals_the_hand_computed_result():
    # p1: cheap "A" passes, right ($0.001).  p2: cheap "maybe B" fails the regex -> big "B", right
    # ($0.001 + $0.010).  p3: cheap "C" passes, wrong ($0.001).  p4: cheap has no record -> big "A",
    # wrong ($0.010).  Policy: 2/4 right, $0.023, 2 of 4 prompts escalated.
    report = simulate(loads_policy(POLICY, "tiny.yaml"), TINY, progress=False)
    assert report.n == 4
    assert report.accuracy == pytest.approx(0.5)
    assert report.cost_usd == pytest.approx(0.023)
    assert report.escalation_rate == pytest.approx(0.5)
    assert [(r.record_id, r.final_model, r.correct) for r in report.rows] == [
        ("p1", "cheap", True), ("p2", "big", True), ("p3", "cheap", False), ("p4", "big", False)]
    cheap, big = report.per_rung["cheap"], report.per_rung["big"]
    assert (cheap.attempted, cheap.accepted, cheap.answered, cheap.errors) == (4, 2, 2, 1)
    assert cheap.escalation_rate == pytest.approx(0.5)
    assert (big.attempted, big.accepted, big.answered, big.errors) == (2, 2, 2, 0)
    # Single models: cheap right on p1 only (no record for p4: wrong, free); mid right on p2, p4;
    # big right on p1, p2, p3.
    base = {m: (s.accuracy, round(s.cost_usd, 6), s.missing) for m, s in report.baselines.items()}
    assert base == {"cheap": (0.25, 0.003, 1), "mid": (0.5, 0.02, 0), "big": (0.75, 0.04, 0)}
    # Oracle: p1 cheap $0.001, p2 mid $0.005, p3 big $0.010, p4 mid $0.005 -> 4/4 for $0.021.
    assert report.oracle.accuracy == 1.0
    assert report.oracle.cost_usd == pytest.approx(0.021)
    assert report.statuses == {"accepted": 4}


def test_limit_and_in_memory_subsets():
    policy = loads_policy(POLICY, "tiny.yaml")
    assert simulate(policy, TINY, limit=2, progress=False).cost_usd == pytest.approx(0.012)
    subset = load_dataset(TINY).subset(ids=["p3"])
    report = simulate(policy, subset, progress=False)
    assert (report.n, report.accuracy, report.cost_usd) == (1, 0.0, pytest.approx(0.001))


def test_exhausted_and_failed_requests_count_as_wrong_at_their_cost():
    policy = loads_policy(POLICY.replace("pattern: '^[A-D]$'", "pattern: 'never'")
                          + "  on_exhausted: raise\n", "tiny.yaml")
    report = simulate(policy, TINY, progress=False)
    assert report.accuracy == 0.0
    assert report.statuses == {"exhausted": 4}
    # p1-p3: both rungs tried (0.011 each); p4: cheap missing, big tried (0.010)
    assert report.cost_usd == pytest.approx(0.043)


def test_single_rung_policy_reproduces_that_models_baseline_on_the_sample():
    text = CASCADE_POLICY.read_text().replace("cascade: [mistral-7b, mixtral-8x7b, gpt-4]", "cascade: [gpt-4]")
    text = text.replace("  confidence:\n", "  confidence: []\n  unused:\n")
    text = text[: text.index("  unused:")]
    report = simulate(loads_policy(text, "gpt4-only.yaml"), SAMPLE_ARC, limit=40, progress=False)
    gpt4 = report.baselines["gpt-4-1106-preview"]
    assert report.n == 40 and report.accuracy == pytest.approx(gpt4.accuracy)
    assert report.cost_usd == pytest.approx(gpt4.cost_usd)
    assert report.oracle.accuracy >= gpt4.accuracy and report.oracle.cost_usd < gpt4.cost_usd


def test_report_str_and_html_name_the_figures():
    report = simulate(loads_policy(POLICY, "tiny.yaml"), TINY, progress=False)
    text = str(report)
    assert "tiny-cascade" in text and "oracle" in text and "0.500" in text and "$0.0230" in text
    assert "<table>" in report._repr_html_()


def test_cli_json_has_the_documented_shape(capsys: pytest.CaptureFixture[str]):
    assert main(["simulate", "--policy", str(CASCADE_POLICY), "--dataset", str(SAMPLE_ARC),
                 "--limit", "25", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"accuracy", "cost_usd", "escalation_rate", "baselines", "oracle", "n"} <= set(out)
    assert out["n"] == 25
    assert set(out["baselines"]) == set(load_dataset(SAMPLE_ARC).models)
    assert all(set(v) >= {"accuracy", "cost_usd"} for v in out["baselines"].values())
    assert set(out["oracle"]) >= {"accuracy", "cost_usd"}
    assert set(out["per_rung"]) == {"mistral-7b", "mixtral-8x7b", "gpt-4"}
    assert 0.0 <= out["accuracy"] <= out["oracle"]["accuracy"]


def test_cli_plot_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    png = tmp_path / "cost-accuracy.png"
    assert main(["simulate", "--policy", str(CASCADE_POLICY), "--dataset", str(SAMPLE_ARC),
                 "--limit", "10", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "plot written to" in capsys.readouterr().out


def test_cli_reports_a_missing_dataset(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    assert main(["simulate", "--policy", str(CASCADE_POLICY), "--dataset", str(tmp_path / "x.csv")]) == 1
    assert "cannot read dataset" in capsys.readouterr().err


def test_cli_refuses_a_dataset_that_does_not_record_the_policys_models(capsys: pytest.CaptureFixture[str]):
    assert main(["simulate", "--policy", str(CASCADE_POLICY), "--dataset", str(TINY)]) == 1
    err = capsys.readouterr().err
    assert "not recorded in" in err and "mistralai/mistral-7b-chat" in err


def test_simulation_leaves_period_budgets_and_the_ledger_alone(tmp_path: Path):
    ledger = tmp_path / "spend.db"
    text = POLICY + f"budgets:\n  - name: daily\n    period: day\n    limit_usd: 0.000001\nledger: sqlite:///{ledger}\n"
    policy = loads_policy(text, "tiny.yaml")
    report = simulate(policy, TINY, progress=False)
    # a $0.000001 daily budget would refuse every call; the simulation ignores it
    assert report.cost_usd == pytest.approx(0.023)
    assert not ledger.exists()


def test_progress_bar_only_when_asked_or_on_a_terminal(capsys: pytest.CaptureFixture[str]):
    policy = loads_policy(POLICY, "tiny.yaml")
    simulate(policy, TINY)  # stderr is captured here, not a terminal: no bar
    assert "prompt" not in capsys.readouterr().err
    simulate(policy, TINY, progress=True)
    assert "simulate tiny-cascade" in capsys.readouterr().err


def test_cli_set_overrides_apply_to_every_request(capsys: pytest.CaptureFixture[str]):
    assert main(["simulate", "--policy", str(CASCADE_POLICY), "--dataset", str(SAMPLE_ARC), "--limit", "20",
                 "--set", "cascade=[gpt-4]", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["per_rung"]["gpt-4"]["attempted"] == 20 and out["per_rung"]["mistral-7b"]["attempted"] == 0
    assert out["accuracy"] == out["baselines"]["gpt-4-1106-preview"]["accuracy"]


LOCAL_FIRST = """
version: 1
name: local-first
models:
  gemma: {provider: llamacpp, gguf: "bundled:gemma-3-270m", chat_format: qa, local: true, tier: basic,
          context_window: 2048}
  big: {provider: recorded, model: big, local: true, tier: premium, price: {input: 10.0, output: 30.0}}
policy:
  max_output_tokens: 8
  cascade: [gemma, big]
  confidence:
    - check: min_length
      chars: 1
"""


def test_answers_of_a_real_local_model_are_scored_against_gold():
    """The bundled llama.cpp model answers first for real; its answer has no recording, so it is
    compared with the record's gold answer (text extractor: case and punctuation do not matter)."""
    report = simulate(loads_policy(LOCAL_FIRST, "local-first.yaml"), HERE / "fixtures" / "gold.jsonl",
                      progress=False)
    france, italy = report.rows
    assert france.final_model == "gemma" and france.correct is True  # " Paris" vs gold "Paris."
    assert italy.final_model == "gemma" and italy.correct is None  # no gold: unscored, counted wrong
    assert report.unscored == 1 and report.accuracy == 0.5 and report.cost_usd == 0.0


def test_cli_plot_without_matplotlib_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str], tmp_path: Path):
    """matplotlib is installed here, so its absence is simulated by hiding the module."""
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes "import matplotlib" raise ImportError
    monkeypatch.delitem(sys.modules, "router.lab.plot", raising=False)
    assert main(["simulate", "--policy", str(CASCADE_POLICY), "--dataset", str(SAMPLE_ARC), "--limit", "3",
                 "--plot", str(tmp_path / "x.png")]) == 1
    captured = capsys.readouterr()
    assert "policy-router[plot]" in captured.err
    assert "oracle" in captured.out  # the figures are printed all the same
