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
from router.providers.base import COMMON_FINISH_REASONS, BaseAdapter
from router.providers.hub import GgufNotDownloadedError
from router.providers.llama_count import count_prompt_tokens
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
from router.providers.llama_tools import ToolChoiceError, ToolPlan, plan_tools, resolve_tool_choice

RESTARTED = object()
"""Yielded by ``LlamaCppChat._steps`` when a free pass is dropped for a constrained one."""

__all__ = ["BUNDLED", "GgufUnavailableError", "LlamaCppChat", "ToolChoiceError", "format_prompt", "load_llama",
           "resolve_gguf"]


class LlamaCppChat(BaseChatModel):
    """A llama.cpp GGUF as a LangChain chat model with usage and per-token logprobs.

    Supports ``bind_tools`` / ``with_structured_output`` by constraining generation with a
    grammar built from the tools' JSON schemas, so even a small base model returns valid
    arguments; with ``tool_choice`` auto the grammar also allows a text answer
    (:mod:`router.providers.llama_tools`).
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
    prefix_cache: bool = False
    """Keep the KV cache between generations and evaluate only a prompt's new suffix (faster on a
    growing chat history). Off by default: the same prompt then scores slightly differently
    depending on what ran before (see :func:`router.providers.llama_runtime.generate`)."""
    stop: list[str] | None = Field(default=None)
    max_tool_rounds: int = 1
    """With ``tool_choice`` auto: tool turns after the last user message before the model must
    answer in text (a small model otherwise repeats its call until the agent gives up)."""

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
        return count_prompt_tokens(loaded.llm, prompt)  # linear time on a long conversation

    def _tool_plan(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ToolPlan | None:
        tools = kwargs.get("tools")
        if not tools:
            return None
        return plan_tools(messages, tools, kwargs.get("tool_choice"), max_tool_rounds=self.max_tool_rounds)

    def _pass(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any],
              grammar: Any, stops: bool) -> Iterator[Step | dict[str, Any]]:
        loaded = self._loaded()
        prompt, format_stop = format_prompt(messages, self.chat_format, loaded.llm)
        return generate(loaded, prompt, max_tokens=int(kwargs.get("max_tokens") or self.max_tokens),
                        temperature=float(kwargs.get("temperature", self.temperature)),
                        stop=list(stop or self.stop or format_stop) if stops else [],
                        grammar=grammar, seed=kwargs.get("seed", self.seed), prefix_cache=self.prefix_cache)

    def _steps(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any],
               plan: ToolPlan | None) -> Iterator[Step | dict[str, Any] | object]:
        """Generation steps, then the usage dict. With a lazy tool plan (``auto``, or answering
        after tool results) the model first writes freely, at full speed; if its reply opens with
        ``{`` that pass is dropped (its few tokens are not counted), :data:`RESTARTED` is yielded,
        and the reply is generated again under the plan's grammar. A forced call's JSON runs under
        its grammar from the start and without stop strings (a newline must not cut it)."""
        if plan is None:
            yield from self._pass(messages, stop, kwargs, None, stops=True)
            return
        if not plan.lazy:
            yield from self._pass(plan.messages, stop, kwargs, plan.grammar, stops=plan.mode != "call")
            return
        free = self._pass(plan.messages, stop, kwargs, None, stops=True)
        held: list[Step | dict[str, Any]] = []
        opening = ""
        for step in free:
            held.append(step)
            opening += step.text if isinstance(step, Step) else ""
            if opening.strip() or isinstance(step, dict):
                break
        if opening.lstrip().startswith("{") and plan.grammar is not None:
            free.close()  # releases the model for the constrained pass
            yield RESTARTED
            yield from self._pass(plan.messages, stop, kwargs, plan.grammar, stops=True)
            return
        yield from held
        yield from free

    def _token_text(self, token: int) -> str:
        return self._loaded().llm.detokenize([token]).decode("utf-8", errors="replace")

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        plan = self._tool_plan(messages, kwargs)
        message = self._collect(self._steps(messages, stop, kwargs, plan), plan)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _collect(self, steps: Iterator[Step | dict[str, Any] | object], plan: ToolPlan | None) -> AIMessage:
        text: list[str] = []
        logprobs: list[dict[str, Any]] = []
        info: dict[str, Any] = {}
        for step in steps:
            if step is RESTARTED:
                text, logprobs = [], []
            elif isinstance(step, dict):
                info = step
            elif isinstance(step, Step):
                text.append(step.text)
                if step.token >= 0:
                    logprobs.append({"token": self._token_text(step.token), "logprob": step.logprob})
        return self._final_message("".join(text), logprobs, info, plan)

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        """Stream text as it is generated. A tool call arrives as one chunk once it is complete
        (its JSON is only parsed then); a text answer with tools bound streams like any other."""
        plan = self._tool_plan(messages, kwargs)
        steps = self._steps(messages, stop, kwargs, plan)
        if plan is not None and not plan.lazy:
            yield self._whole(self._collect(steps, plan), run_manager)
            return
        for step in steps:
            if step is RESTARTED:  # the reply is JSON: generated under the grammar, sent whole
                yield self._whole(self._collect(steps, plan), run_manager)
                return
            if isinstance(step, dict):
                chunk = AIMessageChunk(content="", usage_metadata=_usage(step), chunk_position="last",
                                       response_metadata=self._metadata(step))
            elif isinstance(step, Step):
                lp = [{"token": self._token_text(step.token), "logprob": step.logprob}] if step.token >= 0 else []
                chunk = AIMessageChunk(content=step.text, response_metadata={"logprobs": {"content": lp}})
            else:
                continue
            if run_manager and isinstance(chunk.content, str) and chunk.content:
                run_manager.on_llm_new_token(chunk.content, chunk=ChatGenerationChunk(message=chunk))
            yield ChatGenerationChunk(message=chunk)

    @staticmethod
    def _whole(msg: AIMessage, run_manager: CallbackManagerForLLMRun | None) -> ChatGenerationChunk:
        chunk = AIMessageChunk(content=msg.content, tool_call_chunks=[
            {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
            for i, c in enumerate(msg.tool_calls)], usage_metadata=msg.usage_metadata,
            response_metadata=msg.response_metadata, chunk_position="last")
        if run_manager and isinstance(chunk.content, str) and chunk.content:
            run_manager.on_llm_new_token(chunk.content, chunk=ChatGenerationChunk(message=chunk))
        return ChatGenerationChunk(message=chunk)

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
                       plan: ToolPlan | None) -> AIMessage:
        metadata = {**self._metadata(info), "logprobs": {"content": logprobs}}
        content, calls = plan.reply(text) if plan is not None else (text, [])
        if calls and metadata["finish_reason"] == "stop":
            metadata["finish_reason"] = "tool_calls"
        return AIMessage(content=content, tool_calls=calls, usage_metadata=_usage(info), response_metadata=metadata)

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        """Constrain replies to calls of ``tools`` (see :mod:`router.providers.llama_tools` for
        each ``tool_choice``); a ``tool_choice`` naming no bound tool is a :class:`ToolChoiceError`."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        resolve_tool_choice(tool_choice, formatted)
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)


def _usage(info: dict[str, Any]) -> dict[str, int] | None:
    if not info:
        return None
    i, o = int(info["input_tokens"]), int(info["output_tokens"])
    return {"input_tokens": i, "output_tokens": o, "total_tokens": i + o}


# --------------------------------------------------------------------------- adapter


class _LlamaCppAdapter(BaseAdapter):
    name = "llamacpp"
    network = False
    local_rule = "required"
    required_fields = ("gguf",)
    field_hints = {"gguf": " (a path or bundled:gemma-3-270m)"}
    finish_reasons = COMMON_FINISH_REASONS
    supports_logprobs = True
    supports_tools = True
    per_event_loop = False
    reports_finish_reason = True

    def unavailable_reason(self, spec: ModelSpec, env_hint: str | None) -> str | None:
        try:
            resolve_gguf(spec.gguf, env_hint)
        except GgufNotDownloadedError as err:
            return str(err)  # "not downloaded: run `router pull ...`"
        except GgufUnavailableError as err:
            return f"unavailable: {err}"
        return None

    def count_tokens(self, spec: ModelSpec, messages: Sequence[BaseMessage]) -> int:
        loaded = tokenizer_for(str(resolve_gguf(spec.gguf)), n_ctx=spec.context_window or DEFAULT_CONTEXT,
                               n_batch=spec.n_batch)
        prompt, _ = format_prompt(messages, spec.chat_format or "qa", loaded.llm)
        # Linear in the prompt, and only up to what shows it cannot fit the window.
        return count_prompt_tokens(loaded.llm, prompt, stop_above=spec.context_window or DEFAULT_CONTEXT)

    def tool_tokens(self, spec: ModelSpec, tools: Sequence[dict[str, Any]]) -> int:
        return 0  # free, and its prompt (tools included) is counted by count_tokens

    def build(self, name: str, spec: ModelSpec) -> BaseChatModel:
        return LlamaCppChat(model_path=str(resolve_gguf(spec.gguf)), model_name=name,
                            chat_format=spec.chat_format or "qa",
                            n_ctx=spec.context_window or DEFAULT_CONTEXT,
                            n_threads=spec.n_threads, n_batch=spec.n_batch, prefix_cache=spec.prefix_cache)

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
