"""``router spend`` shows what was spent even under a policy without ``budgets:`` (issue 25, point 6).

On main before this change a policy without budgets had no guard, so its paid calls reached no
ledger and ``router spend`` printed an empty table. Now every paid call is recorded (the policy's
``ledger:``, else the default one in the user state dir); local calls are not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from security.security_servers import FakeOpenAIServer

from router import PolicyRouter, loads_policy
from router.cli.main import main

POLICY = """\
version: 1
name: no-budgets
models:
  gemma: {{provider: llamacpp, gguf: "bundled:gemma-3-270m", chat_format: qa, local: true}}
  paid: {{provider: openai, model: m-paid, base_url: "{url}", api_key_env: OPENAI_API_KEY, price: {{input: 1, output: 2}}}}
policy:
  max_output_tokens: 16
  cascade: [{cascade}]
{ledger}"""


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-dummy-key")
    with FakeOpenAIServer(scripts={"m-paid": ("Paris.", "stop")}) as fake:
        yield fake


def spend(*args: str, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["spend", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_paid_calls_without_budgets_are_recorded_in_the_policy_ledger(tmp_path: Path, server: FakeOpenAIServer,
                                                                       capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(url=server.base_url, cascade="paid",
                                  ledger=f"ledger: sqlite:///{tmp_path / 'ledger.db'}\n"), encoding="utf-8")
    router = PolicyRouter.from_yaml(path)
    cost = sum(router.invoke("q").response_metadata["routing"]["total_cost_usd"] for _ in range(2))
    report = spend("--policy", str(path), capsys=capsys)
    assert report["calls"] == 2 and report["total_usd"] == pytest.approx(cost) and cost > 0
    assert [(r["key"], r["calls"]) for r in report["rows"]] == [("paid", 2)]


def test_without_a_ledger_they_go_to_the_default_one_and_local_calls_are_not_recorded(
        tmp_path: Path, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    PolicyRouter(policy=loads_policy(POLICY.format(url=server.base_url, cascade="gemma", ledger=""))).invoke("What is the capital of France?")
    assert not (tmp_path / "state").exists()  # a local call opens no ledger
    PolicyRouter(policy=loads_policy(POLICY.format(url=server.base_url, cascade="paid", ledger=""))).invoke("q")
    report = spend(capsys=capsys)
    assert report["calls"] == 1 and report["rows"][0]["key"] == "paid"


def test_an_empty_ledger_says_what_the_ledger_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["spend", "--ledger", f"sqlite:///{tmp_path / 'ledger.db'}"]) == 0
    out, err = capsys.readouterr()
    assert "total        0" in out and "Every paid call is recorded" in err
