"""Secrets are never shown: not in policy errors, not in a formatted traceback, a repr, the
record or the logs — even when a server echoes the key back.

On main before this change, ``api_key_env: ${OPENAI_API_KEY}`` printed the key's value in the
error, and ``traceback.format_exception`` of a RoutingError showed the raw client exception
(chained twice) with the key a gateway quoted.
"""

from __future__ import annotations

import json
import logging
import traceback

import pytest
from conftest import OPENAI_KEY
from security_servers import FakeOpenAIServer

from router import PolicyError, PolicyRouter, ProviderError, RoutingError, loads_policy

POLICY = """\
version: 1
name: secrets
models:
  gpt:
    provider: openai
    model: gpt-3.5-turbo
    tier: standard
    price: {{input: 0.5, output: 1.5}}
    {extra}
policy:
  cost_ceiling: 0.01
  max_output_tokens: 4
  cascade: [gpt]
  on_exhausted: raise
"""


def everything(err: BaseException) -> str:
    """Every way an error gets shown."""
    shown = ["".join(traceback.format_exception(err)), repr(err), str(err)]
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        shown += [repr(current), str(current), repr(current.__dict__)]
        current = current.__cause__ or current.__context__
    return "\n".join(shown)


def assert_no_key(text: str, key: str = OPENAI_KEY) -> None:
    assert key not in text
    assert key[8:24] not in text  # nor a recognisable part of it


def test_api_key_env_given_the_key_through_a_variable_is_refused_without_showing_it(
        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    with pytest.raises(PolicyError) as info:
        loads_policy(POLICY.format(extra="api_key_env: ${OPENAI_API_KEY}"), "mistake.yaml")
    assert info.value.key == "models.gpt.api_key_env" and info.value.line == 9
    assert "api_key_env: OPENAI_API_KEY" in str(info.value)  # says what to write instead
    assert_no_key(everything(info.value))
    assert_no_key(json.dumps([issue.__dict__ for issue in info.value.issues]))


@pytest.mark.parametrize("value", ["sk-proj-Zz9SECRETopenaiKEY0123456789", "AIzaSyD-SECRETgeminiKEY-0123456789",
                                   "Zz9SECRETopenaiKEY0123456789abcdef"])
def test_api_key_env_that_looks_like_a_key_is_refused_without_echoing_it(value: str):
    with pytest.raises(PolicyError) as info:
        loads_policy(POLICY.format(extra=f"api_key_env: {value}"), "mistake.yaml")
    assert info.value.key == "models.gpt.api_key_env" and "looks like a key" in str(info.value)
    assert_no_key(everything(info.value), value)


def test_any_value_from_a_variable_is_shown_as_the_variable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    text = POLICY.format(extra="timeout_s: ${OPENAI_API_KEY}").replace("tier: standard", "tier: ${OPENAI_API_KEY}")
    with pytest.raises(PolicyError) as info:
        loads_policy(text, "mistake.yaml")
    assert "${OPENAI_API_KEY}" in str(info.value)
    assert_no_key(everything(info.value))


def test_a_key_echoed_by_the_server_is_in_no_formatted_exception_record_or_log(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, openai_fake: FakeOpenAIServer):
    openai_fake.echo_key = True
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    caplog.set_level(logging.DEBUG)
    router = PolicyRouter(policy=loads_policy(POLICY.format(extra=f"base_url: {openai_fake.base_url}"), "echo.yaml"))
    with pytest.raises(RoutingError) as info:
        router.invoke("hi")
    # The server did receive the key, and quoted it back.
    assert openai_fake.requests[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    err = info.value
    [attempt] = err.decision.attempts
    assert attempt.error["kind"] == "auth" and attempt.error["status_code"] == 401
    assert err.__cause__ is None and err.__context__ is None
    assert_no_key(everything(err))
    assert_no_key(err.decision.to_json())
    assert_no_key(err.decision.summary())
    assert_no_key(caplog.text)


def test_provider_errors_never_chain_the_client_exception():
    client = ValueError(f"upstream said: Bearer {OPENAI_KEY}")
    error = ProviderError("auth failed", provider="openai", model="gpt-4", kind="auth")
    error.__cause__ = client
    assert error.__cause__ is None and error.client_exception == "builtins.ValueError"
    try:
        try:
            raise client
        except ValueError:
            raise RoutingError("no answer", decision=None) from error  # type: ignore[arg-type]
    except RoutingError as routing:
        assert_no_key(everything(routing))
