"""No API key in any output: records, errors, reprs, log lines (DEBUG, every logger), callback
events, CLI output — while the servers prove the keys really were sent."""

from __future__ import annotations

import json
import logging
from typing import Any
from uuid import UUID

import httpx
import openai
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tracers.base import BaseTracer
from langchain_core.tracers.schemas import Run
from pydantic import SecretStr
from servers.gemini import GeminiTestServer
from servers.openai_llama import LlamaOpenAIServer

from router import PolicyRouter, RoutingError, loads_policy
from router.providers import get_adapter
from router.providers._http_errors import scrub, translate_http_error

OPENAI_KEY = "sk-proj-Zz9SECRETopenaiKEY0123456789"
GEMINI_KEY = "AIzaSyD-SECRETgeminiKEY-0123456789"
POLICY = """
version: 1
name: secrets
models:
  gemini-flash: {provider: google_genai, model: gemini-2.0-flash, tier: standard, price: {input: 0.1, output: 0.4}}
  gpt-3.5-turbo: {provider: openai, model: gpt-3.5-turbo, tier: standard, price: {input: 0.5, output: 1.5}}
policy:
  cost_ceiling: 0.01
  max_output_tokens: 4
  cascade: [gemini-flash, gpt-3.5-turbo]
"""


class Recorder(BaseCallbackHandler):
    """Keeps a text dump of every callback event and its arguments."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def _keep(self, event: str, /, *args: Any, **kwargs: Any) -> None:
        self.events.append(f"{event} {args!r} {kwargs!r}")

    def on_chat_model_start(self, serialized: dict[str, Any], messages: Any, *, run_id: UUID, **kw: Any) -> None:
        self._keep("chat_model_start", json.dumps(serialized, default=repr), messages, **kw)

    def on_chain_start(self, serialized: dict[str, Any] | None, inputs: Any, *, run_id: UUID, **kw: Any) -> None:
        self._keep("chain_start", json.dumps(serialized, default=repr), inputs, **kw)

    def on_llm_end(self, response: Any, **kw: Any) -> None:
        self._keep("llm_end", response, **kw)

    def on_llm_error(self, error: BaseException, **kw: Any) -> None:
        self._keep("llm_error", repr(error), str(error), **kw)

    def on_chain_error(self, error: BaseException, **kw: Any) -> None:
        self._keep("chain_error", repr(error), str(error), **kw)

    def on_chain_end(self, outputs: Any, **kw: Any) -> None:
        self._keep("chain_end", outputs, **kw)


class RunDump(BaseTracer):
    """A tracer (it sees the router's child runs): a text dump of every run as it starts and ends."""

    router_local_tracer = True  # keeps runs in memory: kept for local-only requests too

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def _persist_run(self, run: Run) -> None:
        pass

    def _dump(self, run: Run) -> None:
        self.events.append(json.dumps(run.model_dump(), default=repr))

    _on_llm_start = _on_chat_model_start = _on_llm_end = _on_llm_error = _dump


def assert_no_secret(*outputs: str) -> None:
    for output in outputs:
        for key in (OPENAI_KEY, GEMINI_KEY):
            assert key not in output
            assert key[8:24] not in output  # nor a recognisable part of it


def test_wrong_keys_fail_as_auth_errors_without_leaking(monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture,
                                                        capfd: pytest.CaptureFixture[str],
                                                        gemini_server: GeminiTestServer,
                                                        openai_server: LlamaOpenAIServer):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("GOOGLE_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", gemini_server.base_url)
    caplog.set_level(logging.DEBUG)
    recorder, tracer = Recorder(), RunDump()
    router = PolicyRouter(policy=loads_policy(POLICY, "secrets.yaml"))
    with pytest.raises(RoutingError) as info:
        router.invoke("hi", config={"callbacks": [recorder, tracer]})
    decision = info.value.decision
    assert [(a.error["kind"], a.error["status_code"]) for a in decision.attempts] == [("auth", 403), ("auth", 401)]
    # The keys did travel, in their headers (the servers refused them).
    assert gemini_server.requests[0].headers["x-goog-api-key"] == GEMINI_KEY
    assert openai_server.requests[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    out, err = capfd.readouterr()
    reprs = [repr(router), repr(router.catalog.chat_model("gemini-flash")),
             repr(router.catalog.chat_model("gpt-3.5-turbo")), str(router.catalog.chat_model("gemini-flash").__dict__)]
    assert_no_secret(str(info.value), repr(info.value), str(info.value.__cause__), repr(info.value.__cause__),
                     decision.to_json(), decision.summary(), *reprs, caplog.text, out, err, *recorder.events,
                     *tracer.events)
    assert any("chat_model_start" in e for e in recorder.events)  # the recorder saw the router's run
    # The tracer saw both failed child runs start (with their clients' serialized parameters) and fail.
    assert any('"ChatGoogleGenerativeAI"' in e for e in tracer.events)
    assert any('"ChatOpenAI"' in e for e in tracer.events)
    assert len(tracer.events) >= 4
    assert "DEBUG" in caplog.text or caplog.records  # logging was on


def test_scrub_removes_an_echoed_key():
    echoed = f"Incorrect API key provided: {OPENAI_KEY}. Authorization: Bearer {OPENAI_KEY}; ?key={GEMINI_KEY}"
    assert_no_secret(scrub(echoed, [OPENAI_KEY]))

    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    echo = openai.AuthenticationError(echoed, response=httpx.Response(401, request=request), body=None)
    error = translate_http_error("openai", "gpt-4", echo, secrets=[SecretStr(OPENAI_KEY)],
                                 rows=get_adapter("openai").error_classes)
    assert error is not None and error.kind == "auth"
    assert_no_secret(str(error), json.dumps(error.to_dict()))
