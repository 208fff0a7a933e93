"""A policy file is data: naming ``module:function`` imports nothing unless code is allowed.

The attack: a policy from a shared repository names a module that does something on import (or
a module planted in the working directory, which ``python -m router.cli.main`` puts first on
``sys.path``). Loading or validating it must not import it. The module here writes a marker
file when imported; the marker stays absent at load, at ``router validate`` in-process and in a
subprocess run from the module's directory. With ``allow_code=True`` / ``--allow-code`` (the
control) the same file imports the module and the check runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from router import PolicyError, PolicyRouter, load_policy
from router.checks import registered_checks
from router.checks.builtin import Answer, build_check
from router.cli.main import main

POLICY = """\
version: 1
name: code
models:
  m: {provider: llamacpp, gguf: bundled:gemma-3-270m, local: true}
policy:
  cascade: [m]
  confidence:
    - check: refusal
    - check: "evilchecks:shouty"
      min_caps: 2
"""


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A module that writes ``marker`` when imported, importable from ``sys.path`` and the cwd."""
    marker = tmp_path / "marker"
    (tmp_path / "evilchecks.py").write_text(textwrap.dedent(f"""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("imported")

        def shouty(answer, min_caps=1):
            return sum(c.isupper() for c in answer.text) >= min_caps
    """))
    policy = tmp_path / "code.yaml"
    policy.write_text(POLICY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "evilchecks", raising=False)
    return policy, marker


def test_load_refuses_a_code_check_at_its_line_and_imports_nothing(planted: tuple[Path, Path]):
    policy, marker = planted
    with pytest.raises(PolicyError) as info:
        load_policy(policy)
    issue = info.value.issues[0]
    assert (issue.line, issue.key) == (9, "policy.confidence.1.check")
    assert "allow_code=True" in issue.message and "--allow-code" in issue.message
    with pytest.raises(PolicyError):
        PolicyRouter.from_yaml(policy)
    assert not marker.exists() and "evilchecks" not in sys.modules


def test_validate_refuses_it_in_process_and_from_the_modules_directory(planted: tuple[Path, Path],
                                                                       capsys: pytest.CaptureFixture[str]):
    policy, marker = planted
    assert main(["validate", str(policy)]) == 1
    assert "code.yaml:9:14: policy.confidence.1.check" in capsys.readouterr().err
    env = {**os.environ, "PYTHONPATH": str(policy.parent)}
    done = subprocess.run([sys.executable, "-m", "router.cli.main", "validate", policy.name], cwd=policy.parent,
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1, done.stderr
    assert "--allow-code" in done.stderr
    assert not marker.exists()


def test_a_rule_cannot_smuggle_a_code_check_in(planted: tuple[Path, Path]):
    policy, marker = planted
    text = POLICY.replace('    - check: "evilchecks:shouty"\n      min_caps: 2\n', "") + (
        "rules:\n  - when: {tags: [x]}\n    set:\n      confidence: [{check: 'evilchecks:shouty'}]\n")
    policy.write_text(text)
    with pytest.raises(PolicyError) as info:
        load_policy(policy)
    assert info.value.issues[0].key == "rules.0.set.confidence.0.check"
    assert not marker.exists()


def test_control_allow_code_imports_and_runs_it(planted: tuple[Path, Path], capsys: pytest.CaptureFixture[str]):
    policy, marker = planted
    assert main(["validate", "--allow-code", str(policy)]) == 0
    assert marker.exists()
    check = load_policy(policy, allow_code=True).policy.confidence[1]
    assert PolicyRouter.from_yaml(policy, allow_code=True).policy.allow_code
    assert check.run(Answer.from_text("ABc"), None).passed
    assert not check.run(Answer.from_text("Abc"), None).passed


def test_build_check_refuses_code_without_importing(planted: tuple[Path, Path]):
    _, marker = planted
    with pytest.raises(ValueError, match="allow_code"):
        build_check({"check": "evilchecks:shouty"})
    with pytest.raises(ValueError, match="module:function"):
        build_check({"check": "os:system; rm"}, allow_code=True)
    assert not marker.exists()


def test_an_installed_entry_point_check_needs_no_allow_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # A real installed distribution as importlib.metadata finds one: a *.dist-info directory on
    # sys.path with an entry_points.txt in the policy_router.checks group.
    (tmp_path / "politecheck.py").write_text(
        "def polite(answer, word='please'):\n    return word in answer.text.lower()\n")
    info = tmp_path / "politecheck-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: politecheck\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[policy_router.checks]\npolite = politecheck:polite\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "politecheck", raising=False)
    assert "polite" in registered_checks()
    assert "politecheck" not in sys.modules  # listing installed checks imports nothing
    text = POLICY.replace('"evilchecks:shouty"\n      min_caps: 2', "polite\n      word: thanks")
    policy = tmp_path / "plugin.yaml"
    policy.write_text(text)
    check = load_policy(policy).policy.confidence[1]
    assert check.run(Answer.from_text("Thanks!"), None).passed
    assert not check.run(Answer.from_text("No."), None).passed
