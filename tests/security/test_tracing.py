"""Privacy covers tracing: under privacy no remote tracer receives the request's prompt or answer.

The LangSmith endpoint is a loopback server (``LANGSMITH_ENDPOINT``) recording every upload.
Tracing set up by the standard variables (``LANGSMITH_TRACING=true``, a dummy key) runs in a
subprocess, since LangSmith caches its environment per process. A private request sends the
sink nothing — its prompt and answer appear nowhere — while local callbacks still see every
run; the control, a request that is not private, is uploaded. On main, the private prompt was
uploaded too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tracers.langchain import LangChainTracer
from langsmith import Client
from security_servers import FakeOpenAIServer, TracerSink

from router import PolicyRouter, loads_policy

PRIVATE = "Summarise the merger memo for Project Nightingale"
PUBLIC = "What is the boiling point of water at sea level"
ANSWER = "Paris is the capital of France."
ALLOW = ["LOCAL_GPT_KEY"]  # the policy reads its key from a variable of its own: the caller allows it
POLICY = """\
version: 1
name: traced
models:
  local-gpt:
    provider: openai
    model: gpt-3.5-turbo
    local: true
    base_url: {base_url}
    api_key_env: LOCAL_GPT_KEY
    timeout_s: 10
policy:
  max_output_tokens: 8
  cascade: [local-gpt]
"""

SCRIPT = textwrap.dedent("""
    import asyncio, json, sys
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.tracers.langchain import wait_for_all_tracers
    from router import PolicyRouter, load_policy

    class Local(BaseCallbackHandler):
        def __init__(self):
            self.events = []
        def on_chain_start(self, *a, **k):
            self.events.append("chain_start")
        def on_chat_model_start(self, *a, **k):
            self.events.append("chat_model_start")
        def on_llm_end(self, *a, **k):
            self.events.append("llm_end")

    router = PolicyRouter(policy=load_policy(sys.argv[1], allow_env=["LOCAL_GPT_KEY"]))
    private, public = sys.argv[2], sys.argv[3]
    local = Local()
    config = {"configurable": {"privacy": True}, "callbacks": [local]}
    marks = [router.invoke(private, config=config).response_metadata["routing"]["effective"].get("tracing")]
    chunks = list(router.stream(private, config=config))
    marks.append(chunks[-1].response_metadata["routing"]["effective"].get("tracing"))
    marks.append(asyncio.run(router.ainvoke(private, config=config)).response_metadata["routing"]["effective"]
                 .get("tracing"))
    wait_for_all_tracers()
    print("PRIVATE-DONE", flush=True)
    sys.stdin.readline()  # the test reads the sink here
    control = router.invoke(public).response_metadata["routing"]["effective"].get("tracing")
    wait_for_all_tracers()
    print(json.dumps({"marks": marks, "control": control, "events": local.events}), flush=True)
""")


@pytest.fixture
def policy_file(tmp_path: Path, openai_fake: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOCAL_GPT_KEY", "sk-local-dummy")
    path = tmp_path / "traced.yaml"
    path.write_text(POLICY.format(base_url=openai_fake.base_url))
    return path


def test_environment_tracing_receives_no_private_prompt(policy_file: Path, tracer_sink: TracerSink,
                                                         openai_fake: FakeOpenAIServer):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "LANGCHAIN_"))}
    env.update(LANGSMITH_TRACING="true", LANGSMITH_ENDPOINT=tracer_sink.origin, LANGSMITH_API_KEY="ls-dummy-key",
               LOCAL_GPT_KEY="sk-local-dummy", NO_PROXY="*")
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(policy_file), PRIVATE, PUBLIC], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        assert line.strip() == "PRIVATE-DONE", proc.stderr.read() if proc.stderr else line
        private_uploads = tracer_sink.received()
        assert openai_fake.count() == 3  # the local model answered invoke, stream and ainvoke
        proc.stdin.write("\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    result = json.loads(out.strip().splitlines()[-1])
    assert PRIVATE.encode() not in private_uploads and ANSWER.encode() not in private_uploads
    assert result["marks"] == ["redacted"] * 3
    # Local callbacks still saw the router's runs (one chat model run per request, as for any chat model).
    assert result["events"].count("chat_model_start") == 3
    # Control: the same router, not private, is traced to the same endpoint.
    assert result["control"] is None
    assert PUBLIC.encode() in tracer_sink.received(), err


class Local(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_chat_model_start(self, *args: object, **kwargs: object) -> None:
        self.events.append("chat_model_start")


@pytest.mark.parametrize("local_only", [{"privacy": True}, {"offline": True}])
def test_a_tracer_passed_as_a_callback_is_dropped_for_a_private_request(policy_file: Path, tracer_sink: TracerSink,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        local_only: dict[str, bool]):
    for var in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    client = Client(api_url=tracer_sink.origin, api_key="ls-dummy-key", auto_batch_tracing=False)
    tracer = LangChainTracer(client=client, project_name="sec")
    router = PolicyRouter(policy=loads_policy(policy_file.read_text(), "traced.yaml", allow_env=ALLOW))
    local = Local()
    message = router.invoke(PRIVATE, config={"configurable": local_only, "callbacks": [tracer, local]})
    tracer.wait_for_futures()
    client.flush()
    assert message.response_metadata["routing"]["effective"]["tracing"] == "redacted"
    assert PRIVATE.encode() not in tracer_sink.received()
    assert local.events == ["chat_model_start"]  # the router's run (its child runs go to tracers only)
    # Control: the same tracer, not private, uploads the run.
    router.invoke(PUBLIC, config={"callbacks": [tracer]})
    tracer.wait_for_futures()
    client.flush()
    assert PUBLIC.encode() in tracer_sink.received()


@pytest.mark.parametrize("entry", ["invoke", "stream"])
def test_the_traced_run_names_the_answering_model(tracer_sink: TracerSink, monkeypatch: pytest.MonkeyPatch,
                                                  entry: str):
    """Under ``tracing_v2_enabled()`` the router's run starts as ``ls_model_name: missing`` (the
    first rung, not installed) and is uploaded, when it ends, as the model that answered."""
    from langchain_core.tracers.context import tracing_v2_enabled

    from tests.conftest import LOCAL_POLICY

    for var in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    text = LOCAL_POLICY.replace("  cascade: [gemma, gemma-strong]", "  cascade: [missing, gemma, gemma-strong]") \
        .replace("models:\n", "models:\n  missing:\n    provider: llamacpp\n    gguf: ''\n    local: true\n", 1)
    router = PolicyRouter(policy=loads_policy(text))
    client = Client(api_url=tracer_sink.origin, api_key="ls-dummy-key", auto_batch_tracing=False)
    with tracing_v2_enabled(project_name="names", client=client) as tracer:
        if entry == "invoke":
            final = router.invoke(PUBLIC).response_metadata["routing"]["final_model"]
        else:
            final = list(router.stream(PUBLIC))[-1].response_metadata["routing"]["final_model"]
    tracer.wait_for_futures()
    client.flush()
    assert final in ("gemma", "gemma-strong")
    router_runs = [body for body in _run_bodies(tracer_sink) if body.get("name") == "PolicyRouter"
                   or body.get("serialized", {}).get("name") == "PolicyRouter"]
    names = [b.get("extra", {}).get("metadata", {}).get("ls_model_name") for b in router_runs]
    assert names and names[-1] == final, names  # the last upload of the router's run


def _run_bodies(sink: TracerSink) -> list[dict]:
    bodies = []
    for request in sink.requests:
        try:
            body = json.loads(request.body)
        except ValueError:
            continue
        for item in body if isinstance(body, list) else body.get("post", []) + body.get("patch", []) or [body]:
            if isinstance(item, dict):
                bodies.append(item)
    return bodies


class Remote(BaseCallbackHandler):
    """A handler that says it sends runs off this machine; records what it would have sent."""

    router_remote_tracer = True

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_chat_model_start(self, serialized: object, messages: object, **kwargs: object) -> None:
        self.seen.append(str(messages))

    def on_llm_end(self, response: object, **kwargs: object) -> None:
        self.seen.append(str(response))


RULED = POLICY + """\
rules:
  - when: {{metadata: {{data_class: pii}}}}
    set: {{privacy: true}}
"""


@pytest.mark.parametrize("entry", ["generate", "agenerate"])
def test_generate_applies_rules_on_its_metadata_and_drops_remote_tracers(openai_fake: FakeOpenAIServer,
                                                                         policy_file: Path, entry: str):
    """``generate``/``agenerate`` (LangChain's batch API, used by legacy chains) are entered like
    ``invoke``: a rule on their ``metadata`` turns privacy on and remote tracers are dropped.
    On main they ran with an empty config: the rule never matched and the tracer got the prompt."""
    import asyncio

    from langchain_core.messages import HumanMessage

    router = PolicyRouter(policy=loads_policy(RULED.format(base_url=openai_fake.base_url), "ruled.yaml", allow_env=ALLOW))
    remote, local = Remote(), Local()
    prompts = [[HumanMessage(PRIVATE)], [HumanMessage(PRIVATE + " (second prompt)")]]
    kwargs: dict = {"callbacks": [remote, local], "metadata": {"data_class": "pii"}}
    result = (router.generate(prompts, **kwargs) if entry == "generate"
              else asyncio.run(router.agenerate(prompts, **kwargs)))
    for [generation] in result.generations:
        effective = generation.message.response_metadata["routing"]["effective"]
        assert effective["privacy"] is True and effective["tracing"] == "redacted"
    assert remote.seen == [] and local.events == ["chat_model_start"] * 2
    # Control: without the metadata the same call is neither private nor hidden from the tracer.
    router.generate([[HumanMessage(PUBLIC)]], callbacks=[remote])
    assert any(PUBLIC in seen for seen in remote.seen)


@pytest.mark.parametrize("entry", ["invoke", "stream", "generate"])
def test_a_remote_tracer_among_the_routers_own_callbacks_is_dropped_for_a_private_request(
        openai_fake: FakeOpenAIServer, policy_file: Path, entry: str):
    """``PolicyRouter(callbacks=[...])``: LangChain adds those handlers to every run of the router;
    a private request's runs reach none that is remote. On main the tracer got the prompt."""
    from langchain_core.messages import HumanMessage

    remote, local = Remote(), Local()
    router = PolicyRouter(policy=loads_policy(RULED.format(base_url=openai_fake.base_url), "ruled.yaml", allow_env=ALLOW),
                          callbacks=[remote, local])
    pii = {"data_class": "pii"}
    if entry == "invoke":
        message = router.invoke(PRIVATE, config={"metadata": pii})
    elif entry == "stream":
        message = list(router.stream(PRIVATE, config={"metadata": pii}))[-1]
    else:
        message = router.generate([[HumanMessage(PRIVATE)]], metadata=pii).generations[0][0].message
    assert message.response_metadata["routing"]["effective"]["tracing"] == "redacted"
    assert remote.seen == [] and local.events == ["chat_model_start"]
    assert router.callbacks == [remote, local]  # the router itself is unchanged
    router.invoke(PUBLIC)  # control: not private, traced
    assert any(PUBLIC in seen for seen in remote.seen)


def test_a_reloaded_policy_that_turns_privacy_on_covers_the_very_next_requests_tracing(policy_file: Path):
    """With ``from_yaml(reload=True)``, the first request after the file turns privacy on runs
    private *and* is hidden from remote tracers (on main, tracing was decided on the old policy)."""
    import time

    router = PolicyRouter.from_yaml(policy_file, reload=True, allow_env=ALLOW)
    assert router.invoke(PUBLIC).response_metadata["routing"]["effective"]["privacy"] is False
    policy_file.write_text(policy_file.read_text().replace("policy:\n", "policy:\n  privacy: true\n"))
    later = time.time() + 5
    os.utime(policy_file, (later, later))
    remote = Remote()
    message = router.invoke(PRIVATE, config={"callbacks": [remote]})
    effective = message.response_metadata["routing"]["effective"]
    assert effective["privacy"] is True and effective["tracing"] == "redacted"
    assert remote.seen == []
