"""Fixtures for the spend tests: a real redis-server on a free loopback port (temp dir, no
persistence) and the Gemini REST test server. Shared policy text: spend_support.py."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from money_server import MoneyServer, Reply
from servers.gemini import GeminiTestServer
from spend_support import GEMINI_KEY, full_length_reply


@pytest.fixture(scope="session")
def gemini_spend_session() -> Iterator[GeminiTestServer]:
    with GeminiTestServer(api_key=GEMINI_KEY) as server:
        yield server


@pytest.fixture
def gemini(gemini_spend_session: GeminiTestServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[GeminiTestServer]:
    gemini_spend_session.reset()
    gemini_spend_session.reply(full_length_reply)
    monkeypatch.setenv("GOOGLE_API_KEY", GEMINI_KEY)
    yield gemini_spend_session
    gemini_spend_session.reset()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server of our own on 127.0.0.1, no persistence; stopped after the session."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (Debian: apt-get install redis-server); "
                    ".ci/run installs it")
    workdir: Path = tmp_path_factory.mktemp("redis")
    port = _free_port()
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(workdir), "--protected-mode", "yes"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
    client.close()
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def redis_url(redis_session: str) -> str:
    """The session's Redis, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_session)
    client.flushdb()
    client.close()
    return redis_session


@pytest.fixture(scope="module")
def money_session() -> Iterator[MoneyServer]:
    """A loopback OpenAI-protocol server that replies as each test scripts it (tests/spend/money_server.py)."""
    with MoneyServer() as server:
        yield server  # type: ignore[misc]


@pytest.fixture
def server(money_session: MoneyServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MoneyServer]:
    money_session.reset()
    money_session.script(Reply())
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    yield money_session
