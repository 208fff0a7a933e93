"""``router validate`` reports every problem of a file in one run (issue 25, point 6): a file with
a misspelt check, two unknown keys, a bad value and a cascade typo took three runs on main (the
located check entries, then the schema, then the cross-references each stopped the load)."""

from __future__ import annotations

from pathlib import Path

import pytest

from router import PolicyError, loads_policy
from router.cli.main import main

TYPOS = """\
version: 1
name: typos
models:
  gemma:
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    chat_format: qa
    local: true
    tiér: basic
policy:
  cost_cieling: 0.01
  cascade: [gemma, gema]
  confidence:
    - check: refusl
    - check: min_length
      chars: 2
      char: 3
  on_exhausted: bset
rules:
  - when: {tags: [x]}
    set: {privcy: true}
"""


def test_every_problem_of_a_file_in_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "typos.yaml"
    path.write_text(TYPOS, encoding="utf-8")
    assert main(["validate", str(path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    keys = [line.split(": ")[1] for line in lines]
    assert keys == ["rules.0.set.privcy", "policy.confidence.0.check", "policy.confidence.1.char",
                    "models.gemma.tiér", "policy.cost_cieling", "policy.on_exhausted", "policy.cascade.1"], lines
    assert lines[1].startswith(f"{path}:14:14:") and "(did you mean 'refusal'?)" in lines[1]
    assert lines[-1].startswith(f"{path}:12:20:") and "(did you mean 'gemma'?)" in lines[-1]


def test_a_problem_under_a_part_set_aside_is_not_reported_twice():
    """A bad value is reported once, not again as what the cross-references make of it."""
    text = TYPOS.split("rules:")[0].replace("    tiér: basic\n", "").replace("[gemma, gema]", "[gemma]")
    text = text.replace("    - check: refusl\n", "").replace("      char: 3\n", "").replace("  cost_cieling: 0.01\n", "")
    with pytest.raises(PolicyError) as raised:
        loads_policy(text.replace("bset", "best").replace("local: true", "local: maybe"))
    assert [i.key for i in raised.value.issues] == ["models.gemma.local"]


def test_a_bad_provider_is_reported_with_every_other_problem():
    # provider: is checked against the provider registry (not a pydantic Literal), so a typo there
    # is one more located problem with a did-you-mean, and the other stages still report theirs
    text = TYPOS.replace("provider: llamacpp", "provider: llamacp")
    with pytest.raises(PolicyError) as raised:
        loads_policy(text)
    issues = {i.key: i for i in raised.value.issues}
    assert "llamacpp" in str(issues["models.gemma.provider"])
    assert {"policy.cost_cieling", "models.gemma.tiér", "rules.0.set.privcy"} <= set(issues)
