"""Providers added by an installed package (entry-point group ``policy_router.providers``).

A tiny distribution is written into ``tmp_path`` (a module plus its ``.dist-info`` with
``entry_points.txt``, what ``pip install`` leaves) and put on ``sys.path``: importlib.metadata
finds it as it finds any installed package. One provider declares nothing but ``build``: it must
be treated as the safe default (network, priced, byte-bounded, only an explicit stop complete,
no failure proven unsent). One declares what it is, and is taken at its word.
"""

from __future__ import annotations

import json
import sys
import textwrap

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage

from router import PolicyError, PolicyRouter, loads_policy
from router.errors import ProviderError, RoutingError
from router.providers import registry
from router.routing.charges import provably_unbilled
from router.routing.completeness import completeness

PLUGIN = '''
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult


class Canned(BaseChatModel):
    reason: str = "done"

    @property
    def _llm_type(self):
        return "canned"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        message = AIMessage("canned answer", response_metadata={"finish_reason": self.reason},
                            usage_metadata={"input_tokens": 3, "output_tokens": 2, "total_tokens": 5})
        return ChatResult(generations=[ChatGeneration(message=message)])


class Bare:
    """Declares nothing but how to build a model."""

    def build(self, name, spec):
        return Canned()


class Declared:
    name = "declared"
    network = False
    local_rule = "any"
    required_fields = ()
    finish_reasons = {"done": "stop"}
    unsent_exceptions = frozenset({"ConnectError"})

    def count_tokens(self, spec, messages):
        return 7

    def tool_tokens(self, spec, tools):
        return 0

    def build(self, name, spec):
        return Canned()
'''


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A distribution ``fake-providers`` with providers ``bare`` and ``declared``."""
    (tmp_path / "fake_providers.py").write_text(PLUGIN)
    info = tmp_path / "fake_providers-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-providers\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [policy_router.providers]
        bare = fake_providers:Bare
        declared = fake_providers:Declared
        broken = fake_providers:Missing
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.refresh()
    yield
    monkeypatch.delitem(sys.modules, "fake_providers", raising=False)
    monkeypatch.undo()
    registry.refresh()


def policy(provider: str, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        version: 1
        name: plugin
        policy:
          cascade: [m]
          on_exhausted: raise
        models:
          m:
            provider: {provider}
            model: some-model
        """) + extra


def test_installed_providers_are_registered(installed):
    assert {"bare", "declared", "broken"} <= set(registry.registered_providers())


def test_an_undeclared_provider_is_a_network_provider_that_needs_a_price(installed):
    with pytest.raises(PolicyError, match="needs price") as info:
        loads_policy(policy("bare"), "p.yaml")
    assert info.value.line == 8 and info.value.key == "models.m.price"
    loads_policy(policy("bare", "    price: {input: 1, output: 2}\n"), "p.yaml")


def test_an_undeclared_provider_is_local_only_on_loopback(installed):
    with pytest.raises(PolicyError, match="loopback") as info:
        loads_policy(policy("bare", "    local: true\n    base_url: https://models.example/v1\n"), "p.yaml")
    assert info.value.key == "models.m.local"
    loads_policy(policy("bare", "    local: true\n    base_url: http://127.0.0.1:9/v1\n"), "p.yaml")


def test_an_undeclared_provider_is_byte_bounded_tools_included(installed):
    router = PolicyRouter.from_string(policy("bare", "    price: {input: 1, output: 2}\n"))
    text = "日本語 text"
    assert router.catalog.count_tokens("m", [HumanMessage(text)]) >= len(text.encode())
    tool = {"type": "function", "function": {"name": "f", "description": "x" * 500, "parameters": {}}}
    with_tools = router.catalog.count_tokens("m", [HumanMessage(text)], [tool])
    assert with_tools - router.catalog.count_tokens("m", [HumanMessage(text)]) > 500


def test_an_undeclared_provider_completes_only_on_an_explicit_stop(installed):
    adapter = registry.get_adapter("bare")
    for reason in ("done", "end_turn", "eos", "model_length"):
        ended = completeness(AIMessage("x", response_metadata={"finish_reason": reason}),
                             reasons=adapter.finish_reasons, expects_finish_reason=adapter.reports_finish_reason)
        assert ended.problem is not None, reason
    assert completeness(AIMessage("x"), reasons=adapter.finish_reasons).truncated
    assert completeness(AIMessage("x", response_metadata={"finish_reason": "stop"}),
                        reasons=adapter.finish_reasons).problem is None


def test_an_undeclared_providers_answer_without_a_stop_is_not_accepted(installed):
    router = PolicyRouter.from_string(policy("bare", "    price: {input: 1, output: 2}\n").replace("raise", "best"))
    with pytest.raises(RoutingError) as info:  # nothing complete: failed, never the unfinished answer
        router.invoke("hello")
    routing = info.value.decision.to_dict()
    attempt = routing["attempts"][0]
    assert (attempt["accepted"], attempt["truncated"], routing["status"]) == (False, True, "failed")
    assert "finish_reason 'done' unknown" in attempt["checks"][0]["detail"]


def test_an_undeclared_providers_failure_is_never_proven_unsent(installed):
    adapter = registry.get_adapter("bare")
    error = ProviderError("refused", provider="bare", model="m", kind="connection")
    exc = httpx.ConnectError("refused")
    assert not provably_unbilled(error, exc, frozenset(adapter.unsent_exceptions))
    assert provably_unbilled(error, exc, frozenset(registry.get_adapter("declared").unsent_exceptions))


def test_a_declaring_provider_is_taken_at_its_word(installed):
    router = PolicyRouter.from_string(policy("declared"))  # no price: it declares network = False
    assert router.catalog.count_tokens("m", [HumanMessage("a long question " * 50)]) == 7
    answer = router.invoke("hello")
    assert answer.content == "canned answer"
    assert answer.response_metadata["routing"]["attempts"][0]["model"] == "m"


def test_a_provider_that_cannot_load_is_a_located_error(installed):
    with pytest.raises(PolicyError, match="cannot load the installed provider 'broken'") as info:
        loads_policy(policy("broken"), "p.yaml")
    assert info.value.key == "models.m.provider"


def test_an_unknown_provider_gets_a_did_you_mean():
    with pytest.raises(PolicyError, match="unknown provider") as info:
        loads_policy(policy("openia", "    price: {input: 1, output: 2}\n"), "p.yaml")
    assert info.value.suggestion == "openai" and info.value.line == 8


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.text(max_size=200), min_size=1, max_size=4),
       description=st.text(max_size=200))
def test_the_default_bound_is_never_below_the_bytes_sent(texts, description):
    """The undeclared default counts at least one token per UTF-8 byte of every message and tool."""
    from router.providers.base import BaseAdapter

    adapter = BaseAdapter()
    messages = [HumanMessage(t) for t in texts if "\ud800" not in t]
    if not messages:
        return
    tools = [{"type": "function", "function": {"name": "f", "description": description, "parameters": {}}}]
    sent = sum(len(m.content.encode("utf-8", "surrogatepass")) for m in messages)
    assert adapter.count_tokens(None, messages) >= sent
    assert adapter.tool_tokens(None, tools) >= len(json.dumps(tools, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def test_local_true_accepts_a_unix_socket(installed):
    loads_policy(policy("bare", "    local: true\n    base_url: unix:/run/models.sock\n"), "p.yaml")
