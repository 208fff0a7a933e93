"""Fixtures for the attack tests: loopback servers that count what reaches them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from security_servers import FakeOpenAIServer, TracerSink
from servers.gemini import GeminiTestServer

OPENAI_KEY = "sk-proj-Zz9SECRETopenaiKEY0123456789"
GEMINI_KEY = "AIzaSyD-SECRETgeminiKEY-0123456789"


@pytest.fixture(scope="session")
def gemini_session() -> Iterator[GeminiTestServer]:
    with GeminiTestServer(api_key=GEMINI_KEY) as server:
        yield server


@pytest.fixture
def gemini(gemini_session: GeminiTestServer) -> Iterator[GeminiTestServer]:
    gemini_session.reset()
    yield gemini_session
    gemini_session.reset()


@pytest.fixture(scope="session")
def openai_session() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def openai_fake(openai_session: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    openai_session.reset()
    openai_session.echo_key = False
    yield openai_session
    openai_session.reset()
    openai_session.echo_key = False


@pytest.fixture
def network_env(monkeypatch: pytest.MonkeyPatch, gemini: GeminiTestServer, openai_fake: FakeOpenAIServer) -> None:
    """Credentials and endpoints of both network providers, pointed at the loopback servers."""
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_fake.base_url)
    monkeypatch.setenv("GOOGLE_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", gemini.base_url)
    for var in ("GEMINI_API_KEY", "GOOGLE_GENAI_API_VERSION", "GOOGLE_GENAI_USE_VERTEXAI", "LANGSMITH_GATEWAY",
                "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def tracer_sink() -> Iterator[TracerSink]:
    with TracerSink() as sink:
        yield sink
