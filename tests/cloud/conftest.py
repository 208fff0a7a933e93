"""Session fixtures for the cloud-protocol tests: a Gemini REST test server and llama-cpp-python's
OpenAI-compatible server (serving the bundled GGUF as ``gpt-3.5-turbo``), both on 127.0.0.1.

``gemini_server`` / ``openai_server`` hand each test the shared server with its request log,
faults and replies reset, so a test may assert exact request counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servers.gemini import GeminiTestServer
from servers.openai_llama import LlamaOpenAIServer


@pytest.fixture(scope="session")
def gemini_session() -> Iterator[GeminiTestServer]:
    with GeminiTestServer(api_key="test-gemini-key-5f2a") as server:
        yield server


@pytest.fixture
def gemini_server(gemini_session: GeminiTestServer) -> Iterator[GeminiTestServer]:
    gemini_session.reset()
    yield gemini_session
    gemini_session.reset()


def _start_llama(gemma_path: Path, **kwargs: object) -> LlamaOpenAIServer:
    server = LlamaOpenAIServer(gemma_path, api_key="sk-test-llama-key-9c1e", **kwargs)  # type: ignore[arg-type]
    server.start()
    server.warm_up()
    return server


@pytest.fixture(scope="session")
def openai_session(gemma_path: Path) -> Iterator[LlamaOpenAIServer]:
    """llama.cpp's OpenAI-compatible server as ``gpt-3.5-turbo`` (no logprobs: fast)."""
    server = _start_llama(gemma_path)
    yield server
    server.stop()


@pytest.fixture
def openai_server(openai_session: LlamaOpenAIServer) -> Iterator[LlamaOpenAIServer]:
    openai_session.reset()
    yield openai_session
    openai_session.reset()


@pytest.fixture(scope="session")
def openai_logprobs_server(gemma_path: Path) -> Iterator[LlamaOpenAIServer]:
    """The same, started with ``logits_all=True`` so it returns logprobs (slow per token: keep
    ``max_tokens`` small). Started only by the tests that ask for it."""
    server = _start_llama(gemma_path, logits_all=True)
    yield server
    server.stop()


@pytest.fixture
def cloud_env(monkeypatch: pytest.MonkeyPatch, gemini_server: GeminiTestServer,
              openai_server: LlamaOpenAIServer) -> None:
    """Point every network model at the local servers through the standard variables."""
    monkeypatch.setenv("OPENAI_API_KEY", openai_server.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("GOOGLE_API_KEY", gemini_server.api_key)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", gemini_server.base_url)
    for var in ("GEMINI_API_KEY", "GOOGLE_GENAI_API_VERSION", "GOOGLE_GENAI_USE_VERTEXAI", "LANGSMITH_GATEWAY"):
        monkeypatch.delenv(var, raising=False)
