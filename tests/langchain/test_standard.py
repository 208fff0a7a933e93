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
from router.policy.sources import resolve_policy

MAX_TOKENS = 24  # the smallest that still fits a tool call's JSON


class _Offline:
    @property
    def chat_model_class(self) -> type[PolicyRouter]:
        return PolicyRouter

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"policy": resolve_policy("offline")}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        return {"temperature": 0, "max_tokens": MAX_TOKENS, "timeout": 60, "stop": [], "max_retries": 2}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True


class TestOfflineUnit(_Offline, ChatModelUnitTests):
    @pytest.mark.xfail(reason="langchain-core's load(allowed_objects='all') admits only the classes in its "
                              "own serialization mapping, never a third-party class; the round trip with "
                              "allowed_objects=[PolicyRouter] is tested in test_chat_model.py", strict=True)
    def test_serdes(self, model: Any, snapshot: Any) -> None:
        super().test_serdes(model, snapshot)


#: Tests that run grammar-constrained tool passes on the bundled local models: minutes on two
#: cores, so they run when ROUTER_STANDARD_FULL=1 (see the report of issue 10 for their results).
SLOW = ("tool", "structured", "agent", "json_mode", "few_shot")


class TestOfflineIntegration(_Offline, ChatModelIntegrationTests):
    @pytest.fixture(autouse=True)
    def _slow_gate(self, request: pytest.FixtureRequest) -> None:
        if any(word in request.node.name for word in SLOW) and not os.environ.get("ROUTER_STANDARD_FULL"):
            pytest.skip("tool/structured-output passes on the bundled local models take minutes on 2 cores; "
                        "ROUTER_STANDARD_FULL=1 runs them")
