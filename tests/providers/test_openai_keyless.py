"""``provider: openai`` keyless on loopback: a vLLM / llama.cpp / LM Studio server on this machine."""

from __future__ import annotations

import textwrap

import pytest

from router import PolicyRouter
from router.errors import RoutingError
from tests.spend.billing_server import BillingServer


@pytest.fixture
def served():
    with BillingServer() as server:
        yield server


def policy(base_url: str) -> str:
    return textwrap.dedent(f"""\
        version: 1
        name: keyless
        policy: {{cascade: [vllm], privacy: true}}
        models:
          vllm:
            provider: openai
            model: served-model
            base_url: {base_url}
            local: true
        """)


def test_a_loopback_server_needs_no_key(served, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    answer = PolicyRouter.from_string(policy(served.base_url)).invoke("What is the capital of France?")
    assert answer.content == "Paris"
    assert served.count() == 1


def test_a_remote_server_still_needs_a_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    text = policy("https://api.example/v1").replace("    local: true\n", "    price: {input: 1, output: 1}\n")
    text = text.replace("privacy: true", "privacy: false")
    with pytest.raises(RoutingError, match="OPENAI_API_KEY not set"):
        PolicyRouter.from_string(text, allow_env=["OPENAI_API_KEY"]).invoke("q")
