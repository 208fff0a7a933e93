"""A URL's password shows nowhere: not in a repr, a pickle, ``dumpd``, a trace or a log line.

Real parts: ``ChatOpenAI`` over HTTP against the loopback OpenAI-protocol server (through an
endpoint URL that holds ``user:password@``), httpx's own INFO log line, LangChain's
``LangChainTracer`` uploading to a loopback LangSmith sink.

On main before this change, ``repr(policy)`` and ``pickle.dumps(router)`` held the endpoint's
password, the child ``ChatOpenAI`` was traced with it in its parameters, and httpx logged
``HTTP Request: POST http://user:password@127.0.0.1:.../v1/chat/completions``.
"""

from __future__ import annotations

import logging
import pickle
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.load import dumpd, dumps
from langchain_core.tracers import LangChainTracer
from langsmith import Client
from security_servers import FakeOpenAIServer, TracerSink

from router import PolicyRouter, loads_policy

PASSWORD = "S3cretPassw0rdZz9"
POLICY = """\
version: 1
name: url-secrets
models:
  gpt:
    provider: openai
    model: gpt-3.5-turbo
    base_url: "{base_url}"
    tier: standard
    price: {{input: 0.5, output: 1.5}}
    timeout_s: 5
policy:
  cost_ceiling: 0.01
  max_output_tokens: 4
  cascade: [gpt]
ledger: "redis://admin:{password}@127.0.0.1:1/0"
"""


def with_password(url: str, password: str = PASSWORD) -> str:
    return url.replace("http://", f"http://gw-user:{password}@", 1)


def static_forms(router: PolicyRouter, password: str) -> None:
    policy = router.policy
    shown = [repr(policy), str(policy), repr(router), str(router), repr(policy.models["gpt"]),
             dumps(router), repr(dumpd(router))]
    for text in shown:
        assert password not in text
    for blob in (pickle.dumps(router), pickle.dumps(policy), pickle.dumps(policy.models["gpt"])):
        assert password.encode() not in blob


def test_repr_pickle_and_dumpd_hold_no_url_password(network_env: None, openai_fake: FakeOpenAIServer):
    router = PolicyRouter(policy=loads_policy(POLICY.format(base_url=with_password(openai_fake.base_url),
                                                            password=PASSWORD)))
    static_forms(router, PASSWORD)
    assert router.policy.models["gpt"].base_url == with_password(openai_fake.base_url)  # the value itself is kept
    again = pickle.loads(pickle.dumps(router))
    assert again.policy.models["gpt"].base_url == openai_fake.base_url.replace("http://", "http://gw-user:***@")


def test_a_call_through_a_password_url_logs_and_traces_no_password(network_env: None, openai_fake: FakeOpenAIServer,
                                                                   tracer_sink: TracerSink,
                                                                   caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    router = PolicyRouter(policy=loads_policy(POLICY.format(base_url=with_password(openai_fake.base_url),
                                                            password=PASSWORD)))
    client = Client(api_url=tracer_sink.origin, api_key="ls-dummy-key", auto_batch_tracing=False)
    tracer = LangChainTracer(client=client, project_name="urls")
    message = router.invoke("What is the capital of France?", config={"callbacks": [tracer]})
    tracer.wait_for_futures()
    client.flush()
    assert message.response_metadata["routing"]["final_model"] == "gpt"
    [request] = openai_fake.requests
    assert request.headers["authorization"].startswith("Basic ")  # the user-info still authenticates
    assert "HTTP Request: POST" in caplog.text  # httpx's own line was logged...
    assert PASSWORD not in caplog.text  # ...without the password
    uploads = tracer_sink.received()
    assert b"gpt-3.5-turbo" in uploads  # the child model's run was traced...
    assert PASSWORD.encode() not in uploads  # ...without the password
    static_forms(router, PASSWORD)  # and the built child models change none of it


def test_a_gemini_endpoint_with_a_password_is_excluded_without_showing_it(network_env: None):
    text = POLICY.format(base_url="https://u:" + PASSWORD + "@gw.example/gemini", password="x") \
        .replace("provider: openai", "provider: google_genai")
    router = PolicyRouter(policy=loads_policy(text, allow_env=["GOOGLE_API_KEY"]))
    decision = router.explain("q")
    assert any(e["reason"].startswith("unsupported: a password") for e in decision.to_dict()["excluded"])
    assert PASSWORD not in decision.to_json()


PASSWORDS = st.text(string.ascii_letters + string.digits + "-._~!$&'()*+,;=", min_size=8, max_size=32).map(
    lambda p: "Pw9" + p)


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=PASSWORDS)
def test_property_no_password_in_any_static_form(password: str):
    text = POLICY.format(base_url=with_password("http://127.0.0.1:9/v1", password), password=password)
    router = PolicyRouter(policy=loads_policy(text))
    static_forms(router, password)


def test_a_built_child_model_holds_no_url_password(network_env: None):
    from router.providers import get_adapter

    policy = loads_policy(POLICY.format(base_url=with_password("http://127.0.0.1:9/v1"), password=PASSWORD))
    model = get_adapter("openai").build("gpt", policy.models["gpt"])
    assert type(model).__name__ == "ChatOpenAI"  # the scrubbing subclass keeps the name traces show
    for text in (repr(model), str(model), dumps(model), repr(model.model_dump())):
        assert PASSWORD not in text


@settings(max_examples=200, deadline=None, database=None)
@given(password=PASSWORDS, user=st.text(string.ascii_letters, min_size=1, max_size=8),
       path=st.text(string.ascii_letters + "/@:", max_size=20))
def test_property_the_log_filter_masks_any_url_password(password: str, user: str, path: str):
    """What httpx logs (``HTTP Request: POST <url> "HTTP/1.1 401"``) passes the filter masked,
    whatever the password and path."""
    from router.providers._network import MaskURLPasswords

    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, 'HTTP Request: %s %s "%s %d %s"',
                               ("POST", f"https://{user}:{password}@gw.example/{path}", "HTTP/1.1", 401, "x"), None)
    assert MaskURLPasswords().filter(record)
    assert password not in record.getMessage() and "HTTP Request: POST https://" in record.getMessage()
