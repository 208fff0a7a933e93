"""Is an answer complete? Each provider's finish reason, normalised, and what makes an answer cut off.

The normalised ``finish_reason`` is one of ``stop``, ``length``, ``content_filter``,
``tool_calls``, ``unknown``. An answer is ``truncated`` when the provider says it stopped at the
token limit (OpenAI ``length``, Gemini ``MAX_TOKENS``, llama.cpp ``length``) or when a provider
that always sends a finish reason sent none (a stream that ended without its final event).
A truncated answer, one stopped by a content filter, or a tool call that did not parse is never
accepted: the cascade records why and escalates.

Example:
    >>> completeness(AIMessage("1, 2,", response_metadata={"finish_reason": "MAX_TOKENS"}))
    Completeness(finish_reason='length', truncated=True, problem='finish_reason length: cut off at the token limit')
"""

from __future__ import annotations

from dataclasses import dataclass

from langchain_core.messages import AIMessage

FINISH_REASONS = ("stop", "length", "content_filter", "tool_calls", "unknown")

_NORMAL: dict[str, str] = {
    "stop": "stop", "end_turn": "stop", "stop_sequence": "stop", "eos": "stop",
    "length": "length", "max_tokens": "length",
    "content_filter": "content_filter", "safety": "content_filter", "recitation": "content_filter",
    "blocklist": "content_filter", "prohibited_content": "content_filter", "spii": "content_filter",
    "image_safety": "content_filter",
    "tool_calls": "tool_calls", "function_call": "tool_calls", "tool_use": "tool_calls",
}


@dataclass(frozen=True)
class Completeness:
    """How an answer ended; ``problem`` is why it may not be accepted (None: complete)."""

    finish_reason: str
    truncated: bool
    problem: str | None = None


def normalise_finish_reason(raw: object) -> str:
    """A provider's finish reason (any case; Gemini's enum name or value) as one of
    :data:`FINISH_REASONS`."""
    if raw is None:
        return "unknown"
    name = str(getattr(raw, "name", raw)).strip().lower()
    name = name.removeprefix("finishreason.")
    return _NORMAL.get(name, "unknown")


def completeness(message: AIMessage, *, expects_finish_reason: bool = True) -> Completeness:
    """The completeness of ``message``. ``expects_finish_reason``: the provider always reports
    one, so a missing one means the reply was cut short (a stream without its final event)."""
    metadata = message.response_metadata or {}
    raw = metadata.get("finish_reason", metadata.get("stop_reason"))
    reason = normalise_finish_reason(raw)
    if reason == "length":
        return Completeness(reason, True, "finish_reason length: cut off at the token limit")
    if raw is None and expects_finish_reason:
        return Completeness(reason, True, "no finish reason: the reply ended without its final marker")
    if reason == "content_filter":
        return Completeness(reason, False, f"finish_reason content_filter ({raw}): answer withheld or cut")
    if message.invalid_tool_calls:
        names = ", ".join(str(c.get("name") or "?") for c in message.invalid_tool_calls)
        return Completeness(reason, False, f"tool call did not parse: {names}")
    return Completeness(reason, False, None)
