"""Checks that consult other models — agreement, verifier, self_consistency — with real models:
the bundled llama.cpp model (in two catalog entries), recorded RouterBench models (the recorded
provider on the shipped sample), and ChatOpenAI over HTTP on 127.0.0.1. Every consultation goes
through the cascade's own policing (privacy, availability, ceiling) and is costed in the record.
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from servers._base import QuietHandler, ThreadedTestServer

from router import PolicyError, PolicyRouter, loads_policy
from router.checks.builtin import Answer, CheckResult, build_check
from router.checks.consulting import p_yes_of
from router.lab.datasets import load_dataset
from router.routing.caller import Caller
from router.routing.cascade import _Request, _run_check, drive

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_ARC = ROOT / "data" / "routerbench-sample" / "arc_challenge.jsonl"
FRANCE = "What is the capital of France?"

LOCAL = """
version: 1
name: consult-test
models:
  gemma:
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    chat_format: qa
    local: true
    context_window: 2048
  gemma-strong:
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    chat_format: qa
    tier: standard
    local: true
    context_window: 2048
    price: {input: 1.0, output: 2.0}
EXTRA_MODELS
policy:
  cost_ceiling: 0.05
  max_output_tokens: 12
  cascade: [gemma, gemma-strong]
  confidence:
CHECKS
"""


def local_router(checks: str, *, extra_models: str = "", ceiling: float | None = None) -> PolicyRouter:
    text = LOCAL.replace("EXTRA_MODELS\n", extra_models).replace("CHECKS\n", checks)
    if ceiling is not None:
        text = text.replace("cost_ceiling: 0.05", f"cost_ceiling: {ceiling}")
    return PolicyRouter(policy=loads_policy(text, "consult-test.yaml"))


def judge(router: PolicyRouter, entry: dict[str, Any], question: str, answer: str,
          *, model: str = "gemma", config: dict[str, Any] | None = None) -> CheckResult:
    """Run one check on a given answer exactly as the cascade does (same policing, same
    accounting), answering its consultations with the router's real caller."""
    plan = router.plan(question, config)
    reply = Answer(model=model, text=answer, message=AIMessage(answer), prompt=plan.messages)
    run = _run_check(build_check(entry), reply, plan, _Request(plan.settings.cost_ceiling))
    return drive(run, Caller(plan, config or {}))


# --------------------------------------------------------------------------- agreement


def test_agreement_accepts_when_the_consulted_model_agrees_and_charges_its_cost():
    router = local_router("    - check: agreement\n      models: [gemma-strong]\n      extract: text\n"
                          "      apply_to: [gemma]\n")
    msg = router.invoke(FRANCE)
    routing = msg.response_metadata["routing"]
    assert routing["status"] == "accepted" and routing["final_model"] == "gemma"
    [attempt] = routing["attempts"]
    [check] = attempt["checks"]
    assert check["check"] == "agreement" and check["passed"] and check["score"] == 1.0
    assert check["detail"] == "1/1 agree on 'paris'"
    [call] = check["calls"]
    assert call["model"] == "gemma-strong" and call["skipped"] is None and call["error"] is None
    assert call["cost_usd"] > 0 and check["cost_usd"] == pytest.approx(call["cost_usd"])
    # gemma itself is free: the whole request cost is the consultation.
    assert routing["total_cost_usd"] == pytest.approx(call["cost_usd"])


async def test_agreement_consults_the_same_way_on_the_async_path():
    router = local_router("    - check: agreement\n      models: [gemma-strong]\n      extract: text\n"
                          "      apply_to: [gemma]\n")
    routing = (await router.ainvoke(FRANCE)).response_metadata["routing"]
    check = routing["attempts"][0]["checks"][0]
    assert routing["final_model"] == "gemma" and check["passed"] and check["calls"][0]["model"] == "gemma-strong"
    assert routing["total_cost_usd"] == pytest.approx(check["cost_usd"]) and check["cost_usd"] > 0


def test_agreement_fails_when_the_consulted_model_answers_differently():
    router = local_router("    - check: agreement\n      models: [gemma-strong]\n      extract: text\n"
                          "      apply_to: [gemma]\n")
    result = judge(router, {"check": "agreement", "models": ["gemma-strong"], "extract": "text"}, FRANCE, "Lyon")
    assert not result.passed and result.score == 0.0
    assert result.detail == "0/1 agree on 'lyon'; gemma-strong='paris'"
    assert result.cost_usd > 0 and len(result.calls) == 1


def test_agreement_needs_min_agree_and_stops_asking_once_decided():
    router = local_router("    - check: min_length\n")
    entry = {"check": "agreement", "models": ["gemma-strong", "gemma", "gemma-strong"], "extract": "text",
             "min_agree": 1}
    result = judge(router, entry, FRANCE, "Paris", model="gemma-other")
    assert result.passed and len(result.calls) == 1  # the first agreeing voter settles it
    entry["min_agree"] = 3
    result = judge(router, entry, FRANCE, "Lyon", model="gemma-other")
    assert not result.passed and len(result.calls) == 1  # one dissent makes 3/3 impossible


def test_agreement_never_consults_the_answering_model_itself():
    router = local_router("    - check: min_length\n")
    result = judge(router, {"check": "agreement", "models": ["gemma"], "extract": "text"}, FRANCE, "Lyon")
    assert result.passed and result.calls == [] and result.detail == "no other model to consult"


def test_agreement_on_recorded_models_accepts_or_escalates_at_the_recorded_cost():
    data = load_dataset(SAMPLE_ARC)
    policy = loads_policy(f"""
version: 1
name: recorded-agreement
models:
  mistral-7b: {{provider: recorded, model: mistralai/mistral-7b-chat, dataset: {SAMPLE_ARC}, local: true}}
  mixtral-8x7b: {{provider: recorded, model: mistralai/mixtral-8x7b-chat, dataset: {SAMPLE_ARC}, local: true}}
  gpt-4: {{provider: recorded, model: gpt-4-1106-preview, dataset: {SAMPLE_ARC}, local: true, tier: premium}}
policy:
  cascade: [mistral-7b, gpt-4]
  confidence:
    - check: agreement
      models: [mixtral-8x7b]
      extract: choice
      apply_to: [mistral-7b]
""", "recorded-agreement.yaml")
    router = PolicyRouter(policy=policy)
    same = next(r for r in data if r.outcomes["mistralai/mistral-7b-chat"].response.strip()
                == r.outcomes["mistralai/mixtral-8x7b-chat"].response.strip())
    differ = next(r for r in data if r.outcomes["mistralai/mistral-7b-chat"].response.strip()
                  != r.outcomes["mistralai/mixtral-8x7b-chat"].response.strip())
    cost = {r.id: {m: o.cost_usd for m, o in r.outcomes.items()} for r in (same, differ)}

    routing = router.invoke(same.prompt).response_metadata["routing"]
    assert routing["final_model"] == "mistral-7b" and routing["status"] == "accepted"
    assert routing["total_cost_usd"] == pytest.approx(
        cost[same.id]["mistralai/mistral-7b-chat"] + cost[same.id]["mistralai/mixtral-8x7b-chat"])

    routing = router.invoke(differ.prompt).response_metadata["routing"]
    assert [a["model"] for a in routing["attempts"]] == ["mistral-7b", "gpt-4"]
    assert routing["final_model"] == "gpt-4"
    assert routing["attempts"][1]["checks"][0]["detail"] == "not applied to gpt-4"
    assert routing["total_cost_usd"] == pytest.approx(sum(
        cost[differ.id][m] for m in ("mistralai/mistral-7b-chat", "mistralai/mixtral-8x7b-chat",
                                     "gpt-4-1106-preview")))


# --------------------------------------------------------------------------- refused and failed calls


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A port that accepts TCP connections but never answers: shows whether anyone tried."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def connections(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def network_model(port: int) -> str:
    return (f"  gpt-net:\n    provider: openai\n    model: gpt-4o-mini\n    base_url: http://127.0.0.1:{port}/v1\n"
            "    tier: premium\n    timeout_s: 1\n    price: {input: 1.0, output: 2.0}\n")


@pytest.mark.parametrize("entry", [
    "    - check: agreement\n      models: [gpt-net]\n      extract: text\n      apply_to: [gemma]\n",
    "    - check: verifier\n      model: gpt-net\n      apply_to: [gemma]\n",
])
def test_privacy_never_lets_a_check_reach_a_network_model(entry, listener, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    router = local_router(entry, extra_models=network_model(listener.getsockname()[1]))
    msg = router.invoke(FRANCE, config={"configurable": {"privacy": True}})
    routing = msg.response_metadata["routing"]
    check = routing["attempts"][0]["checks"][0]
    assert not check["passed"]
    assert check["calls"] == [{"model": "gpt-net", "cost_usd": 0.0, "skipped": "not local: privacy", "reused": False, "error": None}]
    assert check["detail"] == "gpt-net call skipped: not local: privacy"
    assert connections(listener) == 0
    assert "sk-test" not in json.dumps(routing)


def test_a_failed_consultation_fails_the_check_without_crashing(listener, monkeypatch):
    # Same policy without privacy: the call is made (the listener sees it), times out, and the
    # check fails with the error kind; the request still gets an answer.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    router = local_router("    - check: agreement\n      models: [gpt-net]\n      extract: text\n"
                          "      apply_to: [gemma]\n", extra_models=network_model(listener.getsockname()[1]))
    msg = router.invoke(FRANCE)
    check = msg.response_metadata["routing"]["attempts"][0]["checks"][0]
    assert not check["passed"] and check["detail"] == "gpt-net call failed: timeout"
    assert check["calls"][0]["error"] == "timeout"
    assert connections(listener) >= 1
    assert msg.response_metadata["routing"]["status"] in ("accepted", "exhausted")


def test_a_consultation_over_the_ceiling_is_refused():
    router = local_router("    - check: agreement\n      models: [gemma-strong]\n      extract: text\n"
                          "      apply_to: [gemma]\n", ceiling=1e-9)
    routing = router.invoke(FRANCE).response_metadata["routing"]
    check = routing["attempts"][0]["checks"][0]
    assert not check["passed"] and check["detail"].startswith("gemma-strong call skipped: over ceiling")
    assert check["calls"][0]["skipped"].startswith("over ceiling") and routing["total_cost_usd"] == 0.0


# --------------------------------------------------------------------------- verifier


class _VerifierHandler(QuietHandler):
    """An OpenAI chat-completions endpoint that judges answers from a fixed key, with logprobs.
    A stand-in for a capable verifier model, which cannot run here (the bundled 270M base model
    cannot judge answers); the client, wire protocol, request options and P(yes) arithmetic are
    the real ones."""

    server_state: VerifierServer

    def do_POST(self) -> None:  # noqa: N802 (stdlib's name)
        body = json.loads(self.read_body())
        self.server_state.bodies.append(body)
        prompt = body["messages"][-1]["content"]
        right = "Proposed answer: Paris" in prompt
        word, other = ("Yes", "No") if right else ("No", "Yes")
        top = [{"token": word, "logprob": -0.05, "bytes": None}, {"token": other, "logprob": -3.0, "bytes": None}]
        self.send_json(200, {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": word},
                         "logprobs": {"content": [{"token": word, "logprob": -0.05, "bytes": None,
                                                   "top_logprobs": top}]}}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 1, "total_tokens": 31}})


class VerifierServer(ThreadedTestServer):
    handler_class = _VerifierHandler

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []


def test_verifier_uses_p_yes_from_top_logprobs_over_openai(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    with VerifierServer() as server:
        extra = (f"  judge:\n    provider: openai\n    model: gpt-4o-mini\n    base_url: {server.origin}/v1\n"
                 "    tier: premium\n    price: {input: 1.0, output: 2.0}\n")
        router = local_router("    - check: min_length\n", extra_models=extra)
        entry = {"check": "verifier", "model": "judge", "threshold": 0.8, "top_logprobs": 2}
        good = judge(router, entry, FRANCE, "Paris")
        bad = judge(router, entry, FRANCE, "Lyon")
    p = math.exp(-0.05) / (math.exp(-0.05) + math.exp(-3.0))
    assert good.passed and good.score == pytest.approx(p, abs=1e-4) and good.detail == "P(yes) from top_logprobs"
    assert not bad.passed and bad.score == pytest.approx(1 - p, abs=1e-4)
    assert good.cost_usd == pytest.approx((30 * 1.0 + 1 * 2.0) / 1e6)
    sent = server.bodies[0]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2 and sent["temperature"] == 0.0
    assert "Question: What is the capital of France?" in sent["messages"][-1]["content"]


def test_verifier_on_the_local_model_reads_p_yes_from_its_logprobs():
    # The bundled base model is no judge (its P(yes) barely moves with the answer), but it does
    # reply " Yes"/" No" to this prompt, so the logprob path and the threshold are real.
    router = local_router("    - check: min_length\n")
    result = judge(router, {"check": "verifier", "model": "gemma-strong", "threshold": 0.0}, FRANCE, "Paris")
    assert result.calls[0]["model"] == "gemma-strong" and result.cost_usd > 0
    assert result.detail == "P(yes) from logprobs" and result.passed
    assert result.score is not None and 0.0 < result.score < 1.0
    strict = judge(router, {"check": "verifier", "model": "gemma-strong", "threshold": min(1.0, result.score + 0.01)},
                   FRANCE, "Paris")
    assert not strict.passed and strict.score == result.score


def test_p_yes_from_the_sampled_token_and_from_text():
    def message(token: str, logprob: float) -> AIMessage:
        return AIMessage(token, response_metadata={"logprobs": {"content": [{"token": token, "logprob": logprob}]}})

    assert p_yes_of(message(" Yes", math.log(0.8))) == (pytest.approx(0.8), "logprobs")
    assert p_yes_of(message(" no", math.log(0.9))) == (pytest.approx(0.1), "logprobs")
    assert p_yes_of(AIMessage("Yes, it is.")) == (1.0, "text")
    assert p_yes_of(AIMessage("No.")) == (0.0, "text")
    assert p_yes_of(AIMessage("Perhaps")) == (None, "text")


# --------------------------------------------------------------------------- self-consistency


def test_self_consistency_passes_when_samples_agree_and_fails_when_the_answer_is_an_outlier():
    router = local_router("    - check: min_length\n")
    entry = {"check": "self_consistency", "n": 3, "temperature": 0.5, "threshold": 0.6, "seed": 10,
             "extract": "text", "max_tokens": 6}
    agreeing = judge(router, entry, FRANCE, " Paris")
    assert agreeing.passed and agreeing.score >= 0.6 and len(agreeing.calls) == 3
    assert agreeing.detail.startswith(("4/4 votes", "3/4 votes"))
    outlier = judge(router, entry, FRANCE, " Berlin")
    assert not outlier.passed and outlier.detail.startswith("1/4 votes for the answer")


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("checks", "message"), [
    ("    - check: agreement\n      models: [gemma-strng]\n", "'gemma-strng' is not in models:"),
    ("    - check: verifier\n      model: nobody\n", "'nobody' is not in models:"),
    ("    - check: agreement\n      models: [gemma-strong]\n      apply_to: [gema]\n", "'gema' is not in models:"),
    ("    - check: agreement\n      models: [gemma-strong]\n      extract: letter\n", "unknown extractor 'letter'"),
    ("    - check: agreement\n      models: [gemma-strong]\n      min_agree: 2\n", "min_agree 2 > number of models 1"),
    ("    - check: agreement\n      models: []\n", "at least 1 item"),
    ("    - check: verifier\n      prompt: 'Is {answer} right?'\n", "must contain {question}"),
    ("    - check: self_consistency\n      n: 0\n", "greater than or equal to 1"),
    ("    - check: self_consistency\n      threshold: 1.5\n", "less than or equal to 1"),
])
def test_consulting_checks_are_validated_at_load_with_a_location(checks, message):
    with pytest.raises(PolicyError) as err:
        local_router(checks)
    assert message in str(err.value)
    assert err.value.issues[0].line > 0 and err.value.file == "consult-test.yaml"
