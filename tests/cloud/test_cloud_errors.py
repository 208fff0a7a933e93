"""Provider failures over the real clients: 429 (with Retry-After), 5xx, a hung server (timeout),
a malformed reply, a dropped connection and a refused one become typed ``ProviderError`` records;
the cascade escalates within the policy, or ends with ``RoutingError`` carrying the record."""

from __future__ import annotations

import asyncio

import pytest
from servers.gemini import GeminiTestServer
from servers.openai_llama import LlamaOpenAIServer, free_port

from router import PolicyRouter, RoutingError, loads_policy
from router.errors import ProviderError

QUESTION = "What is the capital of France?"
EXPECTED = {  # server fault -> (kind, status_code)
    "rate_limit": ("rate_limit", 429),
    "server": ("server", 500),
    "unavailable": ("server", 503),
    "hang": ("timeout", None),
    "malformed": ("malformed", None),
    "disconnect": ("connection", None),
    "refused": ("connection", None),
}


def two_rung_router(failing: str, *, refused_url: str | None = None, retries: int = 0,
                    on_exhausted: str = "raise", timeout_s: float = 0.5) -> PolicyRouter:
    """``failing`` (openai or gemini) first, then a Gemini model that answers."""
    first = "gpt-3.5-turbo" if failing == "openai" else "gemini-flash"
    url = f"\n    base_url: {refused_url}" if refused_url else ""
    text = f"""
version: 1
name: failover
models:
  gpt-3.5-turbo:
    provider: openai
    model: gpt-3.5-turbo
    tier: standard
    price: {{input: 0.5, output: 1.5}}
    timeout_s: {timeout_s}
    max_retries: {retries}{url if failing == "openai" else ""}
  gemini-flash:
    provider: google_genai
    model: gemini-2.0-flash
    tier: standard
    price: {{input: 0.1, output: 0.4}}
    timeout_s: 0.5
    max_retries: {retries}{url if failing == "gemini" else ""}
  gpt-4:
    provider: openai
    model: gpt-4
    tier: premium
    price: {{input: 3000, output: 6000}}
  gemini-pro:
    provider: google_genai
    model: gemini-2.5-pro
    tier: premium
    price: {{input: 1.25, output: 10.0}}
policy:
  cost_ceiling: 0.01
  max_output_tokens: 16
  cascade: [{first}, gpt-4, gemini-pro]
  on_exhausted: {on_exhausted}
"""
    return PolicyRouter(policy=loads_policy(text, "failover.yaml"))


def inject(mode: str, failing: str, openai: LlamaOpenAIServer, gemini: GeminiTestServer) -> str | None:
    if mode == "refused":
        return f"http://127.0.0.1:{free_port()}" + ("/v1" if failing == "openai" else "")
    (openai if failing == "openai" else gemini).fail(mode, times=1, retry_after_s=2, hang_s=3)  # type: ignore[arg-type]
    return None


async def _collect(router: PolicyRouter, how: str):
    if how == "ainvoke":
        return await router.ainvoke(QUESTION)
    return [c async for c in router.astream(QUESTION)][-1]


@pytest.mark.parametrize("mode", list(EXPECTED))
@pytest.mark.parametrize("failing", ["openai", "gemini"])
@pytest.mark.parametrize("how", ["invoke", "stream"])
def test_failure_becomes_a_typed_error_and_escalates(cloud_env: None, openai_server: LlamaOpenAIServer,
                                                     gemini_server: GeminiTestServer, failing: str,
                                                     mode: str, how: str):
    router = two_rung_router(failing, refused_url=inject(mode, failing, openai_server, gemini_server))
    msg = router.invoke(QUESTION) if how == "invoke" else list(router.stream(QUESTION))[-1]
    routing = msg.response_metadata["routing"]
    first, second = routing["attempts"]
    kind, status = EXPECTED[mode]
    assert first["error"]["type"] == "ProviderError"
    assert (first["error"]["kind"], first["error"]["status_code"]) == (kind, status)
    assert first["error"]["provider"] == ("openai" if failing == "openai" else "google_genai")
    assert first["error"]["retry_after_s"] == (2.0 if mode == "rate_limit" else None)
    assert first["accepted"] is False
    # A try the provider may have run (a timeout, a malformed reply, a dropped connection) is
    # charged its worst case; an error status or a refused connection costs nothing.
    worst = router.plan(QUESTION).selection.worst_case_usd[first["model"]]
    charged = mode in ("hang", "malformed", "disconnect")
    assert (first["cost_usd"], first["cost_estimated"]) == ((round(worst, 10), True) if charged else (0.0, False))
    # gpt-4 is over the ceiling: escalation skips it and never calls it.
    assert second["model"] == "gemini-pro" and second["accepted"] is True
    assert routing["final_model"] == "gemini-pro" and routing["status"] == "accepted"
    assert "gpt-4" in [e["model"] for e in routing["excluded"]]
    assert openai_server.count("gpt-4") == 0
    expected_first = 0 if mode == "refused" else 1
    if failing == "openai":
        assert openai_server.count("gpt-3.5-turbo") == expected_first
    else:
        assert gemini_server.count("gemini-2.0-flash") == expected_first


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("mode", list(EXPECTED))
@pytest.mark.parametrize("failing", ["openai", "gemini"])
@pytest.mark.parametrize("how", ["ainvoke", "astream"])
async def test_async_failure_becomes_a_typed_error(cloud_env: None, openai_server: LlamaOpenAIServer,
                                                   gemini_server: GeminiTestServer, failing: str, mode: str,
                                                   how: str):
    router = two_rung_router(failing, refused_url=inject(mode, failing, openai_server, gemini_server))
    msg = await _collect(router, how)
    first = msg.response_metadata["routing"]["attempts"][0]
    assert (first["error"]["kind"], first["error"]["status_code"]) == EXPECTED[mode]
    assert msg.response_metadata["routing"]["final_model"] == "gemini-pro"


def test_every_rung_failing_raises_routing_error_with_the_record(cloud_env: None, openai_server: LlamaOpenAIServer,
                                                                 gemini_server: GeminiTestServer):
    openai_server.fail("server", times=1)
    gemini_server.fail("rate_limit", times=1, retry_after_s=30)
    with pytest.raises(RoutingError) as info:
        two_rung_router("openai").invoke(QUESTION)
    decision = info.value.decision
    assert decision.status == "failed" and decision.final_model is None
    assert [(a.model, a.error["kind"]) for a in decision.attempts] == [("gpt-3.5-turbo", "server"),
                                                                        ("gemini-pro", "rate_limit")]
    assert info.value.__cause__ is None  # never chained (it may hold what a server echoed)
    cause = info.value.last_error
    assert isinstance(cause, ProviderError) and cause.retry_after_s == 30.0 and cause.decision is decision
    assert "every candidate failed" in str(info.value)


@pytest.mark.parametrize("failing", ["openai", "gemini"])
def test_max_retries_means_retries_after_the_first_attempt(cloud_env: None, openai_server: LlamaOpenAIServer,
                                                           gemini_server: GeminiTestServer, failing: str):
    server = openai_server if failing == "openai" else gemini_server
    server.fail("unavailable", times=1, retry_after_s=0.01)  # type: ignore[attr-defined]
    msg = two_rung_router(failing, retries=1, timeout_s=60).invoke(QUESTION)
    routing = msg.response_metadata["routing"]
    assert routing["attempts"][0]["error"] is None  # the retry inside the client succeeded
    assert routing["final_model"] == ("gpt-3.5-turbo" if failing == "openai" else "gemini-flash")
    assert server.count() == 2  # type: ignore[attr-defined]


def test_a_bug_is_not_hidden_as_a_provider_error():
    from router.providers._http_errors import translate_http_error

    assert translate_http_error("openai", "m", KeyError("choices")) is None
    assert translate_http_error("openai", "m", TypeError("unexpected keyword")) is None
    assert translate_http_error("openai", "m", ValueError("something of ours")) is None
    assert translate_http_error("openai", "m", asyncio.CancelledError()) is None
