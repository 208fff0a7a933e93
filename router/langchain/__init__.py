"""The LangChain face of the router: the ``PolicyRouter`` runnable and ``PolicyMiddleware`` for
``create_agent`` agents (imported on first use: it pulls in ``langchain.agents``)."""

from typing import Any

from router.langchain.boundary import CacheNotAllowedError, PolicyBoundary, PrivateRunTracedError
from router.langchain.policy_router import PolicyRouter
from router.langchain.privacy_scope import private_scope

__all__ = ["CacheNotAllowedError", "PolicyBoundary", "PolicyMiddleware", "PolicyRouter", "PrivateRunTracedError",
           "private_scope"]


def __getattr__(name: str) -> Any:
    if name == "PolicyMiddleware":
        from router.langchain.middleware import PolicyMiddleware

        return PolicyMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
