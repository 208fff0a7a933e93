"""Privacy and offline fail closed, whatever turns them on and however the router is called.

For every shipped policy (``policies/*.yaml``) × {privacy (or offline) on via the policy file,
via a rule, via ``configurable``, via the CLI's ``--set``} × {invoke, stream, batch, ainvoke}
× {the first rung errors, the first rung fails its check}, both cloud test servers must count
**zero** requests, though every network model of the policy points at them (keys and base URLs
in the standard variables) so that a leak would be counted. Controls without privacy show the
same setup does reach the servers.

How the first rung is made to fail, cheaply and for real:

- *fails its check*: a per-request ``confidence`` override with a regex no answer matches, and
  ``max_output_tokens: 2`` (the bundled model answers in a few milliseconds);
- *errors*: ``TINYLLAMA_GGUF`` (the shipped policies' first rung) names a GGUF that llama.cpp
  cannot load when the call is made: a real load failure inside the call. The file is valid
  while the router reads its vocabulary and swapped for a corrupt one before the call, because
  a GGUF corrupt from the start fails earlier, while planning (reported to the lead, not hidden).
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import re
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from servers.gemini import GeminiTestServer
from servers.openai_llama import LlamaOpenAIServer

from router import PolicyRouter, RoutingError, loads_policy
from router.cli.main import main as cli_main
from router.cli.main import parse_sets
from router.policy.overrides import policy_overrides
from router.policy.policy_file import Policy

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "policies").glob("*.yaml"))
SOURCES = ["policy", "rule", "configurable", "--set"]
MODES = ["invoke", "stream", "batch", "ainvoke"]
FAILURES = ["first-rung-errors", "first-rung-fails-check"]
QUESTIONS = ["What is the capital of France?", "What is the capital of Italy?"]
FAIL_SETS = ["max_output_tokens=1", "confidence=[{check: regex, pattern: '^NEVER MATCHES$'}]"]
OFFLINE_RULE = """  - name: air-gapped
    when: {metadata: {network: none}}
    set: {offline: true}
"""
PII_RULE = """  - name: pii-stays-local
    when: {metadata: {data_class: pii}}
    set: {privacy: true}
"""


@pytest.fixture(scope="module")
def broken_tinyllama(tmp_path_factory: pytest.TempPathFactory, gemma_path: Path) -> Path:
    """A GGUF path whose vocabulary the router has read, now pointing at a corrupt file."""
    folder = tmp_path_factory.mktemp("broken-gguf")
    corrupt = folder / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + os.urandom(4096))
    link = folder / "tinyllama.gguf"
    link.symlink_to(gemma_path)
    text = (ROOT / "policies" / "default.yaml").read_text()
    router = PolicyRouter(policy=loads_policy(text, "default.yaml", environ={**os.environ, "TINYLLAMA_GGUF": str(link)}))
    assert "tinyllama" in router.explain(QUESTIONS[0]).candidates  # vocabulary read while valid
    link.unlink()
    link.symlink_to(corrupt)
    return link


def _rules_header(text: str) -> str:
    return text if re.search(r"^rules:", text, re.MULTILINE) else text.rstrip("\n") + "\nrules:\n"


@functools.cache
def _policy_text(path: Path, switch: str, source: str) -> str:
    """The shipped file, with ``switch`` turned on in the file itself (``policy``) or a rule
    that turns it on (``rule``: the shipped ``data_class: pii`` rule for privacy when there is
    one). Local llama.cpp models get ``n_threads: 1``: on a busy 2-core machine llama.cpp's
    thread barrier makes a 2-thread call ~5x slower; it changes nothing about where calls go."""
    text = path.read_text().replace("    provider: llamacpp\n", "    provider: llamacpp\n    n_threads: 1\n")
    if source == "policy":
        pattern = re.compile(rf"^  {switch}: .*$", re.MULTILINE)
        text = pattern.sub(f"  {switch}: true", text) if pattern.search(text) else \
            re.sub(r"^policy:\n", f"policy:\n  {switch}: true\n", text, count=1, flags=re.MULTILINE)
    if source == "rule":
        policy = loads_policy(text, str(path), environ={})
        shipped = any(r.when.metadata == {"data_class": "pii"} and r.set_.get("privacy") is True
                      for r in policy.rules)
        if switch == "offline" or not shipped:
            text = _rules_header(text).rstrip("\n") + "\n" + (OFFLINE_RULE if switch == "offline" else PII_RULE)
    return text


@functools.cache
def _load(path: Path, switch: str, source: str, tinyllama: str) -> Policy:
    text = _policy_text(path, switch, source)
    return loads_policy(text, str(path), environ={**os.environ, "TINYLLAMA_GGUF": tinyllama})


def _config(switch: str, source: str) -> dict[str, Any]:
    """The request's config; ``--set`` values go through the CLI's own parsing."""
    sets = [*FAIL_SETS, f"{switch}=true"] if source == "--set" else FAIL_SETS
    configurable = policy_overrides(parse_sets(sets), strict=True, origin="--set")
    if source == "configurable":
        configurable[switch] = True
    metadata = {}
    if source == "rule":
        metadata = {"data_class": "pii"} if switch == "privacy" else {"network": "none"}
    return {"configurable": configurable, "metadata": metadata}


def _decisions(router: PolicyRouter, mode: str, config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Run the request; yield each decision record (from the answer or the RoutingError)."""
    try:
        if mode == "invoke":
            yield router.invoke(QUESTIONS[0], config=config).response_metadata["routing"]
        elif mode == "stream":
            yield list(router.stream(QUESTIONS[0], config=config))[-1].response_metadata["routing"]
        elif mode == "batch":
            for result in router.batch(QUESTIONS, config=config, return_exceptions=True):
                if isinstance(result, RoutingError):
                    yield result.decision.to_dict()
                else:
                    assert not isinstance(result, Exception), result
                    yield result.response_metadata["routing"]
        else:
            yield asyncio.run(router.ainvoke(QUESTIONS[0], config=config)).response_metadata["routing"]
    except RoutingError as err:
        yield err.decision.to_dict()


def _cli_decision(policy_file: Path, switch: str) -> dict[str, Any]:
    argv = ["ask", QUESTIONS[0], "--policy", str(policy_file), "--json", "--set", f"{switch}=true"]
    for item in FAIL_SETS:
        argv += ["--set", item]
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli_main(argv)
    printed = json.loads(out.getvalue())
    assert code == {"accepted": 0, "exhausted": 3}.get(printed["routing"]["status"], 2)
    return printed["routing"]


def _assert_fail_closed(decision: dict[str, Any], switch: str, failure: str, policy: Policy) -> None:
    assert decision["effective"][switch] is True
    network = {name for name, spec in policy.models.items() if not spec.local}
    assert not network & {a["model"] for a in decision["attempts"]}
    reasons = {e["model"]: e["reason"] for e in decision["excluded"]}
    why = "privacy" if decision["effective"]["privacy"] else "offline"  # privacy is named first
    assert all(reasons[name] == f"not local: {why}" for name in network)
    if decision["candidates"]:
        first = decision["attempts"][0]
        assert first["accepted"] is False
        if failure == "first-rung-errors" and "tinyllama" in policy.models:
            assert first["model"] == "tinyllama" and first["error"]["kind"] == "local"
        elif "tinyllama" in policy.models:  # the bundled model answered and its answer failed
            assert first["error"] is None and first["checks"][-1]["passed"] is False
    # A complete local answer failed its check: the best is returned, flagged ("exhausted"). Every
    # local rung erred (replayed models asked a prompt outside their dataset), answered nothing
    # or was cut off (max_output_tokens=1), or none is eligible (premium tier floor):
    # RoutingError ("failed"). Never accepted: no check can pass.
    answered = any(a["error"] is None and all(c["check"] != "complete" for c in a["checks"])
                   for a in decision["attempts"])
    assert decision["status"] == ("exhausted" if answered else "failed")


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("switch", ["privacy", "offline"])
@pytest.mark.parametrize("policy_file", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_no_network_call_under_privacy_or_offline(cloud_env: None, monkeypatch: pytest.MonkeyPatch,
                                                  openai_server: LlamaOpenAIServer, gemini_server: GeminiTestServer,
                                                  broken_tinyllama: Path, tmp_path: Path, policy_file: Path,
                                                  switch: str, source: str, mode: str, failure: str):
    tinyllama = str(broken_tinyllama) if failure == "first-rung-errors" else ""
    monkeypatch.setenv("TINYLLAMA_GGUF", tinyllama)
    if source == "--set" and mode == "invoke":
        file = tmp_path / policy_file.name
        file.write_text(_policy_text(policy_file, switch, source))
        decisions = [_cli_decision(file, switch)]
    else:
        router = PolicyRouter(policy=_load(policy_file, switch, source, tinyllama))
        decisions = list(_decisions(router, mode, _config(switch, source)))
    assert decisions
    for decision in decisions:
        _assert_fail_closed(decision, switch, failure, _load(policy_file, switch, source, tinyllama))
    assert (openai_server.count(), gemini_server.count()) == (0, 0)


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("policy_file", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_control_without_privacy_the_servers_do_count(cloud_env: None, monkeypatch: pytest.MonkeyPatch,
                                                      openai_server: LlamaOpenAIServer,
                                                      gemini_server: GeminiTestServer, broken_tinyllama: Path,
                                                      policy_file: Path, failure: str):
    tinyllama = str(broken_tinyllama) if failure == "first-rung-errors" else ""
    monkeypatch.setenv("TINYLLAMA_GGUF", tinyllama)
    policy = _load(policy_file, "privacy", "none", tinyllama)
    if policy.policy.local_only or all(spec.local for spec in policy.models.values()):
        pytest.skip("privacy/offline on in the file, or no network model: nothing to leak")
    router = PolicyRouter(policy=policy)
    [decision] = _decisions(router, "invoke", _config("privacy", "none"))
    network_attempts = [a for a in decision["attempts"] if a["provider"] in ("openai", "google_genai")]
    assert network_attempts
    assert openai_server.count() + gemini_server.count() == len(network_attempts)
