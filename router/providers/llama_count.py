"""Counting a local model's prompt tokens in time linear in the prompt's size.

llama.cpp's tokenizer splits the text at every special token (a chat template puts several
in each message) by copying the rest of the text each time: one call on a long conversation
takes time quadratic in its messages (8,000 messages: 12 s for SmolLM2's template, 50,000:
minutes). :func:`count_prompt_tokens` tokenizes the prompt in pieces of at most
:data:`PIECE_CHARS` characters cut after a newline (else a space), and adds their counts. A
cut only keeps tokens from merging across it, so the sum is the exact count or a few tokens
more: the safe side of a context-window check (and a local model is free).

Example:
    >>> count_prompt_tokens(llm, "<|im_start|>user\\nhello<|im_end|>\\n")
    7
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

#: The most characters tokenized in one llama.cpp call.
PIECE_CHARS = 8192


def pieces(text: str, size: int = PIECE_CHARS) -> Iterator[str]:
    """``text`` in consecutive pieces of at most ``size`` characters, each cut after the last
    newline (else space) of its second half when there is one."""
    start = 0
    while len(text) - start > size:
        end = start + size
        cut = text.rfind("\n", start + size // 2, end)
        if cut < 0:
            cut = text.rfind(" ", start + size // 2, end)
        end = cut + 1 if cut >= 0 else end
        yield text[start:end]
        start = end
    yield text[start:]


def count_prompt_tokens(llm: Any, prompt: str, *, stop_above: int | None = None) -> int:
    """Tokens of ``prompt`` (special tokens parsed, BOS added) for llama.cpp model ``llm``.
    ``stop_above``: once the count passes it (a context window), the count so far is returned:
    more than ``stop_above`` is all a window check needs, and the rest is not tokenized."""
    total = 0
    for index, piece in enumerate(pieces(prompt)):
        total += len(llm.tokenize(piece.encode("utf-8"), add_bos=index == 0, special=True))
        if stop_above is not None and total > stop_above:
            break
    return total
