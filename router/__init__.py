"""Put an LLM cost policy in front of a LangChain pipeline.

Example:
    >>> from router import PolicyRouter
    >>> router = PolicyRouter.from_yaml("policies/default.yaml")
    >>> msg = router.invoke("What is the capital of France?")
    >>> msg.response_metadata["routing"]["status"]
    'accepted'

Importing this package opens no socket and imports no provider client; each provider module
is imported the first time a policy needs it.
"""

from typing import Any

from router.checks import Answer, CheckResult, CheckSpec, ConfidenceCheck, register_check
from router.errors import (
    CheckError,
    CodeNotAllowedError,
    DecisionMissingError,
    InputError,
    ModelUnavailableError,
    PolicyError,
    PolicyIssue,
    ProviderError,
    RouterError,
    RoutingError,
    UnboundedContentError,
    UnencodableInputError,
)
from router.langchain import PolicyRouter
from router.policy import ModelSpec, Policy, PolicySettings, load_policy, loads_policy
from router.routing.decision import Attempt, Decision, Exclusion

__all__ = [
    "Answer", "Attempt", "CheckError", "CheckResult", "CheckSpec", "CodeNotAllowedError", "ConfidenceCheck",
    "Decision", "DecisionMissingError", "Exclusion", "InputError", "ModelSpec", "ModelUnavailableError", "Policy", "PolicyError",
    "PolicyIssue", "PolicyMiddleware", "PolicyRouter",
    "PolicySettings", "ProviderError", "RouterError", "RoutingError", "UnboundedContentError",
    "UnencodableInputError", "load_policy",
    "loads_policy", "register_check",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "PolicyMiddleware":  # imports langchain.agents (langgraph): only when asked for
        from router.langchain.middleware import PolicyMiddleware

        return PolicyMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
