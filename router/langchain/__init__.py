"""The LangChain face of the router: the ``PolicyRouter`` runnable."""

from router.langchain.policy_router import PolicyRouter

__all__ = ["PolicyRouter"]
