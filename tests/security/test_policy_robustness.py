"""A hostile or careless policy file, override or edit never gives a traceback, a secret or a
silently ignored setting: huge integers, bad refusal patterns, ledger passwords, non-UTF-8
reloads and near-miss ``configurable`` keys are typed, located errors (or kept out of sight)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest
import yaml
from langchain_core.load import dumpd
from policy_texts import BASE

from router import PolicyError, PolicyRouter
from router.cli.main import main as cli_main
from router.policy.overrides import policy_overrides
from router.policy.policy_file import loads_policy

PASSWORD = "Sup3rS3cretPw"
LEDGER_PW = f"ledger: redis://admin:{PASSWORD}@db.example:6379/0?ttl=5\n"  # ttl: not an option
BAD_REFUSAL = "  confidence:\n    - check: refusal\n      extra_patterns: [\"((\"]\n"


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def error_of(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        loads_policy(text, "p.yaml")
    return caught.value


# ------------------------------------------------------------------ 1. huge integers


@pytest.mark.parametrize(("line", "key"), [("  cost_ceiling: 1" + "0" * 5000, "policy.cost_ceiling"),
                                           ("  temperature: 0x" + "f" * 4000, "policy.temperature")])
def test_a_huge_integer_is_a_located_policy_error_not_a_value_error(line: str, key: str):
    err = error_of(BASE + line + "\n")
    first = err.issues[0]
    assert (first.line, first.key) == (16, key)
    assert "too large" in first.message and len(str(first)) < 300


def test_a_huge_integer_in_a_dict_policy_is_shown_by_its_size():
    data = yaml.safe_load(BASE)
    data["policy"]["temperature"] = 10**5000
    with pytest.raises(PolicyError) as caught:
        PolicyRouter.from_dict(data)
    assert "an integer of about 5000 digits" in str(caught.value)


def test_validate_reports_a_huge_integer_and_still_checks_the_next_file(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]):
    big = write(tmp_path, "bigint.yaml", BASE + "  cost_ceiling: 1" + "0" * 5000 + "\n")
    good = write(tmp_path, "base.yaml", BASE)
    assert cli_main(["validate", str(big), str(good)]) == 1
    out = capsys.readouterr()
    assert f"{big}:16:17: policy.cost_ceiling:" in out.out + out.err
    assert "base.yaml: ok" in out.out + out.err


def test_set_with_a_huge_integer_is_an_invalid_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = write(tmp_path, "base.yaml", BASE)
    assert cli_main(["explain", "hi", "--policy", str(path), "--set", "max_output_tokens=1" + "0" * 5000]) == 1
    out = capsys.readouterr()
    assert "max_output_tokens" in out.out + out.err


# ------------------------------------------------------------------ 2. refusal patterns


def test_a_bad_refusal_pattern_is_a_located_policy_error():
    first = error_of(BASE + BAD_REFUSAL).issues[0]
    assert (first.line, first.column, first.key) == (18, 24, "policy.confidence.0.extra_patterns.0")
    assert "not a valid regular expression" in first.message


# ------------------------------------------------------------------ 3. passwords


def test_validate_never_prints_a_ledger_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = write(tmp_path, "ledger.yaml", BASE + LEDGER_PW)
    assert cli_main(["validate", str(path)]) == 1
    out = capsys.readouterr()
    assert "redis://admin:***@db.example" in out.out + out.err
    assert PASSWORD not in out.out + out.err


def test_an_error_message_never_holds_a_url_password():
    err = error_of(BASE + "ledger: 'redis://u:p@ss/w:rd@db:6379/0?bad=1'\n")  # unescaped @, / and :
    assert "p@ss" not in str(err) and "w:rd" not in str(err) and "redis://u:***@db:6379/0" in str(err)


def test_dumpd_holds_no_ledger_password():
    router = PolicyRouter.from_string(BASE + f"ledger: redis://admin:{PASSWORD}@db.example:6379/0\n")
    data = json.dumps(dumpd(router))
    assert PASSWORD not in data
    assert "redis://admin:***@db.example:6379/0" in data


# ------------------------------------------------------------------ 4. reload keeps the policy


def _edit_later(path: Path, text: bytes) -> None:
    path.write_bytes(text)
    later = time.time_ns() + 10**9
    os.utime(path, ns=(later, later))


@pytest.mark.parametrize("new", [BASE.replace("name: base", "name: caf\xe9").encode("latin-1"),
                                 (BASE + BAD_REFUSAL).encode(),
                                 (BASE + LEDGER_PW).encode()],
                         ids=["latin-1", "bad-refusal-pattern", "ledger-password"])
def test_a_bad_edit_keeps_the_policy_in_force_and_logs_a_typed_error(tmp_path: Path, new: bytes,
                                                                     caplog: pytest.LogCaptureFixture):
    path = write(tmp_path, "watched.yaml", BASE)
    router = PolicyRouter.from_yaml(path, reload=True, reload_interval_s=0)
    _edit_later(path, new)
    with caplog.at_level(logging.ERROR, logger="router.policy.reload"):
        for _ in range(2):
            assert router.explain("hello").to_dict()["policy"] == "base"
    assert isinstance(router._watcher.last_error, PolicyError)
    assert router._watcher.last_error.issues[0].line > 0
    assert len([r for r in caplog.records if "is invalid" in r.getMessage()]) == 1
    assert PASSWORD not in caplog.text


def test_watching_a_file_that_is_not_utf8_is_a_located_policy_error(tmp_path: Path):
    path = write(tmp_path, "latin1.yaml", BASE.replace("name: base", "name: caf\xe9").encode("latin-1"))
    with pytest.raises(PolicyError) as caught:
        PolicyRouter.from_yaml(path, reload=True)
    assert (caught.value.issues[0].line, caught.value.issues[0].column) == (2, 10)


# ------------------------------------------------------------------ 7. near-miss configurable keys


@pytest.mark.parametrize(("key", "field"), [("PRIVACY", "privacy"), ("Privacy", "privacy"),
                                            ("privacy_mode", "privacy"), ("enable_privacy", "privacy"),
                                            ("costCeiling", "cost_ceiling"), ("offline_mode", "offline"),
                                            ("privcy", "privacy")])
def test_a_near_miss_configurable_key_is_a_policy_error_naming_the_field(key: str, field: str):
    with pytest.raises(PolicyError) as caught:
        policy_overrides({key: True})
    assert caught.value.issues[0].suggestion == field


def test_a_near_miss_configurable_key_fails_the_request_instead_of_leaving_privacy_off():
    router = PolicyRouter.from_yaml("default")
    with pytest.raises(PolicyError, match="privacy"):
        router.explain("hi", config={"configurable": {"privacy_mode": True}})


@pytest.mark.parametrize("key", ["thread_id", "checkpoint_ns", "checkpoint_id", "checkpoint_map", "user_id",
                                 "session_id", "run_id", "model", "max_tokens", "__pregel_runtime",
                                 "__pregel_scratchpad", "__pregel_checkpointer", "__pregel_task_id",
                                 "langgraph_auth_user"])
def test_other_runnables_configurable_keys_pass_silently(key: str):
    assert policy_overrides({key: "x", "privacy": True}) == {"privacy": True}
