"""llama-cpp-python's own OpenAI-compatible server, serving the bundled GGUF, behind a counting proxy.

:class:`LlamaOpenAIServer` starts ``python -m llama_cpp.server --model PATH --model_alias
gpt-3.5-turbo --host 127.0.0.1 --port N --api_key KEY`` as a subprocess, waits until
``GET /v1/models`` answers, and puts a small threaded proxy (the same base as the Gemini test
server) in front of it. Clients talk to the proxy (:attr:`base_url`); the proxy records every
request (path, headers, JSON body, the ``model`` asked for), can be told to fail the next N
requests (429 with ``Retry-After``, 500, 503, hang, malformed JSON, disconnect) and otherwise
forwards to the real server, streaming SSE replies through chunk by chunk. Reply faults rewrite
the real server's reply: ``truncate`` (``finish_reason: length``), ``no_final`` (no finish reason;
a stream loses its finishing event and ``[DONE]``), ``over_report`` (usage plus
``OVER_REPORT_TOKENS``; non-streamed replies only: this server sends no usage in streams).

The upstream checks the ``Authorization: Bearer`` key itself (``--api_key``), so a test sees a
real 401 for a wrong key.

The bundled Gemma-3-270M is a base model: through its own chat template it answers nothing
at temperature 0. The ``snoozy`` chat format (``### Prompt:`` / ``### Response:``, stop at
``###``) makes it answer short factual questions (" Paris" for the capital of France), so it is
the default here.

Known behaviour of this server (llama-cpp-python 0.3): it ignores ``max_completion_tokens``
(send ``max_tokens``), sends no ``usage`` in streams, and returns logprobs only when started
with ``logits_all=True`` (pass ``logits_all=True`` here; keep ``max_tokens`` small, the
262k-token vocabulary makes it slow).

Example:
    >>> with LlamaOpenAIServer(gguf_path, api_key="sk-test") as server:
    ...     llm = ChatOpenAI(model="gpt-3.5-turbo", base_url=server.base_url, api_key="sk-test")
    ...     llm.invoke("Question: What is the capital of France?\\nAnswer:")
    ...     server.count("gpt-3.5-turbo")
    1
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from ._base import OVER_REPORT_TOKENS, REPLY_FAULTS, QuietHandler, RecordedRequest, ThreadedTestServer

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-authorization", "proxy-authenticate", "host", "content-length"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _ProxyHandler(QuietHandler):
    server_state: LlamaOpenAIServer

    def do_GET(self) -> None:  # noqa: N802 (stdlib's name)
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802 (stdlib's name)
        self._handle("POST")

    def _handle(self, method: str) -> None:
        state = self.server_state
        body = self.read_body()
        try:
            model = json.loads(body).get("model") if body else None
            stream = bool(json.loads(body).get("stream")) if body else False
        except (ValueError, AttributeError):
            model, stream = None, False
        counted = self.path.startswith("/v1/") and method == "POST"
        fault = state.faults.take() if counted else None
        if counted:
            state.record(RecordedRequest(method, self.path, {k.lower(): v for k, v in self.headers.items()},
                                         body, model, stream, fault.mode if fault else None))
        if fault is not None and fault.mode not in REPLY_FAULTS:
            return self._fault(fault)
        self._forward(method, body, fault.mode if fault is not None else None)

    def _fault(self, fault: Any) -> None:
        error = {"error": {"message": f"injected {fault.mode}", "type": fault.mode, "code": None}}
        if fault.mode == "rate_limit":
            self.send_json(429, error, headers={"Retry-After": f"{fault.retry_after_s:g}"})
        elif fault.mode in ("server", "unavailable"):
            self.send_json(500 if fault.mode == "server" else 503, error)
        elif fault.mode == "malformed":
            self.send_bytes(200, b'{"id": "chatcmpl-x", "choices": [{"message": {"content": "Par')
        elif fault.mode == "hang":
            self.server_state.stopping.wait(fault.hang_s)
            self.drop_connection()
        else:
            self.drop_connection()

    def _forward(self, method: str, body: bytes, rewrite: str | None = None) -> None:
        state = self.server_state
        upstream = http.client.HTTPConnection("127.0.0.1", state.upstream_port, timeout=state.upstream_timeout_s)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            upstream.request(method, self.path, body=body or None, headers=headers)
            reply = upstream.getresponse()
            reply_headers = {k: v for k, v in reply.getheaders() if k.lower() not in _HOP_BY_HOP}
            if reply.getheader("content-type", "").startswith("text/event-stream"):
                self.send_response(reply.status)
                for name, value in reply_headers.items():
                    self.send_header(name, value)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                if rewrite is not None:  # the real reply, whole, then its events rewritten
                    for event in _rewrite_stream(reply.read(), rewrite):
                        self.write_chunk(event)
                while data := reply.read1(65536):
                    self.write_chunk(data)
                self.end_chunked()
            else:
                content_type = reply_headers.pop("content-type", "application/json")
                reply_headers = {k: v for k, v in reply_headers.items() if k.lower() != "content-type"}
                data = reply.read()
                if rewrite is not None and reply.status == 200:
                    data = _rewrite_reply(data, rewrite)
                self.send_bytes(reply.status, data, content_type, reply_headers)
        finally:
            upstream.close()


def _rewrite_reply(data: bytes, mode: str) -> bytes:
    """A real chat completion made wrong: ``truncate`` says ``finish_reason: length``,
    ``no_final`` drops the finish reason, ``over_report`` inflates both usage counts."""
    reply = json.loads(data)
    for choice in reply.get("choices") or []:
        if mode in ("truncate", "no_final"):
            choice["finish_reason"] = "length" if mode == "truncate" else None
    usage = reply.get("usage") or {}
    if mode == "over_report" and usage:
        usage["prompt_tokens"] += OVER_REPORT_TOKENS
        usage["completion_tokens"] += OVER_REPORT_TOKENS
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return json.dumps(reply).encode()


def _rewrite_stream(data: bytes, mode: str) -> list[bytes]:
    """A real SSE stream made wrong: ``no_final`` ends it without the event carrying the
    finish reason and without ``[DONE]``; ``truncate`` turns the finish reason into ``length``."""
    events = []
    for raw in data.split(b"\n\n"):
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            if mode != "no_final":
                events.append(b"data: [DONE]\n\n")
            continue
        event = json.loads(payload)
        finishing = any(c.get("finish_reason") for c in event.get("choices") or [])
        if finishing and mode == "no_final":
            continue
        if finishing and mode == "truncate":
            for choice in event["choices"]:
                choice["finish_reason"] = "length"
        events.append(b"data: " + json.dumps(event).encode() + b"\n\n")
    return events


class LlamaOpenAIServer(ThreadedTestServer):
    """The real llama.cpp OpenAI-compatible server (subprocess) behind a counting proxy.

    ``base_url`` (``http://127.0.0.1:PORT/v1``) is what ``ChatOpenAI(base_url=...)`` or
    ``OPENAI_BASE_URL`` takes.
    """

    handler_class = _ProxyHandler

    def __init__(self, model_path: str | os.PathLike[str], *, alias: str = "gpt-3.5-turbo",
                 api_key: str = "sk-test-llama-key", chat_format: str = "snoozy", logits_all: bool = False,
                 n_ctx: int = 512,
                 n_threads: int | None = None, startup_timeout_s: float = 90.0,
                 upstream_timeout_s: float = 120.0) -> None:
        super().__init__()
        self.model_path = Path(model_path)
        self.alias = alias
        self.api_key = api_key
        self.chat_format = chat_format
        self.logits_all = logits_all
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, os.cpu_count() or 1)
        self.startup_timeout_s = startup_timeout_s
        self.upstream_timeout_s = upstream_timeout_s
        self.upstream_port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_path),
                "--model_alias", self.alias, "--host", "127.0.0.1", "--port", str(self.upstream_port),
                "--api_key", self.api_key, "--chat_format", self.chat_format, "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads),
                "--logits_all", str(self.logits_all), "--verbose", "False"]

    def start(self) -> LlamaOpenAIServer:
        """Start the upstream, wait until it serves, then start the proxy."""
        if self._process is not None:
            return self
        self.upstream_port = free_port()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "GOOGLE_API_KEY")}
        self._process = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=env)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        super().start()
        return self

    def __enter__(self) -> LlamaOpenAIServer:
        return self.start()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self._process.returncode}:\n{self.log_tail()}")
            conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=2)
            try:
                conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {self.api_key}"})
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass  # not listening yet
            finally:
                conn.close()
            time.sleep(0.1)
        raise TimeoutError(f"llama_cpp.server not ready after {self.startup_timeout_s}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the upstream server's output (for failure messages)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-chars:]

    def stop(self) -> None:
        super().stop()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def warm_up(self, max_tokens: int = 2) -> None:
        """One uncounted completion straight to the upstream (the first one pays for loading)."""
        body = json.dumps({"model": self.alias, "max_tokens": max_tokens, "temperature": 0,
                           "messages": [{"role": "user", "content": "Hello"}]})
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=self.upstream_timeout_s)
        try:
            conn.request("POST", "/v1/chat/completions", body=body,
                         headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"})
            conn.getresponse().read()
        finally:
            conn.close()

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    @property
    def upstream_url(self) -> str:
        """The llama.cpp server itself, bypassing the proxy (uncounted)."""
        return f"http://127.0.0.1:{self.upstream_port}/v1"
