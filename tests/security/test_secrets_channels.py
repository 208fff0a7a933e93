"""The next channels a secret could take: the CLI's ``--json``, ``explain()``, the decision
record, warnings, a reload's ``last_error`` and log line. Each gets nothing secret.

Real parts: the CLI's ``main`` in-process, the loopback OpenAI-protocol server quoting the key in
its 401, ``PolicyRouter.from_yaml(reload=True)`` over a real file.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path

import pytest
from security_servers import FakeOpenAIServer

from router import PolicyRouter
from router.cli.main import main

KEY = "sk-proj-Zz9SECRETchannelKEY0123456789"
PASSWORD = "S3cretGatewayPw0rd"
SECRET = "S3cretValueFromEnvZz9"
POLICY = """\
version: 1
name: channels
models:
  gpt:
    provider: openai
    model: {model}
    base_url: "{base_url}"
    tier: standard
    price: {{input: 0.5, output: 1.5}}
    timeout_s: 5
policy:
  cost_ceiling: 0.01
  max_output_tokens: 4
  cascade: [gpt]
  on_exhausted: raise
"""


def secret_free(text: str) -> None:
    for secret in (KEY, PASSWORD, SECRET):
        assert secret not in text and secret[8:20] not in text


@pytest.fixture
def policy_file(tmp_path: Path, openai_fake: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("SOME_SECRET", SECRET)
    openai_fake.echo_key = True
    path = tmp_path / "channels.yaml"
    path.write_text(POLICY.format(model="gpt-3.5-turbo",
                                  base_url=openai_fake.base_url.replace("http://", f"http://u:{PASSWORD}@")))
    return path


@pytest.mark.parametrize("command", ["ask", "explain"])
def test_cli_json_and_errors_hold_no_secret(policy_file: Path, command: str, capsys: pytest.CaptureFixture[str],
                                           caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main([command, "What is the capital of France?", "--policy", str(policy_file), "--json"])
    out = capsys.readouterr()
    assert code in (0, 1, 2)
    secret_free(out.out + out.err + caplog.text + "\n".join(str(w.message) for w in caught))
    if command == "ask":
        assert "auth" in out.out + out.err  # the failure is reported, scrubbed


def test_explain_and_the_record_hold_no_url_password(policy_file: Path):
    router = PolicyRouter.from_yaml(policy_file)
    decision = router.explain("q")
    secret_free(decision.to_json() + decision.summary() + repr(decision))


def test_a_reload_that_puts_a_secret_in_model_keeps_it_out_of_last_error_and_the_log(
        policy_file: Path, openai_fake: FakeOpenAIServer, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    router = PolicyRouter.from_yaml(policy_file, reload=True)
    policy_file.write_text(POLICY.format(model="${SOME_SECRET}", base_url=openai_fake.base_url))
    later = time.time() + 5
    os.utime(policy_file, (later, later))
    with pytest.raises(Exception):  # noqa: B017 (the old policy still answers: a 401 here)
        router.invoke("hi")
    watcher_error = router._watcher.last_error
    assert watcher_error is not None and "${SOME_SECRET}" in str(watcher_error)
    secret_free(str(watcher_error) + repr(watcher_error) + caplog.text)
    assert all(SECRET.encode() not in r.body for r in openai_fake.requests)
