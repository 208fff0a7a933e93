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
import re
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


#: What a check's ``detail``/``error`` on an attempt whose answer is not returned reads instead.
WITHHELD = "withheld: may quote an answer that was not returned"
#: Details that quote nothing of the answer (fixed texts of the built-in checks and of the
#: completeness check, or naming only a catalog model and the router's own reason): kept on every
#: attempt for the built-in checks. Any other detail, a custom check's always, is withheld (default deny).
#: The router's own detail and error texts for a check that failed to run (any check): they name
#: types only. A raised exception's message is withheld; its type stays (``KeyError: withheld...``).
BROKEN = "check failed to run"
RETURNED_WRONG = re.compile(r"returned \w+, expected CheckResult \(or bool/number from a function\)")
BUILT_IN_CHECKS = frozenset({"complete", "refusal", "min_length", "regex", "json", "logprob", "agreement",
                             "verifier", "self_consistency", "answer_in"})
FIXED_DETAILS = re.compile("|".join((
    r"finish_reason length: cut off at the token limit",
    r"finish_reason content_filter \([\w-]{1,40}\): answer withheld or cut",
    r"finish_reason '[\w-]{1,40}' unknown: not a complete answer",
    r"no finish reason: the reply ended without its final marker",
    r"empty answer(?:: no text and no tool call)?", r"no match", r"no logprobs from this model", r"no other model to consult",
    r"not run: trusted by routing", r"not applied to [\w.:/-]+", r"P\(yes\) from \w+",
    r"[\w.:/-]+ call (?:skipped|failed): [^'\"]{0,200}",
    # the completeness check's tool-call texts (routing/completeness.tool_call_problem): a bound
    # tool's name, a path of argument keys, the schema's own rule; never an argument's value
    r"tool call arguments of [\w.-]{1,64} not checked: (?:nested deeper than \d+ levels|more than \d+ values"
    r"|too deep for the schema|the schema's patterns ran out of time \([\d.]+ s\)|pattern .{1,64} ran out of time)",
    r"tool call arguments of [\w.-]{1,64} break its schema: [\w.()]{1,100} fails \w+ .{0,200}",
)))


def withhold_rejected(result: CascadeResult) -> None:
    """Blank the ``detail`` and ``error`` of every check on an attempt whose answer is not the one
    returned: checks may quote the text they judged (``refusal: '...'``, ``answer '...'``, a
    custom check's message), and a rejected attempt's text reaches no channel (not the stream,
    not the record, not a tracer). ``passed``, ``score``, costs, :data:`FIXED_DETAILS` and a raised
    exception's type stay."""
    decision = result.decision
    returned = None
    if result.message is not None:
        returned = next((a for a in reversed(decision.attempts) if a.model == decision.final_model), None)
    for attempt in decision.attempts:
        if attempt is returned:
            continue
        for check in attempt.checks:
            if check.detail and not (check.detail == BROKEN or (check.check in BUILT_IN_CHECKS
                                                                  and FIXED_DETAILS.fullmatch(check.detail))):
                check.detail = WITHHELD
            if check.error and not RETURNED_WRONG.fullmatch(check.error):
                kind = check.error.split(":", 1)[0]
                check.error = f"{kind}: {WITHHELD}" if kind.isidentifier() else WITHHELD


def finish(result: CascadeResult, tracing: str | None) -> AIMessage:
    """The answer with its record; a :class:`RoutingError` (carrying the record) when none."""
    decision = result.decision
    withhold_rejected(result)
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
