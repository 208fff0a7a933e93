"""The circuit breaker and Retry-After, over the real clients against loopback servers: a dead
(hung) Gemini endpoint costs its timeout until the breaker opens, then later requests skip it in
a few milliseconds; after the cooldown one probe request goes through (success closes, failure
reopens, a second request meanwhile is excluded); a 429's Retry-After is waited when a retry is
allowed and the wait fits ``breaker.max_retry_wait_s``, otherwise the cascade escalates at once,
and the attempt record says which."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from servers.gemini import GeminiTestServer
from servers.openai_llama import LlamaOpenAIServer

from router import PolicyError, PolicyRouter, loads_policy
from router.policy.breaker_settings import BreakerSettings
from router.providers.breaker import CircuitBreaker, MemoryBreakerStore, reset_process_breakers

KEY = "test-gemini-key-5f2a"
QUESTION = "What is the capital of France?"


@pytest.fixture
def dead(monkeypatch: pytest.MonkeyPatch) -> Iterator[GeminiTestServer]:
    """A second Gemini endpoint that hangs on every request (its first rung's model is dead)."""
    monkeypatch.setenv("GOOGLE_API_KEY", KEY)
    with GeminiTestServer(api_key=KEY) as server:
        server.fail("hang", times=None, hang_s=30)
        yield server


def breaker_router(dead_url: str, live_url: str, *, timeout_s: float = 1.0, breaker: str = "",
                   retries: int = 0) -> PolicyRouter:
    text = f"""
version: 1
name: breaker
models:
  flash:
    provider: google_genai
    model: gemini-2.0-flash
    tier: standard
    price: {{input: 0.1, output: 0.4}}
    base_url: {dead_url}
    timeout_s: {timeout_s}
    max_retries: {retries}
  pro:
    provider: google_genai
    model: gemini-2.5-pro
    tier: standard
    price: {{input: 1.25, output: 10.0}}
    base_url: {live_url}
    timeout_s: 5
policy:
  cost_ceiling: 0.05
  max_output_tokens: 16
  cascade: [flash, pro]
{breaker}
"""
    return PolicyRouter(policy=loads_policy(text, "breaker.yaml"))


def timed(router: PolicyRouter) -> tuple[float, dict]:
    started = time.perf_counter()
    msg = router.invoke(QUESTION)
    return time.perf_counter() - started, msg.response_metadata["routing"]


def test_a_dead_model_costs_its_timeout_three_times_then_is_skipped(dead: GeminiTestServer,
                                                                  gemini_server: GeminiTestServer):
    timeout_s = 1.0
    router = breaker_router(dead.base_url, gemini_server.base_url, timeout_s=timeout_s)
    runs = [timed(router) for _ in range(6)]
    latencies = [round(s, 3) for s, _ in runs]
    print(f"\nbreaker: request latencies {latencies} s (timeout {timeout_s} s)")
    for seconds, routing in runs[:3]:  # each waits for the dead model's timeout, then escalates
        assert routing["attempts"][0]["error"]["kind"] == "timeout"
        assert routing["final_model"] == "pro" and seconds >= timeout_s
    for seconds, routing in runs[3:]:  # the breaker is open: no call, no wait
        assert [a["model"] for a in routing["attempts"]] == ["pro"]
        [reason] = [e["reason"] for e in routing["excluded"] if e["model"] == "flash"]
        assert reason.startswith("cooling down: 3 timeouts in 60 s (probe in ")
        assert seconds < timeout_s / 4
    assert dead.count() == 3  # the dead endpoint was asked three times, not six
    # explain() shows the same exclusion without calling anything.
    assert "cooling down: 3 timeouts" in {e.model: e.reason for e in router.explain(QUESTION).excluded}["flash"]


def test_after_the_cooldown_one_probe_closes_or_reopens_the_breaker(dead: GeminiTestServer,
                                                                  gemini_server: GeminiTestServer):
    dead.fail("server", times=None)  # 500s: fast failures
    router = breaker_router(dead.base_url, gemini_server.base_url,
                            breaker="breaker: {failures: 2, window_s: 30, cooldown_s: 0.5}")
    for _ in range(2):
        timed(router)
    _, routing = timed(router)
    assert any(e["reason"].startswith("cooling down: 2 server errors in 30 s") for e in routing["excluded"])
    assert dead.count() == 2
    time.sleep(0.6)
    _, routing = timed(router)  # half-open: this request probes the endpoint, which still fails
    assert routing["attempts"][0]["model"] == "flash" and routing["attempts"][0]["error"]["kind"] == "server"
    assert dead.count() == 3
    _, routing = timed(router)
    assert {e["model"]: e["reason"] for e in routing["excluded"]}["flash"].startswith(
        "cooling down: the probe failed (server error) (probe in ")
    time.sleep(0.6)
    dead.heal()
    _, routing = timed(router)  # the next probe succeeds: closed
    assert routing["final_model"] == "flash" and routing["attempts"][0]["error"] is None
    _, routing = timed(router)
    assert routing["final_model"] == "flash" and dead.count() == 5


def test_while_the_probe_runs_other_requests_still_skip_the_model(dead: GeminiTestServer,
                                                                 gemini_server: GeminiTestServer):
    router = breaker_router(dead.base_url, gemini_server.base_url, timeout_s=1.0,
                            breaker="breaker: {failures: 1, cooldown_s: 0.3}")
    timed(router)  # one timeout opens it
    time.sleep(0.4)
    probe: list[dict] = []
    thread = threading.Thread(target=lambda: probe.append(timed(router)[1]))
    thread.start()
    deadline = time.monotonic() + 10
    while dead.count() < 2:  # the probe is in flight on the dead endpoint
        assert time.monotonic() < deadline
        time.sleep(0.01)
    seconds, routing = timed(router)
    thread.join()
    assert [a["model"] for a in routing["attempts"]] == ["pro"] and seconds < 0.5
    assert "a probe request is testing it" in {e["model"]: e["reason"] for e in routing["excluded"]}["flash"]
    assert probe[0]["attempts"][0]["error"]["kind"] == "timeout"
    assert dead.count() == 2


def test_a_disabled_breaker_keeps_calling(dead: GeminiTestServer, gemini_server: GeminiTestServer):
    dead.fail("server", times=None)
    router = breaker_router(dead.base_url, gemini_server.base_url, breaker="breaker: {enabled: false}")
    for _ in range(4):
        timed(router)
    assert dead.count() == 4


def test_failures_outside_the_window_do_not_open_it():
    now = [1000.0]
    breaker = CircuitBreaker(BreakerSettings(failures=3, window_s=60), MemoryBreakerStore(), clock=lambda: now[0])
    for step in (0, 30, 61):  # the first has left the window when the third comes
        now[0] = 1000.0 + step
        breaker.record("k", "timeout")
    assert breaker.exclusion("k") is None
    breaker.record("k", "bad_request")  # an answer, even a 400, is not a failure of the endpoint
    breaker.record("k", "connection")
    assert breaker.exclusion("k") == "cooling down: 2 timeouts and 1 connection failure in 60 s (probe in 30 s)"
    now[0] += 30
    assert breaker.admit("k", probe_lease_s=5) is None  # half-open: the probe
    assert breaker.admit("k", probe_lease_s=5).endswith("a probe request is testing it")
    breaker.record("k", None)
    assert breaker.exclusion("k") is None and breaker.admit("k", 5) is None


def test_breaker_keys_are_validated_with_a_suggestion():
    text = """
version: 1
name: bad
models:
  m: {provider: google_genai, model: gemini-2.0-flash, price: {input: 0.1, output: 0.4}}
policy:
  cascade: [m]
breaker:
  failurs: 3
"""
    with pytest.raises(PolicyError) as info:
        loads_policy(text, "bad.yaml")
    issue = info.value.issues[0]
    assert (issue.key, issue.line, issue.suggestion) == ("breaker.failurs", 9, "failures")


# ----------------------------------------------------------------------------- Retry-After


def retry_router(failing: str, openai: LlamaOpenAIServer, gemini: GeminiTestServer, *, retries: int,
                 bound: float = 5.0) -> PolicyRouter:
    provider, model, url = (("openai", "gpt-3.5-turbo", openai.base_url) if failing == "openai"
                            else ("google_genai", "gemini-2.0-flash", gemini.base_url))
    text = f"""
version: 1
name: retry-after
models:
  first:
    provider: {provider}
    model: {model}
    tier: standard
    price: {{input: 0.5, output: 1.5}}
    base_url: {url}
    max_retries: {retries}
  pro:
    provider: google_genai
    model: gemini-2.5-pro
    tier: standard
    price: {{input: 1.25, output: 10.0}}
    base_url: {gemini.base_url}
policy:
  cost_ceiling: 0.05
  max_output_tokens: 16
  cascade: [first, pro]
breaker:
  max_retry_wait_s: {bound}
"""
    return PolicyRouter(policy=loads_policy(text, "retry.yaml"))


@pytest.mark.parametrize("failing", ["openai", "gemini"])
def test_a_retry_after_within_the_bound_is_waited_then_retried(cloud_env: None, openai_server: LlamaOpenAIServer,
                                                               gemini_server: GeminiTestServer, failing: str):
    server = openai_server if failing == "openai" else gemini_server
    server.fail("rate_limit", times=1, retry_after_s=0.3)  # type: ignore[attr-defined]
    seconds, routing = timed(retry_router(failing, openai_server, gemini_server, retries=1))
    first = routing["attempts"][0]
    assert routing["final_model"] == "first" and first["error"] is None
    assert first["retries"] == [{"error": "rate_limit", "action": "waited", "reason": "Retry-After",
                                 "wait_s": 0.3, "retry_after_s": 0.3}]
    assert seconds >= 0.3 and first["latency_s"] >= 0.3
    assert server.count() == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("failing", ["openai", "gemini"])
@pytest.mark.parametrize("retries", [0, 2])
def test_a_retry_after_beyond_the_bound_or_without_retries_escalates_at_once(
        cloud_env: None, openai_server: LlamaOpenAIServer, gemini_server: GeminiTestServer, failing: str,
        retries: int):
    server = openai_server if failing == "openai" else gemini_server
    server.fail("rate_limit", times=1, retry_after_s=30)  # type: ignore[attr-defined]
    seconds, routing = timed(retry_router(failing, openai_server, gemini_server, retries=retries))
    first = routing["attempts"][0]
    assert first["error"]["kind"] == "rate_limit" and first["error"]["retry_after_s"] == 30.0
    why = "max_retries is 0" if retries == 0 else "Retry-After 30 s > max_retry_wait_s 5 s"
    assert first["retries"] == [{"error": "rate_limit", "action": "escalated", "reason": why, "wait_s": 0.0,
                                 "retry_after_s": 30.0}]
    assert routing["final_model"] == "pro" and seconds < 10  # never waited the 30 s
    assert (openai_server.count("gpt-3.5-turbo") if failing == "openai"
            else gemini_server.count("gemini-2.0-flash")) == 1


def test_without_retry_after_a_retry_backs_off_and_a_breaker_it_opens_stops_the_retries(
        dead: GeminiTestServer, gemini_server: GeminiTestServer):
    dead.fail("server", times=1)
    _, routing = timed(breaker_router(dead.base_url, gemini_server.base_url, retries=1))
    [note] = routing["attempts"][0]["retries"]
    assert routing["final_model"] == "flash" and (note["action"], note["reason"]) == ("waited", "backoff")
    assert 0.375 <= note["wait_s"] <= 0.5 and dead.count() == 2
    reset_process_breakers()  # the failure above counts for this endpoint in every router
    dead.fail("server", times=None)
    _, routing = timed(breaker_router(dead.base_url, gemini_server.base_url, retries=3,
                                      breaker="breaker: {failures: 2}"))
    notes = routing["attempts"][0]["retries"]
    assert [n["action"] for n in notes] == ["waited", "escalated"]
    assert notes[1]["reason"].startswith("cooling down: 2 server errors in 60 s")
    assert routing["final_model"] == "pro" and dead.count() == 4  # 2 + 2: the third retry was never made


def test_the_routers_timeout_caps_each_models_timeout(dead: GeminiTestServer, gemini_server: GeminiTestServer):
    """``PolicyRouter(timeout=...)``, LangChain's standard field, caps the policy's ``timeout_s``
    (30 s here) for every rung; it never raises it, and ``max_retries`` is capped the same way."""
    policy = breaker_router(dead.base_url, gemini_server.base_url, timeout_s=30.0, retries=2).policy
    router = PolicyRouter(policy=policy, timeout=0.5, max_retries=0)
    started = time.perf_counter()
    routing = router.invoke(QUESTION).response_metadata["routing"]
    waited = time.perf_counter() - started
    assert routing["attempts"][0]["error"]["kind"] == "timeout" and routing["attempts"][0]["retries"] == []
    assert routing["final_model"] == "pro"
    assert waited < 10, f"the dead rung held the request {waited:.1f} s: the 0.5 s timeout was not applied"
    assert dead.count() == 1  # max_retries=0 capped the policy's 2 retries
    loose = PolicyRouter(policy=policy, timeout=600, max_retries=5)
    assert (loose.catalog.spec("flash").timeout_s, loose.catalog.spec("flash").max_retries) == (30.0, 2)
    assert loose.policy is policy and router.policy is policy  # the policy itself is unchanged
