"""Tokens/s of the bundled local model through ``PolicyRouter`` beside raw llama-cpp-python.

One script, one run, one process: the router (a local-only policy on ``bundled:gemma-3-270m``,
``chat_format: qa``) and a raw ``llama_cpp.Llama`` built with the same n_ctx, n_threads,
n_batch (= n_ubatch) answer the same prompt with the same sampling settings (temperature 0,
i.e. greedy) and the same number of generated tokens. It prints prompt-processing and
generation tokens/s for both and the ratio router/raw.

What is measured, and why it is honest:

* **Same prompt, same stops, no tricks.** The router runs as a user runs it: ``qa`` format,
  whose stop list is ``["\\n", "Question:"]``. The raw baseline gets the identical prompt
  string (rendered by the router's own ``format_prompt``) and the identical stop list. To get a
  long generation without changing the stop list, the prompt is a counting exchange: one turn
  counting to 120 (which also makes the prompt ~510 tokens, a real prompt-processing load), then
  "Count from 1 to 500": the greedy answer is one long line, so both sides generate exactly
  ``--max-tokens`` tokens. The script checks that both produced the same tokens and text.
* **No KV-cache shortcut.** llama-cpp-python reuses the longest cached prefix of the previous
  prompt; repeating one prompt would skip prompt processing. Before every run both models are
  ``reset()`` so each run processes the whole prompt, as a fresh request would.
* **Split without instrumentation.** Each repetition runs each side twice: ``max_tokens=1``
  (time to first token = prompt processing + one step; pp tok/s = prompt tokens / t1) and
  ``max_tokens=N`` (generation tok/s = (N - 1) / (tN - t1)). The router is timed around
  ``router.invoke`` (planning, token counting, checks and the decision record included); the
  raw side around ``Llama.create_completion``.
* **Shared machine.** Other processes load the cores, so runs are interleaved (ABBA: router,
  raw, raw, router, ...), the ratio is taken per repetition, and medians with min-max spread
  are printed next to the load average. With ``--n-threads 1`` llama.cpp computes in the
  calling thread, so the thread's CPU time of a whole run is also printed: it measures the work
  done, and is far less disturbed by other processes than wall time.

Example:
    $ .venv/bin/python bench/local_throughput.py --reps 5 --max-tokens 128 --n-threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

MODEL = "bundled:gemma-3-270m"
N_CTX = 2048

POLICY = """
version: 1
name: bench-local
models:
  gemma:
    provider: llamacpp
    gguf: {gguf}
    chat_format: qa
    tier: basic
    local: true
    context_window: {n_ctx}
{threads_line}    n_batch: {n_batch}
policy:
  offline: true
  max_output_tokens: {max_tokens}
  temperature: 0
  cascade: [gemma]
  confidence: []
"""


def counting_messages(shown: int = 120) -> list[BaseMessage]:
    """A two-turn counting exchange: ~510 prompt tokens, and a one-line greedy answer.

    Example:
        >>> counting_messages(3)[1].content
        '1, 2, 3'
    """
    return [HumanMessage(f"Count from 1 to {shown}, separated by commas."),
            AIMessage(", ".join(str(i) for i in range(1, shown + 1))),
            HumanMessage("Count from 1 to 500, separated by commas.")]


def spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    """``median [min-max]`` of ``values``.

    Example:
        >>> spread([1.0, 3.0, 2.0])
        '2.0 [1.0-3.0]'
    """
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def load_average() -> str:
    """The 1-minute load average and the core count, for reading numbers from a shared machine."""
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


@dataclass
class Run:
    seconds: float
    cpu_seconds: float
    prompt_tokens: int
    output_tokens: int
    text: str


class RouterSide:
    """``PolicyRouter.invoke`` on a one-model local policy."""

    name = "router"

    def __init__(self, gguf: str, n_threads: int | None, n_batch: int, max_tokens: int) -> None:
        from router import PolicyRouter, loads_policy
        from router.providers.llamacpp import load_llama

        threads_line = f"    n_threads: {n_threads}\n" if n_threads else ""
        text = POLICY.format(gguf=gguf, n_ctx=N_CTX, threads_line=threads_line, n_batch=n_batch,
                             max_tokens=max_tokens)
        self.router = PolicyRouter(policy=loads_policy(text, "bench.yaml"))
        # The very Llama the router's chat model will use (load_llama caches by settings).
        self.llm = load_llama(gguf, n_ctx=N_CTX, n_threads=n_threads, n_batch=n_batch).llm

    def run(self, messages: list[BaseMessage], max_tokens: int) -> Run:
        self.llm.reset()
        config: Any = {"configurable": {"max_output_tokens": max_tokens}}
        started, cpu = time.perf_counter(), time.thread_time()
        msg = self.router.invoke(messages, config=config)
        seconds, cpu = time.perf_counter() - started, time.thread_time() - cpu
        attempt = msg.response_metadata["routing"]["attempts"][0]
        return Run(seconds, cpu, attempt["input_tokens"], attempt["output_tokens"], str(msg.content))


class RawSide:
    """``llama_cpp.Llama.create_completion`` with the router's settings and sampling."""

    name = "raw"

    def __init__(self, gguf: str, n_threads: int | None, n_batch: int, prompt: str,
                 stop: list[str]) -> None:
        from llama_cpp import Llama

        threads = n_threads or os.cpu_count() or 1  # what the router's load_llama does
        self.llm = Llama(model_path=gguf, n_ctx=N_CTX, n_threads=threads, n_threads_batch=threads,
                         n_batch=n_batch, n_ubatch=n_batch, verbose=False)
        self.prompt, self.stop = prompt, stop

    def run(self, messages: list[BaseMessage], max_tokens: int) -> Run:
        self.llm.reset()
        started, cpu = time.perf_counter(), time.thread_time()
        out = self.llm.create_completion(self.prompt, max_tokens=max_tokens, temperature=0.0, top_k=1,
                                         top_p=0.95, min_p=0.05, repeat_penalty=1.0, stop=self.stop)
        seconds, cpu = time.perf_counter() - started, time.thread_time() - cpu
        usage = out["usage"]
        return Run(seconds, cpu, usage["prompt_tokens"], usage["completion_tokens"], out["choices"][0]["text"])

    def close(self) -> None:
        self.llm.close()


@dataclass
class Rates:
    pp: list[float]
    gen: list[float]
    total_s: list[float]
    cpu_s: list[float]


def measure(sides: Sequence[RouterSide | RawSide], messages: list[BaseMessage], reps: int,
            max_tokens: int, log: Callable[[str], None] = print) -> tuple[dict[str, Rates], list[Run]]:
    """Interleave the sides ABBA; per side, pp and gen tok/s for every repetition."""
    rates = {s.name: Rates([], [], [], []) for s in sides}
    last: list[Run] = []
    for rep in range(reps):
        order = list(sides) if rep % 2 == 0 else list(reversed(sides))
        for side in order:
            first = side.run(messages, 1)
            full = side.run(messages, max_tokens)
            gen_s = full.seconds - first.seconds
            r = rates[side.name]
            r.pp.append(first.prompt_tokens / first.seconds)
            r.gen.append((full.output_tokens - 1) / gen_s if gen_s > 0 else float("nan"))
            r.total_s.append(full.seconds)
            r.cpu_s.append(full.cpu_seconds)
            last.append(full)
            log(f"  rep {rep + 1}/{reps} {side.name:6s}: ttft {first.seconds:.3f}s, "
                f"{full.output_tokens} tokens in {full.seconds:.2f}s ({load_average()})")
    return rates, last


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--n-threads", type=int, default=None, help="default: the router's (all cores)")
    parser.add_argument("--n-batch", type=int, default=512)
    args = parser.parse_args(argv)

    from router.providers.llamacpp import format_prompt, resolve_gguf

    gguf = str(resolve_gguf(MODEL))
    messages = counting_messages()
    router_side = RouterSide(gguf, args.n_threads, args.n_batch, args.max_tokens)
    prompt, stop = format_prompt(messages, "qa", router_side.llm)
    raw_side = RawSide(gguf, args.n_threads, args.n_batch, prompt, stop)
    threads = args.n_threads or os.cpu_count()
    print(f"model {MODEL}; n_ctx {N_CTX}, n_threads {threads}, n_batch = n_ubatch {args.n_batch}; "
          f"greedy; max_tokens {args.max_tokens}; stop {stop!r}; {args.reps} reps, ABBA-interleaved")
    print(f"start: {load_average()}")
    router_side.run(messages, 2)  # warm-up: load weights, build the chat model
    raw_side.run(messages, 2)
    rates, runs = measure([router_side, raw_side], messages, args.reps, args.max_tokens)
    print(f"end: {load_average()}")

    by_side = {r.text for r in runs}
    tokens = {r.output_tokens for r in runs}
    prompt_tokens = {r.prompt_tokens for r in runs}
    print(f"prompt tokens {sorted(prompt_tokens)}, generated tokens {sorted(tokens)}, "
          f"identical text on both sides: {len(by_side) == 1}")
    print(f"\n{'':8s} {'prompt tok/s  median [min-max]':34s} {'gen tok/s  median [min-max]':32s} "
          f"{'total s':22s} this thread's CPU s")
    for name, r in rates.items():
        print(f"{name:8s} {spread(r.pp):34s} {spread(r.gen):32s} {spread(r.total_s, '{:.2f}'):22s} "
              f"{spread(r.cpu_s, '{:.2f}')}")
    ro, raw = rates["router"], rates["raw"]
    pp_ratio = [a / b for a, b in zip(ro.pp, raw.pp, strict=True)]
    gen_ratio = [a / b for a, b in zip(ro.gen, raw.gen, strict=True)]
    print(f"{'ratio':8s} {spread(pp_ratio, '{:.3f}'):34s} {spread(gen_ratio, '{:.3f}'):32s}"
          f"{spread([a / b for a, b in zip(ro.total_s, raw.total_s, strict=True)], '{:.3f}'):22s} "
          f"{spread([a / b for a, b in zip(ro.cpu_s, raw.cpu_s, strict=True)], '{:.3f}')}   (router/raw, per repetition)")
    if threads != 1:
        print("(CPU s counts the calling thread only: with n_threads > 1 llama.cpp's workers are not in it)")
    raw_side.close()


if __name__ == "__main__":
    main()
