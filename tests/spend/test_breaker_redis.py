"""Circuit breakers shared through Redis when the policy's ledger is Redis: failures seen by one
process open the breaker for every process using that Redis (here a second OS process running
``router explain``); an unreachable Redis leaves the breaker closed instead of blocking calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from servers.gemini import GeminiTestServer
from servers.openai_llama import free_port
from spend_support import GEMINI_KEY

from router import PolicyRouter, loads_policy
from router.providers.breaker import reset_process_breakers

POLICY = """
version: 1
name: shared-breaker
models:
  flash:
    provider: google_genai
    model: gemini-2.0-flash
    tier: standard
    price: {{input: 0.1, output: 0.4}}
    base_url: {dead}
    timeout_s: 2
  pro:
    provider: google_genai
    model: gemini-2.5-pro
    tier: standard
    price: {{input: 1.25, output: 10.0}}
    base_url: {live}
policy:
  cost_ceiling: 0.05
  max_output_tokens: 16
  cascade: [flash, pro]
ledger: {ledger}
"""


def test_a_breaker_opened_in_one_process_excludes_the_model_in_another(gemini, redis_url: str, tmp_path: Path):
    with GeminiTestServer(api_key=GEMINI_KEY) as dead:
        dead.fail("server", times=None)
        policy_file = tmp_path / "policy.yaml"
        policy_file.write_text(POLICY.format(dead=dead.base_url, live=gemini.base_url, ledger=redis_url))
        router = PolicyRouter(policy=loads_policy(policy_file.read_text(), str(policy_file)))
        for _ in range(3):
            assert router.invoke("Question").response_metadata["routing"]["final_model"] == "pro"
        reset_process_breakers()  # the state is in Redis, not in this process
        routing = router.invoke("Question").response_metadata["routing"]
        assert [a["model"] for a in routing["attempts"]] == ["pro"] and dead.count() == 3
        other = subprocess.run([sys.executable, "-m", "router.cli.main", "explain", "Question", "--policy",
                                str(policy_file), "--json"], capture_output=True, text=True, timeout=120,
                               env={**os.environ, "GOOGLE_API_KEY": GEMINI_KEY}, check=True)
    excluded = {e["model"]: e["reason"] for e in json.loads(other.stdout)["excluded"]}
    assert excluded["flash"].startswith("cooling down: 3 server errors in 60 s (probe in ")


def test_an_unreachable_redis_leaves_the_breaker_closed(gemini, tmp_path: Path):
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    with GeminiTestServer(api_key=GEMINI_KEY) as dead:
        dead.fail("server", times=None)
        router = PolicyRouter(policy=loads_policy(POLICY.format(dead=dead.base_url, live=gemini.base_url,
                                                                ledger=nowhere)))
        for _ in range(4):
            assert router.invoke("Question").response_metadata["routing"]["final_model"] == "pro"
        assert dead.count() == 4  # no breaker state could be kept: every request tries the model
