"""Spend reports: grouping, ``--since``, the ``router spend`` command (text, JSON, CSV),
Jupyter HTML, and what a ledger entry holds — never the prompt or a key."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import uuid
from datetime import datetime, timezone

import pytest
from spend_support import GEMINI_KEY, gemini_policy

from router import PolicyRouter, loads_policy
from router.cli.main import main
from router.spend import Bucket, Hold, open_ledger, spend_report
from router.spend.ledger import to_units

DAY1 = datetime(2027, 1, 15, 12, tzinfo=timezone.utc).timestamp()
DAY2 = datetime(2027, 1, 16, 9, tzinfo=timezone.utc).timestamp()


@pytest.fixture
def ledger_url(tmp_path) -> str:
    """A SQLite ledger holding four settled calls over two days, two policies and two users."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = open_ledger(url)
    calls = [(DAY1, "default", "gpt-4", "ann", 0.30), (DAY1, "default", "flash", "bob", 0.02),
             (DAY2, "default", "gpt-4", "ann", 0.10), (DAY2, "premium", "flash", "ann", 0.01)]
    for ts, policy, model, user, cost in calls:
        buckets = (Bucket("daily", None, "d", to_units(10)), Bucket("per-user", user, "d", to_units(1)))
        hold = Hold(uuid.uuid4().hex, buckets, to_units(0.5), ts + 60, policy, model,
                    labels=("daily", f"per-user[user={user}]"), metadata={"user": user})
        assert ledger.reserve(hold, ts) is None
        ledger.settle(hold, to_units(cost), ts)
    ledger.close()
    return url


def rows(report) -> dict[str, tuple[int, float]]:
    return {r.key: (r.calls, round(r.cost_usd, 9)) for r in report.rows}


def test_groups_by_model_policy_day_budget_and_a_metadata_key(ledger_url: str):
    assert rows(spend_report(ledger_url, by="model")) == {"gpt-4": (2, 0.4), "flash": (2, 0.03)}
    assert rows(spend_report(ledger_url, by="policy")) == {"default": (3, 0.42), "premium": (1, 0.01)}
    assert rows(spend_report(ledger_url, by="day")) == {"2027-01-15": (2, 0.32), "2027-01-16": (2, 0.11)}
    assert rows(spend_report(ledger_url, by="user")) == {"ann": (3, 0.41), "bob": (1, 0.02)}
    by_budget = spend_report(ledger_url, by="budget")
    assert rows(by_budget) == {"daily": (4, 0.43), "per-user[user=ann]": (3, 0.41),
                               "per-user[user=bob]": (1, 0.02)}
    assert by_budget.calls == 4 and by_budget.total_usd == pytest.approx(0.43)
    assert [r.key for r in spend_report(ledger_url, by="model").rows] == ["gpt-4", "flash"]  # costliest first


def test_since_keeps_later_entries(ledger_url: str):
    report = spend_report(ledger_url, since="2027-01-16", by="model")
    assert rows(report) == {"gpt-4": (1, 0.1), "flash": (1, 0.01)} and report.since == "2027-01-16"
    assert spend_report(ledger_url, since="2027-01-16T10:00").calls == 0
    with pytest.raises(ValueError, match="--since takes a date"):
        spend_report(ledger_url, since="last tuesday")


def test_router_spend_command_prints_text_json_and_csv(ledger_url: str, capsys: pytest.CaptureFixture[str]):
    assert main(["spend", "--ledger", ledger_url, "--by", "user", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["by"] == "user" and data["calls"] == 4 and data["total_usd"] == pytest.approx(0.43)
    assert [(r["key"], r["calls"]) for r in data["rows"]] == [("ann", 3), ("bob", 1)]

    assert main(["spend", "--ledger", ledger_url, "--by", "day", "--csv", "--since", "2027-01-15"]) == 0
    table = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert table[0] == ["day", "calls", "cost_usd", "worst_case_usd"]
    assert [(r[0], r[1], float(r[2])) for r in table[1:]] == [("2027-01-15", "2", 0.32), ("2027-01-16", "2", 0.11)]

    assert main(["spend", "--ledger", ledger_url]) == 0
    text = capsys.readouterr().out
    assert "gpt-4" in text and text.strip().splitlines()[-1].split() == ["total", "4", "0.430000"]

    assert main(["spend", "--ledger", ledger_url, "--since", "yesterday-ish"]) == 1
    assert "--since takes a date" in capsys.readouterr().err


def test_router_spend_reads_the_ledger_named_by_a_policy(ledger_url: str, tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text(gemini_policy("http://127.0.0.1:9", ledger_url, limit=1.0))
    assert main(["spend", "--policy", str(policy), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["calls"] == 4


def test_report_renders_as_html_for_jupyter(ledger_url: str):
    html = spend_report(ledger_url, by="budget")._repr_html_()
    assert html.count("<tr>") == 5  # header, three budgets, total
    assert "per-user[user=ann]" in html and "$0.430000" in html


async def test_an_entry_records_what_was_charged_and_never_the_prompt_or_key(gemini, tmp_path):
    db = tmp_path / "ledger.db"
    text = gemini_policy(gemini.base_url, f"sqlite:///{db}", limit=1.0).replace(
        "    limit_usd: 1.0\n", "    limit_usd: 1.0\n  - name: per-tenant\n    period: month\n"
                               "    limit_usd: 5.0\n    per: tenant\n")
    router = PolicyRouter(policy=loads_policy(text))
    prompt = "Confidential: the merger code name is BLUE-HERON-77"
    await router.ainvoke(prompt, config={"metadata": {"tenant": "acme", "user": "ann"}})
    [entry] = open_ledger(f"sqlite:///{db}").entries()
    assert (entry.policy, entry.model, entry.purpose) == ("spend-test", "flash", "answer")
    assert entry.budgets == ("daily", "per-tenant[tenant=acme]")
    assert entry.metadata == {"tenant": "acme"}  # only the keys a per: budget used
    assert entry.cost_usd == pytest.approx(0.001) and abs(entry.ts - datetime.now(timezone.utc).timestamp()) < 60
    with sqlite3.connect(db) as raw:
        dump = "\n".join(raw.iterdump())
    assert "BLUE-HERON" not in dump and GEMINI_KEY not in dump and "ann" not in dump
