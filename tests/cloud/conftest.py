"""Session fixtures for the cloud-protocol tests: a Gemini REST test server and llama-cpp-python's
OpenAI-compatible server (serving the bundled GGUF as ``gpt-3.5-turbo``), both on 127.0.0.1.

``gemini_server`` / ``openai_server`` hand each test the shared server with its request log,
faults and replies reset, so a test may assert exact request counts.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from servers.gemini import GeminiTestServer


@pytest.fixture(scope="session")
def gemini_session() -> Iterator[GeminiTestServer]:
    with GeminiTestServer(api_key="test-gemini-key-5f2a") as server:
        yield server


@pytest.fixture
def gemini_server(gemini_session: GeminiTestServer) -> Iterator[GeminiTestServer]:
    gemini_session.reset()
    yield gemini_session
    gemini_session.reset()
