"""``router pull`` and ``gguf: hf:...`` (issue 26, point 6), against a loopback server speaking
the Hugging Face Hub's resolve protocol and serving the bundled SmolLM2 GGUF: the real
``huggingface_hub`` client downloads it, the router verifies its sha256 and answers with it; a
request never downloads."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers.hub import HubTestServer

from router import PolicyRouter, loads_policy
from router.cli.main import main
from router.errors import RoutingError
from router.providers.hub import (
    ALIASES,
    GgufNotDownloadedError,
    HubChecksumError,
    HubError,
    HubRef,
    cached_gguf,
    hub_cache,
    make_ref,
    parse_ref,
    pull,
)
from router.providers.llama_runtime import resolve_gguf

REPO, FILE = "acme/SmolLM2-135M-Instruct-GGUF", "SmolLM2-135M-Instruct.Q4_1.gguf"
REF = make_ref(REPO, FILE)
TINY = ALIASES["tinyllama"]
POLICY = f"""
version: 1
name: pulled
models:
  smol:
    provider: llamacpp
    gguf: hf:{REPO}/{FILE}
    chat_format: auto
    local: true
    context_window: 2048
policy:
  max_output_tokens: 48
  cascade: [smol]
  confidence: [{{check: logprob, min_mean: -99}}]
"""
QUESTION = "What is the capital of France? Answer in one word."


@pytest.fixture(scope="module")
def hub() -> HubTestServer:
    smol = resolve_gguf("bundled:smollm2-135m")
    with HubTestServer({REPO: {FILE: smol}, TINY.repo_id: {TINY.filename: smol}}) as server:
        yield server


@pytest.fixture(autouse=True)
def hf_env(hub: HubTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN", "TINYLLAMA_GGUF"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", hub.origin)
    hub.reset()
    return tmp_path / "hf"


def blobs() -> list[Path]:
    return [p for p in hub_cache().rglob("blobs/*") if p.is_file()]


def test_pull_verifies_the_file_and_a_policy_answers_with_it(hub: HubTestServer):
    path = pull(REF, progress=False)
    assert path == cached_gguf(f"hf:{REPO}/{FILE}")
    resolves = [r.method for r in hub.requests if "/resolve/" in r.path]
    assert resolves == ["HEAD", "HEAD", "GET"]  # ours (for the sha256), the client's, the file
    hub.reset()
    router = PolicyRouter(policy=loads_policy(POLICY, "pulled.yaml"))
    message = router.invoke(QUESTION)
    assert str(message.content).strip()
    assert message.response_metadata["routing"]["final_model"] == "smol"
    assert hub.count() == 0  # answering reads the cache only


def test_router_pull_command_tinyllama_alias_and_the_default_policy(hub: HubTestServer,
                                                                     capsys: pytest.CaptureFixture[str]):
    root = Path(__file__).resolve().parents[1]
    default = (root / "policies" / "default.yaml").read_text()
    excluded = {e.model: e.reason for e in PolicyRouter(policy=loads_policy(default)).explain(QUESTION).excluded}
    assert excluded["tinyllama"] == "not downloaded: run `router pull tinyllama`"
    assert main(["pull", "tinyllama", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"gguf: hf:{TINY.repo_id}/{TINY.filename}" in out
    assert "tinyllama" in PolicyRouter(policy=loads_policy(default)).explain(QUESTION).candidates
    assert main(["pull", TINY.repo_id, TINY.filename, "--quiet"]) == 0  # already there: verified again, no GET
    assert len(hub.gets()) == 1


def test_a_corrupted_download_is_an_error_and_the_file_is_not_used(hub: HubTestServer):
    hub.serve_fault("corrupt")
    with pytest.raises(HubChecksumError, match="sha256 mismatch"):
        pull(REF, progress=False)
    assert blobs() == []  # removed
    with pytest.raises(GgufNotDownloadedError, match="not downloaded"):
        cached_gguf(REF)
    assert pull(REF, progress=False).is_file()  # a clean retry works


def test_an_interrupted_download_resumes_with_a_range_request(hub: HubTestServer):
    hub.serve_fault("drop")
    path = pull(REF, progress=False)
    first, second = hub.gets()
    assert "range" not in first.headers
    resumed_at = int(second.headers["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at < path.stat().st_size
    assert cached_gguf(REF) == path


def test_a_request_never_downloads(hub: HubTestServer):
    router = PolicyRouter(policy=loads_policy(POLICY, "pulled.yaml"))
    decision = router.explain(QUESTION)
    assert [(e.model, e.reason) for e in decision.excluded] == [
        ("smol", f"not downloaded: run `router pull {REPO} {FILE}`")]
    with pytest.raises(RoutingError, match="not downloaded: run `router pull"):
        router.invoke(QUESTION)
    assert hub.count() == 0


def test_a_file_changed_after_verification_is_not_used(hub: HubTestServer):
    path = pull(REF, progress=False)
    blob = path.resolve()
    blob.chmod(0o644)
    with open(blob, "r+b") as f:
        f.seek(1000)
        f.write(b"\x00")
    with pytest.raises(GgufNotDownloadedError, match="not verified"):
        cached_gguf(REF)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_router_pull_unreachable_or_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    assert main(["pull", "tinyllama", "--quiet"]) == 1
    assert "error: cannot download hf:TheBloke/" in capsys.readouterr().err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["pull", REPO, FILE, "--quiet"]) == 1
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert main(["pull", "nosuchalias"]) == 1
    assert main(["pull", "../x", FILE]) == 1
    assert blobs() == []


def test_a_missing_file_on_the_hub_is_a_clear_error(hub: HubTestServer):
    with pytest.raises(HubError, match="cannot download"):
        pull(make_ref(REPO, "nope.gguf"), progress=False)


def test_reference_syntax():
    assert parse_ref(f"hf:{REPO}/{FILE}") == HubRef(REPO, FILE, "main")
    assert parse_ref(f"hf:{REPO}@v1.0/sub/dir/{FILE}") == HubRef(REPO, f"sub/dir/{FILE}", "v1.0")
    assert parse_ref(f"hf:{REPO}@refs%2Fpr%2F1/{FILE}").revision == "refs/pr/1"
    for bad in ("hf:acme/x", "hf:acme", "hf:acme/x/../../etc/passwd", "hf:acme/x//a.gguf", "hf:../x/a.gguf",
                "hf:acme/x@/a.gguf" + "/..", "hf:acme/x/a\\b.gguf"):
        with pytest.raises(ValueError):
            parse_ref(bad)
    with pytest.raises(GgufNotDownloadedError.__mro__[1]):  # GgufUnavailableError: excluded, not a crash
        resolve_gguf("hf:nonsense")


_segment = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,12}", fullmatch=True)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the autouse env fixture; unused here
@given(owner=_segment, name=_segment, path=st.lists(_segment, min_size=1, max_size=3),
       revision=st.one_of(st.just("main"), _segment, st.builds("refs/pr/{}".format, st.integers(0, 99))))
def test_a_reference_round_trips(owner: str, name: str, path: list[str], revision: str):
    ref = make_ref(f"{owner}/{name}", "/".join(path), revision)
    assert parse_ref(str(ref)) == ref


def test_router_pull_in_a_fresh_process_sends_only_resolve_requests(hub: HubTestServer, hf_env: Path):
    """The CLI as a user runs it: huggingface_hub reads HF_ENDPOINT/HF_HOME at import, and its
    telemetry (``/api/agent-harnesses``, agent in the user agent) is off unless the user asks."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_TELEMETRY"}
    done = subprocess.run([sys.executable, "-m", "router.cli", "pull", REPO, FILE, "--quiet"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert f"gguf: hf:{REPO}/{FILE}" in done.stdout
    assert {r.path.split("/resolve/")[0] for r in hub.requests} == {f"/{REPO}"}
    assert cached_gguf(REF).is_file()


def test_an_hf_home_behind_a_symlink_still_finds_the_verified_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    real = tmp_path / "real-hf"
    real.mkdir()
    (tmp_path / "linked-hf").symlink_to(real)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "linked-hf"))
    path = pull(REF, progress=False)
    assert cached_gguf(REF) == path
