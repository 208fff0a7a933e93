"""Honest outcomes (issue 25, point 1): an empty answer is never an answer, nor is a cut-off one
preferred as "best"; when nothing passes the request is ``exhausted`` with the best complete,
non-empty answer, else ``failed`` with a RoutingError; a rung lost to configuration (a refused
key) is logged once at WARNING, without the key.

On main before this change, ``on_exhausted: best`` returned gemma's one empty token (status
``exhausted``) for "Write a haiku about autumn", and a wrong key gave ``''`` with nothing logged.
The network rungs here are a loopback OpenAI-protocol server answering each model with a
scripted text and ``finish_reason``; the local rung is the real bundled gemma.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from security.security_servers import FakeOpenAIServer

from router import PolicyRouter, RoutingError, loads_policy

EMPTY_ANSWER = "empty answer: no text and no tool call"  # router.routing.cascade.EMPTY_ANSWER

KEY = "sk-proj-Zz9SECRETwrongKEY0123456789"
POLICY = """\
version: 1
name: honest
models:
  empty: {{provider: openai, model: m-empty, base_url: "{url}", api_key_env: OPENAI_API_KEY, price: {{input: 0, output: 0}}}}
  blank: {{provider: openai, model: m-blank, base_url: "{url}", api_key_env: OPENAI_API_KEY, price: {{input: 0, output: 0}}}}
  cut: {{provider: openai, model: m-cut, base_url: "{url}", api_key_env: OPENAI_API_KEY, price: {{input: 0, output: 0}}}}
  weak: {{provider: openai, model: m-weak, base_url: "{url}", api_key_env: OPENAI_API_KEY, price: {{input: 0, output: 0}}}}
policy:
  max_output_tokens: 16
  cascade: [{cascade}]
  confidence: {checks}
  on_exhausted: {on_exhausted}
"""


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    scripts = {"m-empty": ("", "stop"), "m-blank": (" \n\t ", "stop"), "m-cut": ("Crisp leaves drift and", "length"),
               "m-weak": ("Leaves fall.", "stop")}
    with FakeOpenAIServer(scripts=scripts) as fake:
        yield fake


def make_router(server: FakeOpenAIServer, cascade: str, *, checks: str = "[]",
                on_exhausted: str = "best") -> PolicyRouter:
    return PolicyRouter(policy=loads_policy(POLICY.format(url=server.base_url, cascade=cascade, checks=checks,
                                                          on_exhausted=on_exhausted)))


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
@pytest.mark.parametrize("cascade", ["empty", "blank", "empty, blank", "empty, cut", "cut, blank"])
def test_nothing_complete_and_non_empty_is_failed_never_an_empty_answer(server: FakeOpenAIServer, cascade: str,
                                                                        stream: bool):
    router = make_router(server, cascade)
    with pytest.raises(RoutingError) as raised:
        list(router.stream("q")) if stream else router.invoke("q")
    decision = raised.value.decision
    assert decision.status == "failed" and decision.final_model is None
    assert [a.accepted for a in decision.attempts] == [False] * len(cascade.split(","))
    assert "no complete, non-empty answer" in str(raised.value)


def test_an_empty_answer_fails_the_built_in_complete_check_with_no_check_listed(server: FakeOpenAIServer):
    with pytest.raises(RoutingError) as raised:
        make_router(server, "empty, blank").invoke("q")
    for attempt in raised.value.decision.attempts:
        assert [(c.check, c.passed, c.detail) for c in attempt.checks] == [("complete", False, EMPTY_ANSWER)]
    assert "empty: not accepted: complete: empty answer" in str(raised.value)


def test_an_empty_answer_is_not_accepted_when_every_listed_check_would_pass_it(server: FakeOpenAIServer):
    msg = make_router(server, "empty, weak", checks="[{check: regex, pattern: '.*'}]").invoke("q")
    routing = msg.response_metadata["routing"]
    assert [(a["model"], a["accepted"]) for a in routing["attempts"]] == [("empty", False), ("weak", True)]
    assert routing["status"] == "accepted" and msg.content == "Leaves fall."


@pytest.mark.parametrize("cascade", ["weak, cut", "cut, weak", "empty, weak, cut", "weak, empty"])
def test_exhausted_returns_the_complete_non_empty_answer_over_cut_off_and_empty_ones(server: FakeOpenAIServer,
                                                                                   cascade: str):
    router = make_router(server, cascade, checks="[{check: min_length, chars: 40}]")
    msg = router.invoke("q")
    routing = msg.response_metadata["routing"]
    assert routing["status"] == "exhausted" and routing["final_model"] == "weak"
    assert msg.content == "Leaves fall." and routing["truncated"] is False


def test_a_live_streamed_last_rung_cut_off_ends_failed_not_exhausted(server: FakeOpenAIServer):
    router = make_router(server, "cut")
    chunks = []
    with pytest.raises(RoutingError) as raised:
        chunks.extend(router.stream("q"))
    assert raised.value.decision.status == "failed"
    assert [a.truncated for a in raised.value.decision.attempts] == [True]


def test_under_raise_only_complete_answers_make_it_exhausted(server: FakeOpenAIServer):
    with pytest.raises(RoutingError) as raised:
        make_router(server, "weak", checks="[{check: min_length, chars: 40}]", on_exhausted="raise").invoke("q")
    assert raised.value.decision.status == "exhausted"
    with pytest.raises(RoutingError) as raised:
        make_router(server, "cut, empty", on_exhausted="raise").invoke("q")
    assert raised.value.decision.status == "failed"


def test_the_real_local_model_s_empty_answer_is_not_returned():
    """gemma-270m answers "Write a haiku about autumn" with one empty token (the evidence)."""
    policy = loads_policy("""
version: 1
name: haiku
models:
  gemma: {provider: llamacpp, gguf: "bundled:gemma-3-270m", chat_format: qa, local: true}
policy:
  max_output_tokens: 8
  cascade: [gemma]
""")
    with pytest.raises(RoutingError) as raised:
        PolicyRouter(policy=policy).invoke("Write a haiku about autumn")
    (attempt,) = raised.value.decision.attempts
    assert attempt.output_tokens <= 1 and attempt.checks[0].detail == EMPTY_ANSWER
    assert raised.value.decision.status == "failed"


def test_a_refused_key_names_the_variable_and_endpoint_and_is_logged_once(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeOpenAIServer(echo_key=True) as refusing:
        router = make_router(refusing, "weak")
        endpoint = refusing.base_url.rstrip("/")
        caplog.set_level(logging.WARNING, logger="router")
        for _ in range(3):
            with pytest.raises(RoutingError) as raised:
                router.invoke("q")
    (attempt,) = raised.value.decision.attempts
    assert attempt.error["hint"] == f"401 from {endpoint} (check OPENAI_API_KEY)"
    assert f"weak: auth: 401 from {endpoint} (check OPENAI_API_KEY)" in str(raised.value)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("router")]
    assert len(warnings) == 1 and "OPENAI_API_KEY" in warnings[0].getMessage()
    assert KEY not in caplog.text and KEY[8:24] not in caplog.text and KEY not in str(raised.value)
    # another router is another owner: it warns once more
    with FakeOpenAIServer(echo_key=True) as refusing_again, pytest.raises(RoutingError):
        make_router(refusing_again, "weak").invoke("q")
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_a_missing_gguf_file_is_logged_once(tmp_path, caplog: pytest.LogCaptureFixture):
    policy = loads_policy(f"""
version: 1
name: missing
models:
  gone: {{provider: llamacpp, gguf: "{tmp_path / 'nowhere.gguf'}", chat_format: qa, local: true}}
policy:
  cascade: [gone]
""")
    router = PolicyRouter(policy=policy)
    caplog.set_level(logging.WARNING, logger="router")
    for _ in range(2):
        with pytest.raises(RoutingError, match="no eligible model"):
            router.invoke("q")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "GGUF file not found" in warnings[0] and "'gone'" in warnings[0]


def test_a_refused_gemini_key_names_its_variable_and_endpoint(monkeypatch: pytest.MonkeyPatch):
    from servers.gemini import GeminiTestServer

    with GeminiTestServer(api_key="the-right-key") as gemini:
        monkeypatch.setenv("GOOGLE_API_KEY", KEY)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", gemini.base_url)
        policy = loads_policy("""
version: 1
name: gemini-key
models:
  flash: {provider: google_genai, model: gemini-2.0-flash, price: {input: 0.1, output: 0.4}}
policy:
  max_output_tokens: 8
  cascade: [flash]
""")
        with pytest.raises(RoutingError) as raised:
            PolicyRouter(policy=policy).invoke("q")
        endpoint = gemini.base_url.rstrip("/")
    (attempt,) = raised.value.decision.attempts
    assert attempt.error["hint"] == f"403 from {endpoint} (check GOOGLE_API_KEY)"
    assert KEY not in str(raised.value) and KEY not in raised.value.decision.to_json()


@pytest.mark.parametrize(("base_url", "shown"), [
    ("https://user:pa55word@gw.example:8443/v1/?key=AIzaSECRET#frag", "https://gw.example:8443/v1"),
    ("http://[::1]:8080/v1", "http://[::1]:8080/v1"),
    (None, "https://api.openai.com/v1"),
])
def test_the_endpoint_in_an_auth_hint_holds_no_credential(base_url: str | None, shown: str):
    from router.policy.policy_file import ModelSpec
    from router.providers import get_adapter

    spec = ModelSpec(provider="openai", model="m", base_url=base_url, price={"input": 1, "output": 1})
    assert get_adapter("openai").endpoint(spec) == shown
