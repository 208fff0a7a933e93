"""Is an answer complete? Each provider's finish reason, normalised, and what makes an answer cut off.

The normalised ``finish_reason`` is one of ``stop``, ``length``, ``content_filter``,
``tool_calls``, ``unknown``. An answer is ``truncated`` when the provider says it stopped at the
token limit (OpenAI ``length``, Gemini ``MAX_TOKENS``, llama.cpp ``length``) or when a provider
that always sends a finish reason sent none (a stream that ended without its final event).
Only an explicit stop or tool-call finish counts as complete: a reason the router does not know
(DeepSeek's ``insufficient_system_resource``, vLLM's ``model_length``, ``error``, any other
string) may be a cut-off or failed answer, so it is ``unknown`` and treated as truncated.
A truncated answer, one stopped by a content filter, a tool call that did not parse, or one whose
arguments break the bound tool's JSON schema (a small model's ``{"input": 10**15}`` for a field
``< 1000``) is never accepted: the cascade records why and escalates.

Example:
    >>> completeness(AIMessage("1, 2,", response_metadata={"finish_reason": "MAX_TOKENS"}))
    Completeness(finish_reason='length', truncated=True, problem='finish_reason length: cut off at the token limit')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk

from router.providers.base import COMMON_FINISH_REASONS
from router.routing.tool_args import RegexTimeoutError, args_problem, schema_problem

FINISH_REASONS = ("stop", "length", "content_filter", "tool_calls", "unknown")
#: Metadata a stream may repeat on several chunks that holds one value, not text to join.
SINGLE_VALUED = ("finish_reason", "stop_reason", "done_reason", "model_name")

_NORMAL = COMMON_FINISH_REASONS  # the built-in providers' reasons; each adapter declares its own


@dataclass(frozen=True)
class Completeness:
    """How an answer ended; ``problem`` is why it may not be accepted (None: complete)."""

    finish_reason: str
    truncated: bool
    problem: str | None = None


def stream_end_metadata(chunks: Sequence[AIMessageChunk]) -> dict[str, Any]:
    """The last non-empty value of each :data:`SINGLE_VALUED` key among a stream's chunks.
    LangChain merges chunks' string metadata by concatenation, so a server that repeats
    ``finish_reason: length`` (on the usage event, say) would leave ``lengthlength``: an
    ``unknown`` reason, and a cut-off answer not marked truncated."""
    found: dict[str, Any] = {}
    for chunk in reversed(chunks):
        metadata = chunk.response_metadata or {}
        for key in SINGLE_VALUED:
            if key not in found and metadata.get(key):
                found[key] = metadata[key]
    return found


def normalise_finish_reason(raw: object, reasons: Mapping[str, str] | None = None) -> str:
    """A provider's finish reason (any case; Gemini's enum name or value) as one of
    :data:`FINISH_REASONS`, by the provider's table ``reasons`` (its adapter's
    ``finish_reasons``; default: the built-in providers' union)."""
    if raw is None:
        return "unknown"
    name = str(getattr(raw, "name", raw)).strip().lower()
    name = name.removeprefix("finishreason.")
    return (_NORMAL if reasons is None else reasons).get(name, "unknown")


def completeness(message: AIMessage, *, expects_finish_reason: bool = True,
                 tools: Sequence[dict[str, Any]] = (), reasons: Mapping[str, str] | None = None) -> Completeness:
    """The completeness of ``message``. ``expects_finish_reason``: the provider always reports
    one, so a missing one means the reply was cut short (a stream without its final event).
    ``tools``: the bound tools (OpenAI format), whose schemas the tool calls must satisfy.
    ``reasons``: the provider's finish-reason table (a reason not in it is not a complete answer)."""
    metadata = message.response_metadata or {}
    raw = metadata.get("finish_reason", metadata.get("stop_reason", metadata.get("done_reason")))
    reason = normalise_finish_reason(raw, reasons)
    if reason == "length":
        return Completeness(reason, True, "finish_reason length: cut off at the token limit")
    if raw is None and expects_finish_reason:
        return Completeness(reason, True, "no finish reason: the reply ended without its final marker")
    if reason == "content_filter":
        return Completeness(reason, False, f"finish_reason content_filter ({raw}): answer withheld or cut")
    if reason == "unknown" and raw is not None:  # model_length, error, ...: not a stop the router knows
        return Completeness(reason, True, f"finish_reason {str(raw)[:40]!r} unknown: not a complete answer")
    if message.invalid_tool_calls:
        names = ", ".join(str(c.get("name") or "?") for c in message.invalid_tool_calls)
        return Completeness(reason, False, f"tool call did not parse: {names}")
    if message.tool_calls and tools:
        problem = tool_call_problem(message, tools)
        if problem is not None:
            return Completeness(reason, False, problem)
    return Completeness(reason, False, None)


def tool_call_problem(message: AIMessage, tools: Sequence[dict[str, Any]]) -> str | None:
    """Why a tool call of ``message`` is not a valid call of the bound ``tools``, else None.
    The reason names the tool, the argument's path and the rule, never the value (arguments
    may hold the user's data)."""
    from jsonschema.exceptions import SchemaError

    schemas = {t["function"]["name"]: t["function"].get("parameters") for t in tools if "function" in t}
    for call in message.tool_calls:
        name = call["name"]
        if name not in schemas:
            return f"tool call names no bound tool: {name}"
        schema = schemas[name]
        if not schema:
            continue
        args = call.get("args") or {}
        too_big = args_problem(args)
        if too_big is not None:
            return f"tool call arguments of {name} not checked: {too_big}"
        try:
            error = schema_problem(schema, args)
        except SchemaError:
            return None  # a schema jsonschema cannot read is not the answer's fault
        except RegexTimeoutError as err:
            return f"tool call arguments of {name} not checked: {err}"
        except RecursionError:  # a recursive schema deeper than the bounds above allow for
            return f"tool call arguments of {name} not checked: too deep for the schema"
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path) or "(arguments)"
            return f"tool call arguments of {name} break its schema: {where} fails {error.validator} " \
                   f"{error.validator_value!r}"[:300]
    return None
