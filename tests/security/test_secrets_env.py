"""A policy file cannot choose which environment variable's value is sent anywhere.

Credentials come from the provider's conventional variable, sent to the provider's own endpoint
(or a loopback one); ``${VAR}`` is substituted freely only into numbers, flags and local file
paths that exist. Anything else needs the caller's ``allow_env`` (in code, or ``--allow-env``).

On main before this change, ``api_key_env: GITHUB_TOKEN`` with ``base_url: http://<host>`` and
``model: ${AWS_SECRET_ACCESS_KEY}`` passed ``validate``, and ``ask`` sent both values to the host.
The loopback server here plays that host and records what it receives.
"""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from security_servers import FakeOpenAIServer

from router import PolicyError, PolicyRouter, loads_policy
from router.cli.main import main

GITHUB_TOKEN = "ghp_Zz9SECRETgithubTOKEN0123456789abcd"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"

POLICY = """\
version: 1
name: exfil
models:
  gpt:
    provider: openai
    model: {model}
    tier: standard
    price: {{input: 0.5, output: 1.5}}
    timeout_s: 5
{extra}policy:
  cost_ceiling: 0.01
  max_output_tokens: 4
  cascade: [gpt]
  on_exhausted: raise
"""
PROPERTY = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch, network_env: None) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", GITHUB_TOKEN)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)


def text(model: str = "gpt-3.5-turbo", **fields: str) -> str:
    return POLICY.format(model=model, extra="".join(f"    {k}: {v}\n" for k, v in fields.items()))


def refused(policy: str, key: str, *secrets: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        loads_policy(policy, "exfil.yaml")
    err = info.value
    assert key in [i.key for i in err.issues] and all(i.line > 0 for i in err.issues)
    for secret in secrets:
        assert secret not in str(err) and secret[:12] not in str(err)
    return err


def test_api_key_env_naming_another_variable_is_a_located_error_with_a_hint(secrets_env: None):
    err = refused(text(api_key_env="GITHUB_TOKEN"), "models.gpt.api_key_env", GITHUB_TOKEN)
    assert "allow_env={'GITHUB_TOKEN'}" in str(err) and "--allow-env GITHUB_TOKEN" in str(err)
    issue = next(i for i in err.issues if i.key == "models.gpt.api_key_env")
    assert (issue.line, issue.column) == (10, 18)


@pytest.mark.parametrize("name", ["OPENAI_API_KEY"])
def test_the_conventional_variable_needs_no_permission(secrets_env: None, name: str):
    assert loads_policy(text(api_key_env=name)).models["gpt"].api_key_env == name


def test_googles_two_conventional_variables_are_both_accepted():
    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY"):
        policy = loads_policy(text(api_key_env=name).replace("provider: openai", "provider: google_genai"))
        assert policy.models["gpt"].api_key_env == name
    # ...but not another provider's: the OpenAI key is not sent to Google, nor the reverse.
    refused(text(api_key_env="GOOGLE_API_KEY"), "models.gpt.api_key_env")


def test_a_key_is_not_sent_to_a_host_the_file_names(secrets_env: None):
    err = refused(text(base_url="https://collector.example/v1"), "models.gpt.base_url")
    assert "OPENAI_API_KEY" in str(err)
    assert loads_policy(text(base_url="https://collector.example/v1"), allow_env=["OPENAI_API_KEY"])
    assert loads_policy(text(base_url="http://127.0.0.1:9/v1"))  # this machine: fine


@pytest.mark.parametrize(("field", "value"), [
    ("model", "${AWS_SECRET_ACCESS_KEY}"), ("model", "gpt-${GITHUB_TOKEN}"),
    ("base_url", "http://127.0.0.1:9/${GITHUB_TOKEN}"), ("base_url", "${AWS_SECRET_ACCESS_KEY}"),
    ("tier", "${GITHUB_TOKEN}"), ("name", "${GITHUB_TOKEN}"), ("ledger", "redis://u:${GITHUB_TOKEN}@127.0.0.1/0"),
    ("dataset", "${AWS_SECRET_ACCESS_KEY}"), ("gguf", "${GITHUB_TOKEN}"),
])
def test_a_set_variable_is_not_substituted_where_it_travels_or_shows(secrets_env: None, field: str, value: str):
    if field == "model":
        policy, key = text(model=value), "models.gpt.model"
    elif field == "tier":
        policy, key = text().replace("tier: standard", f'tier: "{value}"'), "models.gpt.tier"
    elif field in ("name", "ledger"):
        policy = text().replace("name: exfil\n", f"name: exfil\n{field}: \"{value}\"\n" if field == "ledger"
                                else f"name: \"{value}\"\n")
        key = field
    else:
        policy, key = text(**{field: f'"{value}"'}), f"models.gpt.{field}"
        if field in ("dataset", "gguf"):
            policy = policy.replace("provider: openai", "provider: recorded" if field == "dataset"
                                    else "provider: llamacpp").replace("    timeout_s: 5\n", "    local: true\n")
    err = refused(policy, key, GITHUB_TOKEN, AWS_SECRET)
    assert "allow_env" in str(err)


def test_allowed_variables_are_substituted(secrets_env: None, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MY_MODEL", "gpt-4o-mini")
    policy = loads_policy(text(model="${MY_MODEL}"), allow_env={"MY_MODEL"})
    assert policy.models["gpt"].model == "gpt-4o-mini"
    assert PolicyRouter.from_string(text(model="${MY_MODEL}"), allow_env=["MY_MODEL"]).policy.models["gpt"].model \
        == "gpt-4o-mini"


def test_numbers_flags_defaults_and_existing_files_need_no_permission(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setenv("CEILING", "0.02")
    monkeypatch.setenv("MY_GGUF", str(gguf))
    monkeypatch.delenv("UNSET_NAME", raising=False)
    policy = loads_policy(text().replace("cost_ceiling: 0.01", "cost_ceiling: ${CEILING}")
                          .replace("name: exfil", "name: ${UNSET_NAME:-exfil}")
                          .replace("  gpt:\n", "  local:\n    provider: llamacpp\n    gguf: ${MY_GGUF}\n"
                                   "    local: true\n  gpt:\n"))
    assert (policy.policy.cost_ceiling, policy.name, policy.models["local"].gguf) == (0.02, "exfil", str(gguf))


def test_from_yaml_and_the_cli_take_allow_env(tmp_path: Path, secrets_env: None, openai_fake: FakeOpenAIServer,
                                              capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "p.yaml"
    path.write_text(text(api_key_env="GITHUB_TOKEN", base_url=openai_fake.base_url))
    with pytest.raises(PolicyError):
        PolicyRouter.from_yaml(path)
    assert PolicyRouter.from_yaml(path, allow_env=["GITHUB_TOKEN"]).policy.models["gpt"].api_key_env == "GITHUB_TOKEN"
    assert PolicyRouter.from_yaml(path, reload=True, allow_env=["GITHUB_TOKEN"]).policy
    assert main(["validate", str(path)]) == 1
    assert "--allow-env GITHUB_TOKEN" in capsys.readouterr().err
    assert main(["validate", str(path), "--allow-env", "GITHUB_TOKEN"]) == 0
    assert main(["ask", "q", "--policy", str(path)]) == 1
    assert openai_fake.count() == 0
    assert main(["ask", "q", "--policy", str(path), "--allow-env", "GITHUB_TOKEN"]) == 0
    assert openai_fake.requests[0].headers["authorization"] == f"Bearer {GITHUB_TOKEN}"  # allowed: sent


NAMES = st.text(string.ascii_uppercase + "_", min_size=1, max_size=12).filter(
    lambda n: n not in ("OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY", "ANTHROPIC_API_KEY"))
VALUES = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="\"\\'{}$"),
                 min_size=8, max_size=40).map(lambda v: "S3cr!" + v)  # not a name, nor fixed text
FIELDS = st.sampled_from(["model", "base_url", "api_key_env", "description"])


@PROPERTY
@given(name=NAMES, secret=VALUES, field=FIELDS)
def test_property_no_file_sends_an_unallowed_variable(monkeypatch: pytest.MonkeyPatch, openai_fake: FakeOpenAIServer,
                                                      name: str, secret: str, field: str):
    """Whatever variable a file names, wherever it puts it: either the load is refused without
    showing the value, or nothing with the value reaches the server."""
    openai_fake.reset()
    monkeypatch.setenv(name, secret)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-conventional-key-0000")
    ref = name if field == "api_key_env" else f'"${{{name}}}"'
    extra = {"base_url": f'"{openai_fake.base_url}"'} if field != "base_url" else {}
    if field == "description":
        policy = text(**extra).replace("name: exfil\n", f"name: exfil\ndescription: {ref}\n")
    elif field == "model":
        policy = text(model=ref, **extra)
    else:
        policy = text(**{field: ref, **extra})
    try:
        router = PolicyRouter(policy=loads_policy(policy, "p.yaml"))
    except PolicyError as err:
        assert secret not in str(err)
        return
    try:
        router.invoke("hi")
    except Exception as err:
        assert secret not in str(err)
    assert all(secret.encode() not in r.body and secret not in str(r.headers) and secret not in r.path
               for r in openai_fake.requests)


def test_router_spend_takes_allow_env_for_a_ledger_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("LEDGER_DB", str(tmp_path / "ledger.db"))
    path = tmp_path / "p.yaml"
    path.write_text(text().replace("name: exfil\n", 'name: exfil\nledger: "sqlite:///${LEDGER_DB}"\n'))
    assert main(["spend", "--policy", str(path)]) == 1
    assert "--allow-env LEDGER_DB" in capsys.readouterr().err
    assert main(["spend", "--policy", str(path), "--allow-env", "LEDGER_DB"]) == 0
