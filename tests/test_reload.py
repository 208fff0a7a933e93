"""A router built from a file with ``reload=True`` follows the file as it is edited on disk:
the new text is validated first, swapped between requests, and a broken file keeps the old
policy with the error logged (once per broken version)."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from router import PolicyError, PolicyRouter
from router.policy.reload import PolicyWatcher

POLICY = """\
version: 1
name: {name}
models:
  gemma:
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    chat_format: qa
    tier: basic
    local: true
    context_window: 2048
  gemma-strong:
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    chat_format: qa
    tier: standard
    local: true
    context_window: 2048
policy:
  cost_ceiling: {ceiling}
  max_output_tokens: 8
  cascade: [{cascade}]
"""
BROKEN = POLICY.replace("  cost_ceiling:", "  cost_celing:")


def policy_text(name: str = "first", ceiling: float = 0.05, cascade: str = "gemma, gemma-strong",
                template: str = POLICY) -> str:
    return template.format(name=name, ceiling=ceiling, cascade=cascade)


def edit(path: Path, text: str) -> None:
    """Rewrite the file in place, as an editor without atomic save does."""
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    edit(path, policy_text())
    return path


def seen(router: PolicyRouter) -> tuple[str, float]:
    decision = router.explain("What is the capital of France?")
    return decision.policy, decision.effective["cost_ceiling"]


def test_an_edited_file_takes_effect_on_the_next_request(policy_file: Path):
    router = PolicyRouter.from_yaml(policy_file, reload=True)
    assert seen(router) == ("first", 0.05)
    edit(policy_file, policy_text("second", 0.01))
    assert seen(router) == ("second", 0.01)
    assert router.policy.name == "second"
    assert router.policy_watcher is not None and router.policy_watcher.reloads == 1


def test_without_reload_edits_are_ignored(policy_file: Path):
    router = PolicyRouter.from_yaml(policy_file)
    edit(policy_file, policy_text("second", 0.01))
    assert seen(router) == ("first", 0.05)
    assert router.policy_watcher is None


def test_a_broken_file_keeps_the_old_policy_and_logs_the_error_once(policy_file: Path,
                                                                    caplog: pytest.LogCaptureFixture):
    router = PolicyRouter.from_yaml(policy_file, reload=True)
    caplog.set_level(logging.ERROR, logger="router.policy.reload")
    edit(policy_file, policy_text(template=BROKEN))
    for _ in range(3):
        assert seen(router) == ("first", 0.05)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"{policy_file}:19:3: policy.cost_celing: unknown key" in errors[0].getMessage()
    assert "keeping policy 'first'" in errors[0].getMessage()
    watcher = router.policy_watcher
    assert watcher is not None and isinstance(watcher.last_error, PolicyError)
    assert watcher.last_error.line == 19
    edit(policy_file, policy_text("fixed", 0.02))
    assert seen(router) == ("fixed", 0.02)
    assert watcher.last_error is None


def test_an_emptied_or_deleted_file_keeps_the_old_policy(policy_file: Path, caplog: pytest.LogCaptureFixture):
    router = PolicyRouter.from_yaml(policy_file, reload=True)
    caplog.set_level(logging.ERROR, logger="router.policy.reload")
    edit(policy_file, "")  # an editor that truncates, then writes
    assert seen(router) == ("first", 0.05)
    policy_file.unlink()
    assert seen(router) == ("first", 0.05)
    assert seen(router) == ("first", 0.05)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "cannot read policy file" in messages[1]
    edit(policy_file, policy_text("back", 0.03))
    assert seen(router) == ("back", 0.03)


def test_an_atomic_save_by_rename_is_seen(policy_file: Path):
    router = PolicyRouter.from_yaml(policy_file, reload=True)
    staged = policy_file.with_suffix(".tmp")
    edit(staged, policy_text("renamed", 0.04))
    os.replace(staged, policy_file)
    assert seen(router) == ("renamed", 0.04)


def test_same_size_rewrites_in_one_timestamp_tick_are_seen(policy_file: Path):
    """File systems with coarse timestamps give two quick writes the same mtime: pinning it
    back here, the only difference left is the text (same size, same inode)."""
    router = PolicyRouter.from_yaml(policy_file, reload=True)
    seen(router)  # the first request loads the tokenizer (seconds); the edits below take ms
    tick = time.time_ns()
    for ceiling in (0.01, 0.02, 0.03):
        edit(policy_file, policy_text("first", ceiling))
        os.utime(policy_file, ns=(tick, tick))
        assert seen(router) == ("first", ceiling)


def test_a_request_in_flight_keeps_the_policy_it_started_with(policy_file: Path):
    router = PolicyRouter.from_yaml(policy_file, reload=True)
    plan = router.plan("What is 2+2?")
    edit(policy_file, policy_text("second", 0.01, cascade="gemma-strong"))
    later = router.plan("What is 2+2?")
    assert (plan.catalog.policy.name, plan.settings.cost_ceiling, plan.selection.candidates) == (
        "first", 0.05, ["gemma", "gemma-strong"])
    assert (later.catalog.policy.name, later.settings.cost_ceiling, later.selection.candidates) == (
        "second", 0.01, ["gemma-strong"])


def test_concurrent_requests_never_mix_two_versions(policy_file: Path):
    router = PolicyRouter.from_yaml(policy_file, reload=True)
    versions = {"first": 0.05, "second": 0.01}
    stop = threading.Event()
    bad: list[tuple[str, float]] = []
    count = [0]

    def requests() -> None:
        while not stop.is_set():
            name, ceiling = seen(router)
            count[0] += 1
            if versions[name] != ceiling:
                bad.append((name, ceiling))

    threads = [threading.Thread(target=requests) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(40):
        name = ("first", "second")[i % 2]
        edit(policy_file, policy_text(name, versions[name]))
        stop.wait(0.005)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not bad and count[0] > 40
    assert seen(router) == ("second", 0.01)  # the last version written wins


def test_reload_interval_spaces_the_checks(policy_file: Path):
    now = [0.0]
    watcher = PolicyWatcher(policy_file, interval_s=5.0, clock=lambda: now[0])
    assert watcher.poll().name == "first"
    edit(policy_file, policy_text("second"))
    now[0] = 4.0
    assert watcher.poll().name == "first"
    now[0] = 5.5
    assert watcher.poll().name == "second"


def test_a_packaged_name_can_be_watched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    router = PolicyRouter.from_yaml("offline", reload=True)
    assert router.policy_watcher is not None and router.policy_watcher.path.name == "offline.yaml"
    assert seen(router)[0] == "offline"


@pytest.mark.slow
def test_a_reloaded_cascade_answers_with_the_real_local_model(policy_file: Path):
    router = PolicyRouter.from_yaml(policy_file, reload=True)
    before = router.invoke("What is the capital of France?")
    assert before.response_metadata["routing"]["attempts"][0]["model"] == "gemma"
    edit(policy_file, policy_text("strong-only", cascade="gemma-strong"))
    after = router.invoke("What is the capital of France?")
    routing = after.response_metadata["routing"]
    assert (routing["policy"], routing["attempts"][0]["model"]) == ("strong-only", "gemma-strong")
    assert "Paris" in str(after.content)


def test_a_reload_that_changes_budgets_rebuilds_the_policy_guard(policy_file: Path):
    router = PolicyRouter.from_yaml(policy_file, reload=True)
    assert router.spend_guard.budgets == ()  # no budgets: a guard that only records
    edit(policy_file, policy_text() + "budgets:\n  - {name: daily, period: day, limit_usd: 1.0}\n"
                                      "ledger: memory://\n")
    seen(router)
    assert [b.name for b in router.spend_guard.budgets] == ["daily"]
    guard = object()
    own = PolicyRouter.from_yaml(policy_file, reload=True)
    own.spend_guard = guard  # a guard the caller chose is never replaced
    edit(policy_file, policy_text())
    seen(own)
    assert own.spend_guard is guard
