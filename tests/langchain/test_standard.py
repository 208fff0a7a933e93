"""LangChain's standard chat model suites (``langchain-tests``) against ``PolicyRouter``: on the
packaged offline policy (the bundled local models) and on a cascade ending at llama-cpp-python's
OpenAI-compatible server over loopback (real ``ChatOpenAI`` over HTTP).

A test that still fails is marked xfail here, with the limitation of the small local model
that makes it fail (never of the router)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from router import PolicyRouter
from router.policy.sources import policy_from_dict, resolve_policy
from tests.langchain.conftest import KEY_VAR, served_policy

# A cut-off or empty answer is never returned (the request fails instead), so the plain passes stop
# the bundled models at the end of their first line, with room to reach it; short answers keep the
# suites quick on 2 cores.
MAX_TOKENS = 64
STOP = ["\n"]
TOOL_MAX_TOKENS = 64  # room for a whole tool call's or a joke's JSON (a cut one is never accepted)


class _Offline:
    _max_tokens = MAX_TOKENS
    _stop: list[str] = STOP

    @property
    def chat_model_class(self) -> type[PolicyRouter]:
        return PolicyRouter

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"policy": resolve_policy("offline")}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        return {"temperature": 0, "max_tokens": type(self)._max_tokens, "timeout": 60, "stop": type(self)._stop,
                "max_retries": 2}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True


class _Unit(ChatModelUnitTests):
    @pytest.mark.xfail(reason="langchain-core's load(allowed_objects='all') admits only the classes in its "
                              "own serialization mapping, never a third-party class; the round trip with "
                              "allowed_objects=[PolicyRouter] is tested in test_chat_model.py", strict=True)
    def test_serdes(self, model: Any, snapshot: Any) -> None:
        super().test_serdes(model, snapshot)


class TestOfflineUnit(_Offline, _Unit):
    pass


#: Tests that run grammar-constrained tool passes on the bundled local models (about 3 minutes on
#: two cores): they get room for a whole call's JSON; ROUTER_STANDARD_QUICK=1 skips them.
SLOW = ("tool", "structured", "agent", "json_mode", "few_shot")
WRONG_ARGUMENT = ("the local models call magic_function with a wrong argument for magic_function(3) (100, or "
                  "10**15 which breaks the schema's < 1000: that call is rejected and the cascade escalates), "
                  "and no local rung writes 3")


class TestOfflineIntegration(_Offline, ChatModelIntegrationTests):
    @pytest.fixture(autouse=True)
    def _slow_gate(self, request: pytest.FixtureRequest) -> None:
        slow = any(word in request.node.name for word in SLOW)
        type(self)._max_tokens = TOOL_MAX_TOKENS if slow else MAX_TOKENS  # autouse: set before `model`
        type(self)._stop = [] if slow else STOP  # a tool call's or a joke's JSON may span lines
        if slow and os.environ.get("ROUTER_STANDARD_QUICK"):
            pytest.skip("ROUTER_STANDARD_QUICK=1: the tool/structured-output passes are skipped")

    # Limits of the bundled 270M/135M models (greedy decoding, so the same every run), not of the router:
    @pytest.mark.xfail(reason=WRONG_ARGUMENT, strict=False)
    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    def test_tool_calling(self, model: Any) -> None:
        super().test_tool_calling(model)

    @pytest.mark.xfail(reason=WRONG_ARGUMENT, strict=False)
    async def test_tool_calling_async(self, model: Any) -> None:
        await super().test_tool_calling_async(model)

    @pytest.mark.xfail(reason="for 'a joke about cats, include the punchline' both local models write digits "
                              "inside the grammar ('{\"setup\":\"1000000...') until the token limit; a cut answer "
                              "is never accepted and is no tool call, so nothing parses", strict=False)
    def test_structured_output_optional_param(self, model: Any) -> None:
        super().test_structured_output_optional_param(model)

    @pytest.mark.xfail(reason="under tool_choice auto gemma-270m answers 'weather in San Francisco' in plain text "
                              "(a made-up 'sunny and hot') instead of calling get_weather; the grammar must allow "
                              "text, or an agent could never end", strict=False)
    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    def test_agent_loop(self, model: Any) -> None:
        super().test_agent_loop(model)


def rejects_the_local_rung(answer: Any) -> bool:
    """A check of these tests' (``module:function``, allowed with ``allow_code``): the local rung's
    answer is never accepted, so every answer comes from the served model."""
    return answer.model != "gemma-270m"


def served_cascade(base_url: str) -> Any:
    """The bundled local model, rejected by :func:`rejects_the_local_rung`, then ``gpt-3.5-turbo``
    on llama-cpp-python's OpenAI-compatible server: every answer comes over HTTP through
    ``ChatOpenAI``, after a buffered, rejected local attempt."""
    policy = served_policy(base_url, max_output_tokens=MAX_TOKENS)
    policy["policy"]["confidence"] = [{"check": "tests.langchain.test_standard:rejects_the_local_rung"}]
    return policy_from_dict(policy, allow_code=True, allow_env=[KEY_VAR])


class _Served(_Offline):
    """The same suites on a cascade that ends at llama.cpp's OpenAI-compatible server on loopback.

    Tool calling and structured output are declared unsupported here: the stand-in server
    serves the GGUF with its own chat template, which has no OpenAI tool calling (a limit of the
    test server, not of the router; the offline suites run them through the local grammar)."""

    _policy: Any = None

    @pytest.fixture(autouse=True)
    def _server(self, served_llama: Any, served_key: None) -> None:
        type(self)._policy = served_cascade(served_llama.base_url)

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"policy": type(self)._policy or served_cascade("http://127.0.0.1:9/v1")}

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False


class TestServedUnit(_Served, _Unit):
    pass


class TestServedIntegration(_Served, ChatModelIntegrationTests):
    @pytest.mark.xfail(reason="the served 270M model begins 'Write me 2 haikus' with a blank line (stopped at the "
                              "newline: an empty answer), and without the stop runs past the token limit; an empty "
                              "or cut-off answer is never returned, so the request fails", strict=False)
    def test_usage_metadata_streaming(self, model: Any) -> None:
        super().test_usage_metadata_streaming(model)
