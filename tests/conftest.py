"""Shared fixtures. Outbound network is limited to loopback for the whole suite."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address: object) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0] if isinstance(address, tuple) else None
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except (TypeError, ValueError):
        return False


class OutboundNetworkBlockedError(RuntimeError):
    pass


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _is_loopback(address):
        raise OutboundNetworkBlockedError(f"test tried to connect to {address!r}; only loopback is allowed")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if not _is_loopback(address):
        raise OutboundNetworkBlockedError(f"test tried to connect to {address!r}; only loopback is allowed")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _loopback_only():
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def _state_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state-home")


@pytest.fixture(autouse=True)
def _own_state_dir(monkeypatch: pytest.MonkeyPatch, _state_home: Path) -> None:
    """Every paid call is recorded in the default ledger (the user state dir's SQLite) unless its
    policy names another: the suite's go to a temporary one, never the machine's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(_state_home))


@pytest.fixture(autouse=True)
def _no_cloud_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests start with no cloud credentials or endpoints; a test that needs them sets them. The
    Hugging Face cache is an empty folder (a TinyLlama the user pulled must not change a test)."""
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL",
                "TINYLLAMA_GGUF", "ROUTER_POLICY", "HF_HUB_CACHE", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.getbasetemp() / "hf-home"))


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    from router.providers.llamacpp import resolve_gguf

    return resolve_gguf("bundled:gemma-3-270m")


LOCAL_POLICY = """
version: 1
name: local-test
models:
  gemma:
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    chat_format: qa
    tier: basic
    local: true
    context_window: 2048
  gemma-strong:
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    chat_format: qa
    tier: standard
    local: true
    context_window: 2048
    price: {input: 1.0, output: 2.0}
policy:
  cost_ceiling: 0.05
  max_output_tokens: 16
  cascade: [gemma, gemma-strong]
  confidence:
    - check: logprob
      min_mean: -3.0
    - check: min_length
      chars: 1
"""


@pytest.fixture
def local_policy_text() -> str:
    return LOCAL_POLICY


@pytest.fixture(autouse=True)
def _fresh_circuit_breakers():
    """Circuit breakers remember failures for the whole process: each test starts closed."""
    from router.providers.breaker import reset_process_breakers

    reset_process_breakers()
    yield
    reset_process_breakers()
