"""A loopback OpenAI-compatible chat server that bills like OpenAI, scripted per test.

``prompt_tokens`` is what the model reads: cl100k tokens of every message's text and tool calls
(name + arguments), the tools' schemas as JSON, plus the chat overhead; ``completion_tokens`` is
what was generated (the reply's tokens, or the script's ``completion_tokens``). A script is a
function of the request body returning a :class:`Script`; it may misbehave the ways real servers
do: send no usage in a stream, repeat ``finish_reason``, cut the connection after the answer (and
its usage) was sent, or answer 200 with a body that is not JSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from servers._base import QuietHandler, RecordedRequest, ThreadedTestServer

from router.routing.tokens import count_text_tokens


@dataclass(frozen=True)
class Script:
    """How the server answers one request."""

    text: str | None = "Paris"
    tool_call: tuple[str, dict[str, Any]] | None = None  # (name, arguments)
    finish_events: tuple[str, ...] = ("stop",)  # one stream event per finish_reason
    usage: bool = True  # send usage (in a stream: on a final event of its own)
    completion_tokens: int | None = None  # billed output tokens (default: the reply's)
    cut_after_usage: bool = False  # a stream whose connection breaks before [DONE]
    malformed: bool = False  # 200 with a body that is not JSON


def billed_prompt_tokens(body: dict[str, Any]) -> int:
    """Input tokens as OpenAI would bill them for this request body."""
    total = 3
    for message in body.get("messages", []):
        content = message.get("content")
        total += 3 + count_text_tokens(content if isinstance(content, str) else json.dumps(content or ""))
        for call in message.get("tool_calls") or []:
            total += count_text_tokens(call["function"]["name"] + call["function"]["arguments"])
    if body.get("tools"):
        total += count_text_tokens(json.dumps(body["tools"]))
    return total


class _Handler(QuietHandler):
    server_state: BillingServer

    def do_POST(self) -> None:  # noqa: N802 (stdlib's name)
        raw = self.read_body()
        body = json.loads(raw or b"{}")
        state = self.server_state
        state.record(RecordedRequest("POST", self.path, {}, raw, model=body.get("model"),
                                     stream=bool(body.get("stream"))))
        script = state.script(body)
        if script.malformed:
            return self.send_bytes(200, b"this is not JSON")
        prompt = billed_prompt_tokens(body)
        completion = script.completion_tokens
        if completion is None:
            completion = count_text_tokens(script.text or json.dumps(script.tool_call or ""))
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        state.bill(usage)
        message = _message(script)
        if not body.get("stream"):
            reply = {"id": "x", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
                     "choices": [{"index": 0, "finish_reason": script.finish_events[-1], "message": message}]}
            return self.send_json(200, {**reply, **({"usage": usage} if script.usage else {})})
        self._stream(body["model"], script, message, usage)

    def _stream(self, model: str, script: Script, message: dict[str, Any], usage: dict[str, int]) -> None:
        self.start_chunked(200, "text/event-stream")
        base = {"id": "x", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

        def event(payload: dict[str, Any]) -> None:
            self.write_chunk(b"data: " + json.dumps({**base, **payload}).encode() + b"\n\n")

        event({"choices": [{"index": 0, "delta": message, "finish_reason": None}]})
        for finish in script.finish_events:
            event({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        if script.usage:
            event({"choices": [], "usage": usage})
        if script.cut_after_usage:
            return self.drop_connection()
        self.write_chunk(b"data: [DONE]\n\n")
        self.end_chunked()


def _message(script: Script) -> dict[str, Any]:
    if script.tool_call is None:
        return {"role": "assistant", "content": script.text}
    name, args = script.tool_call
    return {"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]}


class BillingServer(ThreadedTestServer):
    """Answers ``POST /v1/chat/completions`` as ``script(body)`` says; ``billed`` lists the usage
    of every generation it made (what a provider would charge for)."""

    handler_class = _Handler

    def __init__(self) -> None:
        super().__init__()
        self.script: Callable[[dict[str, Any]], Script] = lambda body: Script()
        self.billed: list[dict[str, int]] = []

    def bill(self, usage: dict[str, int]) -> None:
        with self._lock:
            self.billed.append(usage)

    def bodies(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.requests]

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"
