"""Test servers speaking the cloud providers' wire protocols on 127.0.0.1.

- :class:`servers.gemini.GeminiTestServer`: Gemini REST (generateContent, streamGenerateContent
  SSE), in a background thread; counts requests, injects failures.
- :class:`servers.openai_llama.LlamaOpenAIServer`: llama-cpp-python's own OpenAI-compatible
  server (a subprocess) serving the bundled GGUF, behind a counting, fault-injecting proxy.

Importable from any test as ``servers.*``: pytest puts ``tests/`` on ``sys.path`` because
``tests/conftest.py`` sits in a directory without ``__init__.py``. Session fixtures for both
live in ``tests/cloud/conftest.py``; copy them (or import the classes) elsewhere.
"""

from ._base import FAIL_MODES, RecordedRequest
from .gemini import GeminiTestServer
from .openai_llama import LlamaOpenAIServer

__all__ = ["FAIL_MODES", "GeminiTestServer", "LlamaOpenAIServer", "RecordedRequest"]
