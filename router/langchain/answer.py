"""Turning a cascade's result into what the router returns: the message (with its decision
record at ``response_metadata["routing"]``) or the chunks of a stream.

A streamed answer's usage is the provider's when it sent any; otherwise it is the router's own
count (the GGUF vocabulary or the bundled tokenizers) and the record says
``usage_estimated: true``.

Example:
    >>> message = finish(result, tracing=None)
    >>> message.response_metadata["model_name"] == message.response_metadata["routing"]["final_model"]
    True
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.ai import UsageMetadata

from router.errors import RoutingError
from router.routing.cascade import CascadeResult
from router.routing.decision import Decision
from router.routing.outcome import rung_lines

_DROPPED = ("logprobs", "model_name", "routing")


def _counted_usage(decision: Decision) -> UsageMetadata | None:
    final = [a for a in decision.attempts if a.model == decision.final_model]
    if not final:
        return None
    attempt = final[-1]
    return UsageMetadata(input_tokens=attempt.input_tokens, output_tokens=attempt.output_tokens,
                         total_tokens=attempt.input_tokens + attempt.output_tokens)


def _no_answer(result: CascadeResult) -> RoutingError:
    decision = result.decision
    if decision.status == "exhausted":
        message = "no candidate passed the confidence checks (on_exhausted: raise)"
    elif not decision.candidates:
        message = "no eligible model"
    elif all(a.error is not None for a in decision.attempts):
        message = "every candidate failed"
    else:
        message = "no complete, non-empty answer"
    message += ": " + "; ".join(rung_lines(decision))
    if result.last_error is not None:
        result.last_error.decision = decision
    return RoutingError(message, decision, last_error=result.last_error)


def finish(result: CascadeResult, tracing: str | None) -> AIMessage:
    """The answer with its record; a :class:`RoutingError` (carrying the record) when none."""
    decision = result.decision
    if tracing is not None:
        decision.effective["tracing"] = tracing
    if result.message is None:
        # Not chained: the record holds each attempt's scrubbed error (router.errors._Unchained).
        raise _no_answer(result) from None
    final = result.message
    routing = decision.to_dict()
    usage = final.usage_metadata
    if not usage:
        usage = _counted_usage(decision)
        routing["usage_estimated"] = True
    metadata = {**final.response_metadata, "model_name": decision.final_model, "routing": routing}
    return AIMessage(content=final.content, tool_calls=final.tool_calls,
                     invalid_tool_calls=final.invalid_tool_calls, usage_metadata=usage,
                     response_metadata=metadata, additional_kwargs=final.additional_kwargs)


def clean(chunk: AIMessageChunk) -> AIMessageChunk:
    """A child's chunk as the router's: no child id, position, logprobs or model name."""
    return AIMessageChunk(content=chunk.content, usage_metadata=chunk.usage_metadata,
                          tool_call_chunks=chunk.tool_call_chunks,
                          additional_kwargs=chunk.additional_kwargs,
                          response_metadata={k: v for k, v in chunk.response_metadata.items()
                                             if k not in _DROPPED})


def closing(result: CascadeResult, final: AIMessage, streamed_live: bool) -> Iterator[AIMessageChunk]:
    """After the cascade: the accepted buffered attempt's chunks (unless it already streamed
    live), then one chunk carrying the record, the model name and, when no chunk had any,
    the counted usage."""
    chunks = [] if streamed_live else (result.chunks or [AIMessageChunk(
        content=final.content, usage_metadata=final.usage_metadata, tool_call_chunks=_tool_call_chunks(final))])
    had_usage = any(c.usage_metadata for c in result.chunks) or (bool(chunks) and not result.chunks)
    for chunk in chunks:
        yield clean(chunk)
    routing = dict(final.response_metadata["routing"])
    usage = None
    if not had_usage:
        usage = _counted_usage(result.decision)
        routing["usage_estimated"] = True
    yield AIMessageChunk(content="", usage_metadata=usage, chunk_position="last",
                         response_metadata={"routing": routing, "model_name": final.response_metadata["model_name"]})


def _tool_call_chunks(message: AIMessage) -> list[dict[str, Any]]:
    return [{"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
            for i, c in enumerate(message.tool_calls)]
