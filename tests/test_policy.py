"""Policy files: shipped ones validate; broken ones fail with file:line:col, key and a hint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from router import PolicyError, load_policy, loads_policy
from router.cli.main import main as cli_main
from router.policy.overrides import effective_settings, policy_overrides

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "policies").glob("*.yaml"))
BROKEN = Path(__file__).parent / "broken_policies"

# file → (line, key, suggestion or None)
BROKEN_TABLE = {
    "01_unknown_top_key.yaml": (8, "polcy", "policy"),
    "02_unknown_policy_key.yaml": (10, "policy.cost_celing", "cost_ceiling"),
    "03_cascade_unknown_model.yaml": (9, "policy.cascade.0", "local"),
    "04_negative_price.yaml": (8, "models.local.price.input", None),
    "05_unknown_tier.yaml": (8, "models.local.tier", "premium"),
    "06_quality_tier_unknown.yaml": (10, "policy.quality_tier", "standard"),
    "07_bad_provider.yaml": (5, "models.local.provider", "llamacpp"),
    "08_unknown_check.yaml": (11, "policy.confidence.0.check", "logprob"),
    "09_bad_check_param.yaml": (12, "policy.confidence.0.char", "chars"),
    "10_missing_env.yaml": (6, "models.local.gguf", None),
    "11_wrong_version.yaml": (1, "version", None),
    "12_ceiling_not_number.yaml": (10, "policy.cost_ceiling", None),
    "13_tier_order.yaml": (15, "policy.cascade", None),
    "14_rule_unknown_field.yaml": (12, "rules.0.set.privcy", "privacy"),
    "15_bad_regex.yaml": (12, "policy.confidence.0.pattern", None),
    "16_yaml_syntax.yaml": (5, "", None),
    "17_duplicate_key.yaml": (11, "policy.privacy", None),
    "18_network_claims_local.yaml": (7, "models.cloud.local", None),
    "19_rule_relaxes_privacy.yaml": (13, "rules.0.set.privacy", None),
    "20_bad_on_exhausted.yaml": (10, "policy.on_exhausted", None),
    "21_api_key_in_env_field.yaml": (7, "models.cloud.api_key_env", None),
    "22_network_model_without_price.yaml": (5, "models.cloud.price", None),
}


def test_every_broken_file_is_in_the_table():
    assert sorted(p.name for p in BROKEN.glob("*.yaml")) == sorted(BROKEN_TABLE)
    assert len(BROKEN_TABLE) >= 15


@pytest.mark.parametrize("name", sorted(BROKEN_TABLE))
def test_broken_policy_names_file_line_column_and_key(name: str):
    line, key, suggestion = BROKEN_TABLE[name]
    path = BROKEN / name
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    err = info.value
    assert err.file == str(path)
    assert (err.line, err.key) == (line, key), str(err)
    assert err.column >= 1
    assert err.suggestion == suggestion
    text = str(err)
    assert text.startswith(f"{path}:{line}:{err.column}:")
    if suggestion:
        assert f"did you mean {suggestion!r}" in text


@pytest.mark.parametrize("name", sorted(BROKEN_TABLE))
def test_validate_command_exits_1_on_broken(name: str, capsys: pytest.CaptureFixture[str]):
    path = BROKEN / name
    assert cli_main(["validate", str(path)]) == 1
    line = BROKEN_TABLE[name][0]
    assert f"{path}:{line}:" in capsys.readouterr().err


def test_validate_command_exits_0_on_every_shipped_policy(capsys: pytest.CaptureFixture[str]):
    assert {p.name for p in SHIPPED} >= {"default.yaml", "private.yaml", "offline.yaml", "budget.yaml",
                                         "premium.yaml"}
    assert cli_main(["validate", *map(str, SHIPPED)]) == 0
    assert capsys.readouterr().out.count(": ok") == len(SHIPPED)


def test_validate_console_script_runs_as_a_process():
    proc = subprocess.run([sys.executable, "-m", "router.cli.main", "validate", str(BROKEN / "02_unknown_policy_key.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "02_unknown_policy_key.yaml:10:3: policy.cost_celing: unknown key" in proc.stderr


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_policy_loads(path: Path):
    policy = load_policy(path)
    assert policy.name == path.stem
    assert policy.policy.cascade


def test_env_substitution_with_and_without_default(monkeypatch: pytest.MonkeyPatch):
    text = """
version: 1
name: ${POLICY_NAME:-fallback}
models:
  m: {provider: llamacpp, gguf: "${GGUF_PATH}", local: true}
policy:
  cascade: [m]
  cost_ceiling: ${CEILING:-0.25}
"""
    monkeypatch.setenv("GGUF_PATH", "/models/x.gguf")
    policy = loads_policy(text, allow_env={"GGUF_PATH"})  # a path that names no file: allowed by the caller
    assert policy.name == "fallback"
    assert policy.models["m"].gguf == "/models/x.gguf"
    assert policy.policy.cost_ceiling == 0.25
    monkeypatch.setenv("POLICY_NAME", "named")
    assert loads_policy(text, allow_env=["GGUF_PATH", "POLICY_NAME"]).name == "named"
    with pytest.raises(PolicyError, match=r"\$\{POLICY_NAME\} is not substituted here"):
        loads_policy(text, allow_env=["GGUF_PATH"])  # a name may be shown or sent: the caller decides
    monkeypatch.delenv("GGUF_PATH")
    with pytest.raises(PolicyError) as info:
        loads_policy(text, "p.yaml", allow_env=["POLICY_NAME"])
    assert info.value.key == "models.m.gguf" and "GGUF_PATH" in str(info.value)


def test_loaded_policy_is_immutable():
    policy = load_policy(ROOT / "policies" / "default.yaml")
    with pytest.raises(ValidationError, match="frozen"):
        policy.name = "x"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        policy.policy.cost_ceiling = 99  # type: ignore[misc]
    with pytest.raises(TypeError):
        policy.models["new"] = policy.models["gpt-4"]  # type: ignore[index]


def test_rules_match_metadata_and_tags_first_match_wins():
    policy = load_policy(ROOT / "policies" / "default.yaml")
    assert effective_settings(policy, metadata={"data_class": "pii"}).settings.privacy is True
    assert effective_settings(policy, metadata={"data_class": "public"}).settings.privacy is False
    eff = effective_settings(policy, tags=["premium"])
    assert eff.settings.quality_tier == "premium" and eff.rule == "premium-tag"
    both = effective_settings(policy, metadata={"data_class": "pii"}, tags=["premium"])
    assert both.rule == "pii-stays-local" and both.settings.quality_tier == "basic"


def test_overrides_apply_and_privacy_cannot_be_relaxed():
    policy = load_policy(ROOT / "policies" / "private.yaml")
    eff = effective_settings(policy, overrides={"cost_ceiling": 0.001, "quality_tier": "standard"})
    assert eff.settings.cost_ceiling == 0.001 and eff.settings.privacy is True
    with pytest.raises(PolicyError, match="privacy"):
        effective_settings(policy, overrides={"privacy": False})
    default = load_policy(ROOT / "policies" / "default.yaml")
    with pytest.raises(PolicyError, match="privacy"):
        effective_settings(default, metadata={"data_class": "pii"}, overrides={"privacy": False})
    offline = load_policy(ROOT / "policies" / "offline.yaml")
    with pytest.raises(PolicyError, match="offline"):
        effective_settings(offline, overrides={"offline": "auto"})


def test_override_typos_are_errors_but_unrelated_configurable_keys_are_ignored():
    assert policy_overrides({"privacy": True, "session_id": "abc"}) == {"privacy": True}
    with pytest.raises(PolicyError) as info:
        policy_overrides({"privcy": True})
    assert info.value.suggestion == "privacy"
    with pytest.raises(PolicyError):
        policy_overrides({"session_id": "abc"}, strict=True)


def test_override_values_are_validated():
    policy = load_policy(ROOT / "policies" / "default.yaml")
    with pytest.raises(PolicyError):
        effective_settings(policy, overrides={"cost_ceiling": -1})
    with pytest.raises(PolicyError) as info:
        effective_settings(policy, overrides={"quality_tier": "premum"})
    assert info.value.suggestion == "premium"


def test_custom_check_by_module_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "mychecks.py").write_text("def shouty(answer, min_caps=1):\n"
                                          "    return sum(c.isupper() for c in answer.text) >= min_caps\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    text = """
version: 1
name: custom
models:
  m: {provider: llamacpp, gguf: bundled:gemma-3-270m, local: true}
policy:
  cascade: [m]
  confidence:
    - check: "mychecks:shouty"
      min_caps: 2
"""
    policy = loads_policy(text, allow_code=True)
    check = policy.policy.confidence[0]
    from router.checks.builtin import Answer

    assert check.run(Answer.from_text("ABc"), None).passed
    assert not check.run(Answer.from_text("Abc"), None).passed
    with pytest.raises(PolicyError, match="cannot import"):
        loads_policy(text.replace("mychecks:shouty", "nosuchmodule:fn"), allow_code=True)
