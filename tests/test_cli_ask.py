"""``router ask`` is honest about how a request ended (issue 25, points 1 and 6): exit 0 only when an
answer was accepted, 3 when exhausted (the best complete answer printed), 2 when failed (no
answer); stderr says, one line per rung, why each was not accepted or not tried, and an auth
failure names the key's variable and the endpoint, never the key. ``--stream`` prints the answer
as it comes.

On main before this change, ``router ask "Write a haiku about autumn"`` printed nothing and
exited 0, and a wrong ``OPENAI_API_KEY`` gave an empty answer, exit 0, nothing said.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from security.security_servers import FakeOpenAIServer

from router.cli.main import main

WRONG_KEY = "sk-proj-Zz9SECRETwrongKEY0123456789"
POLICY = """\
version: 1
name: cli-honest
models:
  weak: {{provider: openai, model: m-weak, base_url: "{url}", api_key_env: OPENAI_API_KEY, price: {{input: 0, output: 0}}}}
  good: {{provider: openai, model: m-good, base_url: "{url}", api_key_env: OPENAI_API_KEY, price: {{input: 0, output: 0}}}}
policy:
  max_output_tokens: 16
  cascade: [{cascade}]
  confidence: [{{check: min_length, chars: 20}}]
"""


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    monkeypatch.setenv("OPENAI_API_KEY", WRONG_KEY)
    scripts = {"m-weak": ("Leaves fall.", "stop"), "m-good": ("Crisp leaves drift down slowly.", "stop")}
    with FakeOpenAIServer(scripts=scripts) as fake:
        yield fake


def policy_file(tmp_path: Path, server: FakeOpenAIServer, cascade: str) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(url=server.base_url, cascade=cascade), encoding="utf-8")
    return str(path)


def test_the_haiku_and_a_wrong_key_fail_with_exit_2_and_say_why_per_rung(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """The evidence, with the shipped default policy and the real local models (shortened by
    ``max_output_tokens``): gemma answers nothing, SmolLM2 is cut off, OpenAI refuses the key."""
    with FakeOpenAIServer(echo_key=True) as refusing:
        monkeypatch.setenv("OPENAI_API_KEY", WRONG_KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", refusing.base_url)
        code = main(["ask", "Write a haiku about autumn", "--policy", "default", "--set", "max_output_tokens=24"])
        endpoint = refusing.base_url.rstrip("/")
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert lines[0] == "router: failed: no complete, non-empty answer"
    assert "  gemma-270m: not accepted: complete: empty answer: no text and no tool call" in lines
    assert "  smollm2-135m: not accepted: complete: finish_reason length: cut off at the token limit" in lines
    assert f"  gpt-3.5-turbo: auth: 401 from {endpoint} (check OPENAI_API_KEY)" in lines
    assert f"  gpt-4: auth: 401 from {endpoint} (check OPENAI_API_KEY)" in lines
    assert "  gemini-flash: not tried: no credentials: GOOGLE_API_KEY not set" in lines
    assert WRONG_KEY not in err and WRONG_KEY[8:24] not in err


def test_exhausted_prints_the_best_answer_and_exits_3(tmp_path: Path, server: FakeOpenAIServer,
                                                      capsys: pytest.CaptureFixture[str]):
    code = main(["ask", "q", "--policy", policy_file(tmp_path, server, "weak")])
    out, err = capsys.readouterr()
    assert code == 3 and out.startswith("Leaves fall.\n")
    assert err.splitlines() == [
        "router: exhausted: no answer passed the checks; printed the best complete answer (weak)",
        "  weak: not accepted: min_length (score 12.0); returned as the best answer"]


def test_accepted_exits_0_and_says_nothing_on_stderr(tmp_path: Path, server: FakeOpenAIServer,
                                                     capsys: pytest.CaptureFixture[str]):
    code = main(["ask", "q", "--policy", policy_file(tmp_path, server, "weak, good")])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "") and out.startswith("Crisp leaves drift down slowly.\n")


def test_exit_codes_from_a_real_process(tmp_path: Path, server: FakeOpenAIServer):
    path = policy_file(tmp_path, server, "weak")
    done = subprocess.run([sys.executable, "-m", "router.cli", "ask", "q", "--policy", path, "--json"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 3, done.stderr
    assert "router: exhausted" in done.stderr and '"status": "exhausted"' in done.stdout


class Writes(io.StringIO):
    """stdout that remembers each write (to see an answer arrive in pieces)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_stream_prints_the_answer_as_it_comes(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """The real gemma streams live (the last rung under on_exhausted: best): several writes, then
    the record's summary on stderr."""
    writes = Writes()
    monkeypatch.setattr(sys, "stdout", writes)
    code = main(["ask", "List the first ten prime numbers.", "--policy", "offline", "--stream",
                 "--set", "max_output_tokens=12", "--set", "cascade=[gemma-270m]"])
    _, err = capsys.readouterr()
    assert len([w for w in writes.writes if w.strip()]) >= 3, writes.writes
    assert "gemma-270m" in err
    # whatever the checks say of the 270M model's answer, the exit code and stderr agree on it
    assert code == {"accepted": 0, "exhausted": 3, "failed": 2}[err.split("status: ")[-1].split(";")[0]] \
        if "status: " in err else code == 2


def test_stream_of_a_buffered_accepted_answer_and_of_a_failure(tmp_path: Path, server: FakeOpenAIServer,
                                                               capsys: pytest.CaptureFixture[str]):
    assert main(["ask", "q", "--policy", policy_file(tmp_path, server, "weak, good"), "--stream"]) == 0
    out, err = capsys.readouterr()
    assert out == "Crisp leaves drift down slowly.\n" and "status: accepted" in err
    server.scripts["m-good"] = ("", "stop")
    assert main(["ask", "q", "--policy", policy_file(tmp_path, server, "good"), "--stream"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "good: not accepted: complete: empty answer" in err


def test_a_usage_error_is_1_not_the_2_of_no_answer(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as raised:
        main(["ask", "q", "--json", "--stream"])
    assert raised.value.code == 1 and "not allowed with argument --json" in capsys.readouterr().err
