"""Local models through llama-cpp-python, as a thin LangChain chat model.

Why our own chat model rather than langchain-community's ``ChatLlamaCpp``: that one defaults to
n_ctx=512 and n_batch=8, never sets ``usage_metadata``, and gives logprobs only with
``logits_all=True`` (which, with Gemma's 262k vocabulary, made generation ~35x slower). Ours (on
:mod:`router.providers.llama_runtime`) records each sampled token's logprob as it generates, sets
usage, loads each model file once per process and shares it under a lock.

Example:
    >>> chat = LlamaCppChat(model_path=str(resolve_gguf("bundled:gemma-3-270m")), chat_format="qa")
    >>> chat.invoke("What is the capital of France?").content
    ' Paris'
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from router.errors import ProviderError
from router.policy.policy_file import ModelSpec
from router.providers import openai_style_logprobs
from router.providers.llama_runtime import (
    BUNDLED,
    DEFAULT_CONTEXT,
    GgufUnavailableError,
    Loaded,
    Step,
    format_prompt,
    generate,
    load_llama,
    resolve_gguf,
    tokenizer_for,
)

__all__ = ["BUNDLED", "GgufUnavailableError", "LlamaCppChat", "format_prompt", "load_llama", "resolve_gguf"]


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

    def _loaded(self) -> Loaded:
        return load_llama(self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads, n_batch=self.n_batch)

    def count_prompt_tokens(self, messages: Sequence[BaseMessage]) -> int:
        loaded = self._loaded()
        prompt, _ = format_prompt(messages, self.chat_format, loaded.llm)
        return len(loaded.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))

    def _steps(self, messages: list[BaseMessage], stop: list[str] | None,
               kwargs: dict[str, Any]) -> Iterator[Step | dict[str, Any]]:
        loaded = self._loaded()
        tools = kwargs.get("tools")
        grammar = None
        if tools:
            messages, grammar = _tool_prompt(messages, tools, kwargs.get("tool_choice"))
        prompt, format_stop = format_prompt(messages, self.chat_format, loaded.llm)
        stops = [] if grammar is not None else list(stop or self.stop or format_stop)
        return generate(loaded, prompt, max_tokens=int(kwargs.get("max_tokens") or self.max_tokens),
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
        loaded = tokenizer_for(str(resolve_gguf(spec.gguf)), n_ctx=spec.context_window or DEFAULT_CONTEXT,
                               n_batch=spec.n_batch)
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
