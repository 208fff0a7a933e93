"""A failure reaches callbacks and tracers only scrubbed: a 401 whose body echoes the key.

LangChain reports a chat model's failure to every handler of its run (``on_llm_error(exc)``) with
the exception the model raised, before the router sees it. Real parts: ``ChatOpenAI`` over HTTP
against the loopback server that quotes the key in its 401, LangChain's callback manager, a
local tracer (``BaseTracer``: runs with their ``error`` text) and ``LangChainTracer`` uploading to
a loopback LangSmith sink.

On main before this change, the child model's run got ``openai.AuthenticationError`` with
``Incorrect API key provided: Bearer sk-proj-...`` in its message, and both tracers stored it.
"""

from __future__ import annotations

import traceback
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tracers import LangChainTracer
from langchain_core.tracers.base import BaseTracer
from langchain_core.tracers.schemas import Run
from langsmith import Client
from security_servers import FakeOpenAIServer, TracerSink
from servers._base import QuietHandler, RecordedRequest, ThreadedTestServer

from router import PolicyRouter, RoutingError, loads_policy

OPENAI_KEY = "sk-proj-Zz9SECRETopenaiKEY0123456789"  # as tests/security/conftest.py
POLICY = """\
version: 1
name: echo
models:
  gpt: {provider: openai, model: gpt-3.5-turbo, tier: standard, price: {input: 0.5, output: 1.5}, timeout_s: 5}
policy:
  cost_ceiling: 0.01
  max_output_tokens: 4
  cascade: [gpt]
  on_exhausted: raise
"""


class Recorder(BaseCallbackHandler):
    """Every error any run reports, as the exception object it was given."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        self.errors.append(error)

    def on_chain_error(self, error: BaseException, **kwargs: Any) -> None:
        self.errors.append(error)


class LocalTracer(BaseTracer):
    def __init__(self) -> None:
        super().__init__()
        self.runs: list[Run] = []

    def _persist_run(self, run: Run) -> None:
        self.runs.append(run)

    def _end_trace(self, run: Run) -> None:
        self.runs.append(run)
        super()._end_trace(run)


def shown(errors: list[BaseException]) -> str:
    parts = []
    for err in errors:
        parts += ["".join(traceback.format_exception(err)), repr(err), str(err)]
    return "\n".join(parts)


def every_run(runs: list[Run]) -> list[Run]:
    found, stack = [], list(runs)
    while stack:
        run = stack.pop()
        found.append(run)
        stack += run.child_runs
    return found


def assert_no_key(text: str, key: str) -> None:
    assert key not in text and key[8:24] not in text


@pytest.mark.parametrize("entry", ["invoke", "stream", "ainvoke", "astream"])
async def test_the_child_runs_error_is_scrubbed_for_every_handler(entry: str, monkeypatch: pytest.MonkeyPatch,
                                                                  openai_fake: FakeOpenAIServer, tracer_sink: TracerSink):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_fake.base_url)
    openai_fake.echo_key = True
    router = PolicyRouter(policy=loads_policy(POLICY, "echo.yaml"))
    recorder, local = Recorder(), LocalTracer()
    client = Client(api_url=tracer_sink.origin, api_key="ls-dummy-key", auto_batch_tracing=False)
    remote = LangChainTracer(client=client, project_name="echo")
    config = {"callbacks": [recorder, local, remote]}
    with pytest.raises(RoutingError):
        if entry == "invoke":
            router.invoke("hi", config=config)
        elif entry == "stream":
            list(router.stream("hi", config=config))
        elif entry == "ainvoke":
            await router.ainvoke("hi", config=config)
        else:
            [c async for c in router.astream("hi", config=config)]
    remote.wait_for_futures()
    client.flush()
    # The server did get the key and quote it back; the child run did fail with the client's error.
    assert openai_fake.requests[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert recorder.errors
    assert_no_key(shown(recorder.errors), OPENAI_KEY)
    errors = [run.error or "" for run in every_run(local.runs) if run.name == "ChatOpenAI"]
    assert errors and all("AuthenticationError" in e and "Incorrect API key provided" in e for e in errors)
    assert_no_key("\n".join(run.error or "" for run in every_run(local.runs)), OPENAI_KEY)
    uploads = tracer_sink.received().decode()
    assert "AuthenticationError" in uploads
    assert_no_key(uploads, OPENAI_KEY)


KEYS = st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
               min_size=16, max_size=48).map(lambda k: "sk-" + k)


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=KEYS)
def test_property_no_echoed_key_reaches_a_handler(key: str, monkeypatch: pytest.MonkeyPatch,
                                                  openai_fake: FakeOpenAIServer):
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_fake.base_url)
    openai_fake.echo_key = True
    recorder, local = Recorder(), LocalTracer()
    router = PolicyRouter(policy=loads_policy(POLICY, "echo.yaml"))
    with pytest.raises(RoutingError) as info:
        router.invoke("hi", config={"callbacks": [recorder, local]})
    assert recorder.errors
    text = shown([*recorder.errors, info.value]) + "\n".join(r.error or "" for r in every_run(local.runs))
    assert key not in text and key[3:19] not in text


class _EchoGeminiHandler(QuietHandler):
    server_state: ThreadedTestServer

    def do_POST(self) -> None:  # noqa: N802 (stdlib's name)
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server_state.record(RecordedRequest("POST", self.path, headers, self.read_body()))
        key = headers.get("x-goog-api-key", "")
        self.send_json(401, {"error": {"code": 401, "message": f"API key {key} is not valid (key={key})",
                                       "status": "UNAUTHENTICATED"}})


class EchoGemini(ThreadedTestServer):
    handler_class = _EchoGeminiHandler


GEMINI_KEY = "AIzaSyD-SECRETechoGEMINI-0123456789"


@pytest.mark.parametrize("entry", ["invoke", "stream"])
def test_gemini_child_runs_error_is_scrubbed_too(entry: str, monkeypatch: pytest.MonkeyPatch):
    with EchoGemini() as server:
        monkeypatch.setenv("GOOGLE_API_KEY", GEMINI_KEY)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.origin)
        for var in ("GEMINI_API_KEY", "GOOGLE_GENAI_API_VERSION", "GOOGLE_GENAI_USE_VERTEXAI"):
            monkeypatch.delenv(var, raising=False)
        router = PolicyRouter(policy=loads_policy(POLICY.replace("provider: openai", "provider: google_genai")
                                                  .replace("model: gpt-3.5-turbo", "model: gemini-2.0-flash")))
        recorder, local = Recorder(), LocalTracer()
        with pytest.raises(RoutingError):
            if entry == "invoke":
                router.invoke("hi", config={"callbacks": [recorder, local]})
            else:
                list(router.stream("hi", config={"callbacks": [recorder, local]}))
        assert server.requests and server.requests[0].headers["x-goog-api-key"] == GEMINI_KEY
    errors = [run.error or "" for run in every_run(local.runs) if run.name == "ChatGoogleGenerativeAI"]
    assert errors and all("is not valid" in e for e in errors)
    text = shown(recorder.errors) + "\n".join(r.error or "" for r in every_run(local.runs))
    text += "\n".join(str(r.outputs) for r in every_run(local.runs))
    assert GEMINI_KEY not in text and GEMINI_KEY[8:24] not in text
