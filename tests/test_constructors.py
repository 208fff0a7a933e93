"""Where a policy comes from: packaged names, paths, mappings and YAML text, each validated with
its origin; the default policy outside the repository; ``router init`` and ``router schema``."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from router import PolicyError, PolicyRouter
from router.cli.main import main as cli_main
from router.policy.policy_file import PolicySettings, load_policy
from router.policy.schema import policy_json_schema
from router.policy.sources import (
    PACKAGE,
    default_policy_source,
    packaged_policies,
    policy_from_dict,
    resolve_policy,
)

POLICIES = Path(__file__).resolve().parent.parent / "policies"
SHIPPED = sorted(POLICIES.glob("*.yaml"))
BROKEN = Path(__file__).parent / "broken_policies"


def small_policy(**settings: Any) -> dict[str, Any]:
    return {"version": 1, "name": "small",
            "models": {"gemma": {"provider": "llamacpp", "gguf": "bundled:gemma-3-270m", "chat_format": "qa",
                                 "local": True}},
            "policy": {"cascade": ["gemma"], **settings}}


# --------------------------------------------------------------------------- packaged names


def test_every_shipped_policy_is_packaged_from_the_policies_folder():
    assert packaged_policies() == sorted(p.stem for p in SHIPPED)
    shipped = resources.files(PACKAGE)
    for path in SHIPPED:
        assert (shipped / path.name).read_text(encoding="utf-8") == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["default", "offline", "offline.yaml", "private"])
def test_from_policy_resolves_a_packaged_name_from_any_directory(name: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    router = PolicyRouter.from_policy(name)
    assert router.policy.name == name.removesuffix(".yaml")
    assert Path(router.policy.source).name == f"{router.policy.name}.yaml"


def test_an_existing_file_wins_over_a_packaged_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    Path("offline").write_text(yaml.safe_dump(small_policy()), encoding="utf-8")
    assert PolicyRouter.from_policy("offline").policy.name == "small"


def test_an_unknown_name_is_a_policy_error_with_a_suggestion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PolicyError) as err:
        PolicyRouter.from_policy("defualt")
    assert err.value.suggestion == "default"
    assert "packaged: " in str(err.value) and "offline" in str(err.value)


def test_default_policy_outside_the_repository_is_the_packaged_default(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert default_policy_source() == "default"
    assert PolicyRouter.from_yaml().policy.name == "default"
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "default.yaml").write_text(yaml.safe_dump(small_policy()), encoding="utf-8")
    assert PolicyRouter.from_yaml().policy.name == "small"  # policies/default.yaml here wins
    monkeypatch.setenv("ROUTER_POLICY", "private")
    assert PolicyRouter.from_yaml().policy.name == "private"  # and $ROUTER_POLICY over both


def test_cli_policy_takes_a_packaged_name_outside_the_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]):
    monkeypatch.chdir(tmp_path)
    assert cli_main(["explain", "What is 2+2?", "--policy", "offline", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["policy"] == "offline" and record["candidates"] == ["gemma-270m", "smollm2-135m"]
    assert cli_main(["validate", "default", "budget"]) == 0
    assert cli_main(["explain", "x", "--policy", "no-such-policy"]) == 1
    assert "no packaged policy of that name" in capsys.readouterr().err


# --------------------------------------------------------------------------- mappings and text


def test_from_dict_builds_a_working_router():
    router = PolicyRouter.from_dict(small_policy(cost_ceiling=0.01))
    assert router.policy.source == "<dict>"
    assert router.explain("What is 2+2?").candidates == ["gemma"]


def test_from_dict_errors_name_dict_and_the_key_path_not_a_made_up_line():
    data = small_policy(cascade=["gemma", "gpt-5"], cost_celing=1)
    with pytest.raises(PolicyError) as err:
        PolicyRouter.from_dict(data)
    issues = {i.key: i for i in err.value.issues}
    # every problem in one run (issue 25), the unknown key before the cross-references
    assert list(issues) == ["policy.cost_celing", "policy.cascade.1"]
    issue = issues["policy.cost_celing"]
    assert (issue.file, issue.line, issue.column, issue.suggestion) == ("<dict>", 0, 0, "cost_ceiling")
    assert str(issue) == "<dict>: policy.cost_celing: unknown key 'cost_celing' (did you mean 'cost_ceiling'?)"
    with pytest.raises(PolicyError, match=r"^<dict>: policy\.cascade\.1: 'gpt-5' is not in models:"):
        PolicyRouter.from_dict(small_policy(cascade=["gemma", "gpt-5"]))


def test_policy_router_given_a_dict_validates_it_like_a_file():
    with pytest.raises(PolicyError) as err:
        PolicyRouter(policy=small_policy(quality_tier="platinum"))
    assert err.value.key == "policy.quality_tier" and err.value.file == "<dict>"
    router = PolicyRouter(policy=small_policy())
    assert router.policy.source == "<dict>"
    assert router.explain("hi").policy == "small"


def test_from_dict_rejects_a_non_mapping():
    with pytest.raises(PolicyError, match="must be a mapping"):
        policy_from_dict(["not", "a", "policy"])  # type: ignore[arg-type]


def test_from_string_errors_have_line_and_column():
    text = yaml.safe_dump(small_policy(), sort_keys=False).replace("cascade:", "cascdae:")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "cascdae" in row)
    with pytest.raises(PolicyError) as err:
        PolicyRouter.from_string(text)
    unknown = next(i for i in err.value.issues if i.key == "policy.cascdae")
    assert (unknown.file, unknown.line, unknown.column, unknown.suggestion) == ("<string>", line, 3, "cascade")
    with pytest.raises(PolicyError) as err:
        PolicyRouter.from_string(text, "team-policy")
    assert err.value.file == "team-policy"


def test_from_string_passes_load_options_through():
    text = yaml.safe_dump(small_policy()).replace("bundled:gemma-3-270m", "${GEMMA}")
    router = PolicyRouter.from_string(text, environ={"GEMMA": "bundled:gemma-3-270m"})
    assert router.policy.models["gemma"].gguf == "bundled:gemma-3-270m"
    with pytest.raises(PolicyError, match="GEMMA is not set"):
        PolicyRouter.from_string(text, environ={})


def test_resolve_policy_accepts_every_source_kind():
    policy = load_policy(POLICIES / "offline.yaml")
    assert resolve_policy(policy) is policy
    assert resolve_policy(POLICIES / "offline.yaml").name == "offline"
    assert resolve_policy(str(POLICIES / "budget.yaml")).name == "budget"
    assert resolve_policy(small_policy()).name == "small"


# --------------------------------------------------------------------------- router init


def test_init_writes_a_valid_starter_policy_and_never_overwrites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]):
    monkeypatch.chdir(tmp_path)
    assert cli_main(["init"]) == 0
    written = tmp_path / "policy.yaml"
    assert written.read_text() == (POLICIES / "default.yaml").read_text()
    assert load_policy(written).name == "default"
    written.write_text("# mine\n")
    assert cli_main(["init"]) == 1
    assert "exists" in capsys.readouterr().err
    assert written.read_text() == "# mine\n"
    assert cli_main(["init", "--force", "--from", "offline", "--name", "team: a"]) == 0
    policy = load_policy(written)
    assert (policy.name, policy.policy.offline) == ("team: a", True)
    assert cli_main(["init", "sub/dir/p.yaml", "--from", "private"]) == 0
    assert load_policy(tmp_path / "sub/dir/p.yaml").policy.privacy is True


def test_init_lists_and_rejects_unknown_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]):
    monkeypatch.chdir(tmp_path)
    assert cli_main(["init", "--list"]) == 0
    assert capsys.readouterr().out.split() == packaged_policies()
    assert cli_main(["init", "--from", "nope"]) == 1
    assert not (tmp_path / "policy.yaml").exists()


# --------------------------------------------------------------------------- router schema


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = policy_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_command_prints_the_generated_schema(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    assert cli_main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == policy_json_schema()
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert cli_main(["schema", "--out", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text()) == printed


def test_schema_is_generated_from_the_models():
    defs = policy_json_schema()["$defs"]
    assert set(defs["PolicySettings"]["properties"]) == set(PolicySettings.model_fields)
    assert set(defs["PolicyOverride"]["properties"]) == set(PolicySettings.model_fields)
    assert "required" not in defs["PolicyOverride"]
    assert defs["LogprobCheck"]["properties"]["check"] == {"const": "logprob"}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_policy_satisfies_the_schema(path: Path, validator: jsonschema.Draft202012Validator):
    assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == []


STRUCTURAL = ["01_unknown_top_key", "02_unknown_policy_key", "04_negative_price", "07_bad_provider",
              "08_unknown_check", "09_bad_check_param", "11_wrong_version", "12_ceiling_not_number",
              "14_rule_unknown_field", "20_bad_on_exhausted", "22_network_model_without_price"]


@pytest.mark.parametrize("name", STRUCTURAL)
def test_schema_rejects_structurally_broken_files(name: str, validator: jsonschema.Draft202012Validator):
    data = yaml.safe_load((BROKEN / f"{name}.yaml").read_text())
    assert list(validator.iter_errors(data)), f"{name} passed the schema"


def test_schema_checks_check_parameters_and_custom_check_names(validator: jsonschema.Draft202012Validator):
    def errors(confidence: list[Any]) -> int:
        return len(list(validator.iter_errors(small_policy(confidence=confidence))))

    assert errors([{"check": "logprob", "min_mean": -1.5}, {"check": "refusal"}]) == 0
    assert errors([{"check": "mypkg.checks:is_polite", "anything": 1}]) == 0
    assert errors([{"check": "logprob", "min_mean": "low"}]) == 1
    assert errors([{"check": "regex"}]) == 1  # pattern is required
    assert errors([{"check": "not a check"}]) == 1
