"""``budgets:`` and ``ledger:`` in the policy file: valid forms load into typed models; broken
ones fail like every other policy error, located at file:line:col with the key and a "did you
mean" where one helps."""

from __future__ import annotations

import pytest

from router import PolicyError, PolicyRouter, loads_policy
from router.spend import Budget, BudgetGuard

HEAD = """version: 1
name: budgets
models:
  gemma:
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    chat_format: qa
    local: true
policy:
  cascade: [gemma]
"""


def load(tail: str):
    return loads_policy(HEAD + tail, "budgets.yaml")


def only_issue(tail: str):
    with pytest.raises(PolicyError) as err:
        load(tail)
    assert len(err.value.issues) == 1, err.value.issues
    return err.value.issues[0]


def test_the_issue_example_loads_into_typed_budgets():
    policy = load("""budgets:
  - name: daily
    period: day            # minute | hour | day | month (calendar, UTC)
    limit_usd: 20.0
  - name: per-user
    period: day
    limit_usd: 1.0
    per: user
ledger: redis://127.0.0.1:6379/0
""")
    assert policy.budgets == (Budget(name="daily", period="day", limit_usd=20.0),
                              Budget(name="per-user", period="day", limit_usd=1.0, per="user"))
    assert policy.ledger == "redis://127.0.0.1:6379/0"
    guard = PolicyRouter(policy=policy).spend_guard
    assert isinstance(guard, BudgetGuard) and [b.name for b in guard.budgets] == ["daily", "per-user"]


def test_no_budgets_means_a_recording_guard_and_no_ledger_touched_until_a_paid_call(
        monkeypatch: pytest.MonkeyPatch, tmp_path):
    """Without budgets the guard only records paid calls (issue 25: ``router spend`` shows them);
    building the router, and local calls, open no ledger."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    router = PolicyRouter(policy=load(""))
    guard = router.spend_guard
    assert isinstance(guard, BudgetGuard) and guard.budgets == ()
    router.invoke("What is 2+2?")
    assert list(tmp_path.iterdir()) == []  # the default ledger was not even created


def test_a_misspelt_budget_key_is_located_with_a_suggestion():
    with pytest.raises(PolicyError) as err:
        load("budgets:\n  - name: daily\n    period: day\n    limit: 20\n")
    issue, missing = err.value.issues  # the misspelling first: it explains the missing key
    assert missing.key == "budgets.0.limit_usd" and missing.message == "required key is missing"
    assert (issue.file, issue.line, issue.column) == ("budgets.yaml", 14, 5)
    assert issue.key == "budgets.0.limit" and issue.suggestion == "limit_usd"
    assert "unknown key 'limit'" in str(issue)


def test_an_unknown_period_is_located_at_its_value():
    issue = only_issue("budgets:\n  - name: daily\n    period: weekly\n    limit_usd: 5\n")
    assert (issue.line, issue.column, issue.key) == (13, 13, "budgets.0.period")
    assert "'minute', 'hour', 'day' or 'month'" in issue.message and "weekly" in issue.message


def test_a_bad_ledger_url_and_a_duplicate_budget_name_are_errors():
    issue = only_issue("ledger: sqlit:///tmp/ledger.db\n")
    assert (issue.line, issue.key) == (11, "ledger") and "did you mean sqlite://?" in issue.message
    issue = only_issue("ledger: sqlite:///tmp/l.db?ttl_s=-1\n")
    assert "ttl_s must be a number of seconds > 0" in issue.message
    issue = only_issue("budgets:\n  - {name: a, period: day, limit_usd: 1}\n"
                       "  - {name: a, period: hour, limit_usd: 1}\n")
    assert (issue.line, issue.key) == (13, "budgets.1.name") and "used twice" in issue.message


def test_a_negative_limit_is_refused():
    issue = only_issue("budgets:\n  - name: daily\n    period: day\n    limit_usd: -1\n")
    assert issue.key == "budgets.0.limit_usd" and issue.line == 14


def test_a_ledger_password_never_shows_in_a_repr():
    policy = load("budgets:\n  - {name: daily, period: day, limit_usd: 1}\n"
                  "ledger: redis://:hunter2-secret@127.0.0.1:6379/0\n")
    router = PolicyRouter(policy=policy)
    assert policy.ledger == "redis://:hunter2-secret@127.0.0.1:6379/0"  # the value itself is usable
    for shown in (repr(policy), repr(router), repr(router.spend_guard), str(router.spend_guard)):
        assert "hunter2" not in shown
    assert "redis://:***@127.0.0.1:6379/0" in repr(router.spend_guard)
