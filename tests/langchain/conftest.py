"""Fixtures for the LangChain-facing tests: the offline policy, and a cascade that ends at
llama-cpp-python's OpenAI-compatible server (tests/servers/openai_llama.py) on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.openai_llama import LlamaOpenAIServer

OPENAI_KEY = "sk-test-llama-key-c7d1"
KEY_VAR = "ROUTER_TEST_OPENAI_KEY"


def served_policy(base_url: str, *, max_output_tokens: int = 24) -> dict[str, Any]:
    """A cascade of the bundled local model, then ``gpt-3.5-turbo`` served by llama.cpp's
    OpenAI-compatible server (the same GGUF) at ``base_url``."""
    return {
        "version": 1, "name": "served",
        "models": {
            "gemma-270m": {"provider": "llamacpp", "gguf": "bundled:gemma-3-270m", "chat_format": "qa",
                           "tier": "basic", "local": True, "price": {"input": 0, "output": 0},
                           "context_window": 8192},
            "gpt-3.5-turbo": {"provider": "openai", "model": "gpt-3.5-turbo", "base_url": base_url,
                              "api_key_env": KEY_VAR, "tier": "basic",
                              "price": {"input": 0.5, "output": 1.5}, "context_window": 16385},
        },
        "policy": {"cost_ceiling": 0.05, "quality_tier": "basic", "max_output_tokens": max_output_tokens,
                   "cascade": ["gemma-270m", "gpt-3.5-turbo"],
                   "confidence": [{"check": "min_length", "chars": 2}], "on_exhausted": "best"},
    }


@pytest.fixture(scope="session")
def served_llama(gemma_path: Path) -> Iterator[LlamaOpenAIServer]:
    server = LlamaOpenAIServer(gemma_path, api_key=OPENAI_KEY)  # type: ignore[arg-type]
    server.start()
    server.warm_up()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def served_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VAR, OPENAI_KEY)
