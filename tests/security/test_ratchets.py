"""Privacy and offline only ratchet on, whatever value an override channel carries.

Every JSON/YAML scalar (and spellings of "off": ``"false"``, ``0``, ``"no"``, ``"off"``, ``"0"``,
``0.0``...) is thrown at every channel — ``configurable``, ``router ask --set`` and a rule's
``set:`` — under a policy whose file or matching rule turned privacy or offline on. The cascade
holds only network models, pointed at loopback servers that count requests: any value that
turned the floor off would make a request reach them. On main before the strict ratchets,
``{"privacy": "false"}``, ``--set privacy=0`` and ``set: {privacy: 0}`` each reached them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from security_servers import FakeOpenAIServer
from servers.gemini import GeminiTestServer

from router import PolicyError, PolicyRouter, RoutingError, loads_policy
from router.cli.main import main

POLICY = """
version: 1
name: ratchet
models:
  gemini-flash: {{provider: google_genai, model: gemini-2.0-flash, tier: standard, price: {{input: 0.1, output: 0.4}}, timeout_s: 5}}
  gpt: {{provider: openai, model: gpt-3.5-turbo, tier: standard, price: {{input: 0.5, output: 1.5}}, timeout_s: 5}}
policy:
  privacy: {privacy}
  offline: {offline}
  cost_ceiling: 0.01
  max_output_tokens: 4
  cascade: [gemini-flash, gpt]
rules:
  - when: {{metadata: {{data_class: pii}}}}
    set: {{privacy: true}}
  - when: {{tags: [airgap]}}
    set: {{offline: true}}
{extra_rule}"""

# (file privacy, file offline, config that matches a rule): four ways a floor is set.
FLOORS = {
    "file-privacy": ("true", "auto", {}),
    "file-offline": ("false", "true", {}),
    "rule-privacy": ("false", "auto", {"metadata": {"data_class": "pii"}}),
    "rule-offline": ("false", "auto", {"tags": ["airgap"]}),
}
OFF_WORDS = ["false", "False", "FALSE", "0", "0.0", "-0", "no", "No", "NO", "n", "N", "off", "Off", "OFF", "",
             " ", "null", "~", "None", "none", "auto", "true", "yes", "on", "1", "f", "disabled", "[]", "{}"]
YAML_WORDS = [*OFF_WORDS, '"false"', "'0'", "!!bool false", "!!str false", "!!int 0", "!!float 0", "!!null",
              "0x0", "0o0", ".0", "0e0", ".nan", "-.inf", "[false]", "{a: false}", "*x", "&x false",
              "!env FALSE", "!!python/object:builtins.bool false", "!!binary AA==", "2026-01-01"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12), st.sampled_from(OFF_WORDS))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=2), st.dictionaries(st.text(max_size=3), SCALARS, max_size=2))
YAML_TEXT = st.one_of(st.sampled_from(YAML_WORDS), SCALARS.map(lambda v: json.dumps(v) if not
                                                                   (isinstance(v, float) and not math.isfinite(v))
                                                                   else str(v)), st.text(max_size=12))
KEYS = st.sampled_from(["privacy", "offline"])
PROPERTY = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def policy_text(floor: str, extra_rule: str = "") -> str:
    privacy, offline, _ = FLOORS[floor]
    return POLICY.format(privacy=privacy, offline=offline, extra_rule=extra_rule)


@pytest.fixture
def routers(network_env: None) -> dict[str, PolicyRouter]:
    return {floor: PolicyRouter(policy=loads_policy(policy_text(floor), f"{floor}.yaml")) for floor in FLOORS}


def outcome(router: PolicyRouter, config: dict[str, Any]) -> str:
    try:
        router.invoke("What is the capital of France?", config=config)
    except PolicyError:
        return "refused"
    except RoutingError as err:
        assert err.decision.attempts == [] and err.decision.effective["privacy"] | (
            err.decision.effective["offline"] is True)
        return "no local model"
    return "answered"


def assert_nothing_sent(gemini: GeminiTestServer, openai_fake: FakeOpenAIServer) -> None:
    assert (gemini.count(), openai_fake.count()) == (0, 0)


def test_control_the_servers_answer_a_request_that_is_not_private(network_env: None, gemini: GeminiTestServer,
                                                                  openai_fake: FakeOpenAIServer):
    router = PolicyRouter(policy=loads_policy(policy_text("rule-privacy"), "control.yaml"))
    message = router.invoke("What is the capital of France?", config={"configurable": {"privacy": False}})
    assert message.response_metadata["routing"]["final_model"] == "gemini-flash"
    assert gemini.count() == 1


@pytest.mark.parametrize("value", ["false", 0, "no", "off", "0", 0.0, "False", "", None, [], "auto"])
@pytest.mark.parametrize("floor", list(FLOORS))
def test_configurable_coercions_are_refused(routers: dict[str, PolicyRouter], floor: str, value: Any,
                                            gemini: GeminiTestServer, openai_fake: FakeOpenAIServer):
    key = "offline" if floor.endswith("offline") else "privacy"
    config = {**FLOORS[floor][2], "configurable": {key: value}}
    with pytest.raises(PolicyError) as info:
        routers[floor].invoke("What is the capital of France?", config=config)
    assert info.value.key == key and info.value.file == "<configurable>"
    assert_nothing_sent(gemini, openai_fake)


@pytest.mark.parametrize("text", ["false", "0", "no", "off", "0.0", "False", "n", ""])
def test_cli_set_coercions_are_refused(tmp_path: Path, network_env: None, text: str, capsys: pytest.CaptureFixture[str],
                                       gemini: GeminiTestServer, openai_fake: FakeOpenAIServer):
    path = tmp_path / "private.yaml"
    path.write_text(policy_text("file-privacy"))
    assert main(["ask", "What is the capital of France?", "--policy", str(path), "--set", f"privacy={text}"]) == 1
    assert "--set" in capsys.readouterr().err
    assert_nothing_sent(gemini, openai_fake)


@pytest.mark.parametrize("text", ["0", "no", "off", "'false'", "0.0", "~", "!!bool false"])
def test_rules_that_relax_privacy_are_located_errors(text: str):
    rule = f"  - when: {{tags: [relax]}}\n    set: {{privacy: {text}}}\n"
    with pytest.raises(PolicyError) as info:
        loads_policy(policy_text("file-privacy", rule), "relax.yaml")
    issue = info.value.issues[0]
    assert (issue.line, issue.key) == (len(policy_text("file-privacy").splitlines()) + 2, "rules.2.set.privacy")


@PROPERTY
@given(floor=st.sampled_from(list(FLOORS)), key=KEYS, value=VALUES)
def test_property_configurable_never_reaches_a_network_model(routers: dict[str, PolicyRouter], floor: str, key: str,
                                                            value: Any, gemini: GeminiTestServer,
                                                            openai_fake: FakeOpenAIServer):
    result = outcome(routers[floor], {**FLOORS[floor][2], "configurable": {key: value}})
    assert result in ("refused", "no local model")
    assert_nothing_sent(gemini, openai_fake)


@PROPERTY
@given(floor=st.sampled_from(["file-privacy", "file-offline"]), key=KEYS, text=YAML_TEXT)
def test_property_cli_set_never_reaches_a_network_model(tmp_path_factory: pytest.TempPathFactory, network_env: None,
                                                        floor: str, key: str, text: str, gemini: GeminiTestServer,
                                                        openai_fake: FakeOpenAIServer):
    path = tmp_path_factory.mktemp("p") / "policy.yaml"
    path.write_text(policy_text(floor))
    assert main(["explain", "q", "--policy", str(path), "--set", f"{key}={text}"]) in (0, 1)
    assert main(["ask", "q", "--policy", str(path), "--set", f"{key}={text}"]) in (1, 2)
    assert_nothing_sent(gemini, openai_fake)


@PROPERTY
@given(floor=st.sampled_from(list(FLOORS)), key=KEYS, text=YAML_TEXT)
def test_property_rules_never_reach_a_network_model(network_env: None, floor: str, key: str, text: str,
                                                    gemini: GeminiTestServer, openai_fake: FakeOpenAIServer):
    # A later rule that matches the same request cannot turn the floor off: first match wins
    # for rules, so this rule is put first and matches every request of the floor.
    privacy, offline, config = FLOORS[floor]
    when = json.dumps({k: v for k, v in config.items() if k in ("metadata", "tags")})
    rule = f"  - when: {when}\n    set: {{{key}: {text}}}\n"
    text_ = POLICY.format(privacy=privacy, offline=offline, extra_rule="").replace("rules:\n", f"rules:\n{rule}", 1)
    try:
        router = PolicyRouter(policy=loads_policy(text_, "rule.yaml"))
    except PolicyError as err:
        assert all(issue.line > 0 for issue in err.issues)
        return
    if floor.startswith("rule"):
        # The attacking rule replaced the floor's rule; the floor is then set per call.
        floor_key = floor.split("-")[1]
        assert outcome(router, {**config, "configurable": {floor_key: True}}) in ("refused", "no local model")
    else:
        assert outcome(router, config) in ("refused", "no local model")
    assert_nothing_sent(gemini, openai_fake)
