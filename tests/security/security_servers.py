"""Loopback servers for the attack tests: an OpenAI-compatible chat server (which can echo the
caller's key back in an error, as some gateways do), a forward proxy and a LangSmith endpoint
that record everything they receive. All on 127.0.0.1, standard library only."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

from servers._base import QuietHandler, RecordedRequest, ThreadedTestServer


def completion(model: str, text: str, finish: str = "stop") -> dict[str, Any]:
    return {"id": "chatcmpl-sec", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}


class _ChatHandler(QuietHandler):
    server_state: FakeOpenAIServer

    def do_GET(self) -> None:  # noqa: N802 (stdlib's name)
        self._answer("GET", b"")

    def do_POST(self) -> None:  # noqa: N802 (stdlib's name)
        self._answer("POST", self.read_body())

    def _answer(self, method: str, body: bytes) -> None:
        state = self.server_state
        headers = {k.lower(): v for k, v in self.headers.items()}
        model = None
        try:
            model = json.loads(body or b"{}").get("model")
        except ValueError:
            model = None
        state.record(RecordedRequest(method, self.path, headers, body, model=model))
        if not self.path.endswith("/chat/completions"):
            return self.send_json(404, {"error": {"message": "not found"}})
        if state.echo_key:
            # A gateway that quotes the credential it refused.
            auth = headers.get("authorization", "")
            return self.send_json(401, {"error": {"message": f"Incorrect API key provided: {auth} "
                                                             f"(key={auth.removeprefix('Bearer ')})",
                                                  "type": "invalid_request_error", "code": "invalid_api_key"}})
        try:
            stream = bool(json.loads(body or b"{}").get("stream"))
        except ValueError:
            stream = False
        reply, finish = state.scripts.get(model or "", (state.reply, "stop"))
        if not stream:
            return self.send_json(200, completion(model or "?", reply, finish))
        self.start_chunked(200, "text/event-stream")
        base = {"id": "chatcmpl-sec", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": model or "?"}
        for choice in ({"index": 0, "delta": {"role": "assistant", "content": reply}, "finish_reason": None},
                       {"index": 0, "delta": {}, "finish_reason": finish}):
            self.write_chunk(b"data: " + json.dumps({**base, "choices": [choice]}).encode() + b"\n\n")
        self.write_chunk(b"data: [DONE]\n\n")
        self.end_chunked()


class FakeOpenAIServer(ThreadedTestServer):
    """Answers ``POST .../chat/completions`` with a fixed reply (or, with ``echo_key``, a 401 that
    quotes the Authorization header, as some gateways do). Also usable as an HTTP forward proxy: a proxied request's
    path is the absolute URL, and it is answered the same way. ``scripts`` maps a model name to its
    own ``(reply, finish_reason)`` (``"length"``: an answer cut off at max_tokens)."""

    handler_class = _ChatHandler

    def __init__(self, reply: str = "Paris is the capital of France.", *, echo_key: bool = False,
                 scripts: dict[str, tuple[str, str]] | None = None) -> None:
        super().__init__()
        self.reply = reply
        self.echo_key = echo_key
        self.scripts = dict(scripts or {})

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"


class _SinkHandler(QuietHandler):
    server_state: TracerSink

    def do_GET(self) -> None:  # noqa: N802 (stdlib's name)
        self._take("GET", b"")

    def do_POST(self) -> None:  # noqa: N802 (stdlib's name)
        self._take("POST", self.read_body())

    def do_PATCH(self) -> None:  # noqa: N802 (stdlib's name)
        self._take("PATCH", self.read_body())

    def _take(self, method: str, body: bytes) -> None:
        encoding = (self.headers.get("content-encoding") or "").lower()
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "zstd":
            import zstandard

            body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
        self.server_state.record(RecordedRequest(method, self.path, {k.lower(): v for k, v in self.headers.items()},
                                                 body))
        self.send_json(200, {} if method == "GET" else {"ok": True})


class TracerSink(ThreadedTestServer):
    """A LangSmith endpoint that accepts and records every request (bodies decompressed)."""

    handler_class = _SinkHandler

    def received(self) -> bytes:
        return b"\n".join(r.body for r in self.requests)
