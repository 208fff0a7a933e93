"""Escalation across providers: the local rung (the bundled model) answers and fails its check;
a cloud rung answers over its real client. Uses ``tests/cloud/cloud-cascade.yaml``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from servers.gemini import GeminiTestServer
from servers.openai_llama import LlamaOpenAIServer

from router import PolicyRouter

POLICY = Path(__file__).with_name("cloud-cascade.yaml")
QUESTION = "What is the boiling point of water?"


def test_local_fails_its_check_and_gemini_answers(cloud_env: None, gemini_server: GeminiTestServer,
                                                  openai_server: LlamaOpenAIServer):
    gemini_server.reply("Water boils at 100 degrees Celsius at sea level.")
    msg = PolicyRouter.from_yaml(POLICY).invoke(QUESTION)
    routing = msg.response_metadata["routing"]
    local, cloud = routing["attempts"]
    assert (local["model"], local["provider"], local["accepted"]) == ("gemma", "llamacpp", False)
    assert local["error"] is None and local["checks"][-1]["check"] == "min_length"
    assert local["checks"][-1]["passed"] is False
    assert (cloud["model"], cloud["provider"], cloud["accepted"]) == ("gemini-flash", "google_genai", True)
    assert msg.content == "Water boils at 100 degrees Celsius at sea level."
    assert routing["final_model"] == "gemini-flash" and routing["status"] == "accepted"
    assert routing["total_cost_usd"] == pytest.approx(cloud["cost_usd"]) and cloud["cost_usd"] > 0
    assert (gemini_server.count(), openai_server.count()) == (1, 0)


def test_local_and_gemini_fail_their_checks_and_openai_answers(cloud_env: None, gemini_server: GeminiTestServer,
                                                               openai_server: LlamaOpenAIServer):
    gemini_server.reply("100.")  # too short for the length check, like the local answer
    chunks = list(PolicyRouter.from_yaml(POLICY).stream(QUESTION))
    routing = chunks[-1].response_metadata["routing"]
    assert [(a["model"], a["accepted"]) for a in routing["attempts"]] == [
        ("gemma", False), ("gemini-flash", False), ("gpt-3.5-turbo", True)]
    text = "".join(str(c.content) for c in chunks)
    assert "100" in text and len(text.strip()) >= 12  # llama.cpp's server, as gpt-3.5-turbo
    assert "100." not in text.split()  # the rejected Gemini answer was never emitted
    assert (gemini_server.count(), openai_server.count("gpt-3.5-turbo")) == (1, 1)
    assert routing["total_cost_usd"] == pytest.approx(sum(a["cost_usd"] for a in routing["attempts"]))


def test_router_ask_json_from_the_command_line(cloud_env: None, gemini_server: GeminiTestServer,
                                               openai_server: LlamaOpenAIServer):
    """The real ``router`` command in a subprocess, keys and endpoints from the environment."""
    gemini_server.reply("Water boils at 100 degrees Celsius at sea level.")
    done = subprocess.run([sys.executable, "-m", "router.cli.main", "ask", QUESTION, "--policy", str(POLICY), "--json"],
                          capture_output=True, text=True, env=dict(os.environ), timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["answer"] == "Water boils at 100 degrees Celsius at sea level."
    assert [a["model"] for a in printed["routing"]["attempts"]] == ["gemma", "gemini-flash"]
    for key in (gemini_server.api_key, openai_server.api_key):
        assert key not in done.stdout and key not in done.stderr
    assert gemini_server.count() == 1
