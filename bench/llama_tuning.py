"""Tune llama.cpp settings for the bundled model by measurement, and price the logprob recorder.

Two parts, one process, interleaved rounds, medians with min-max spread:

1. **Grid.** n_threads in {1, 2} x n_batch (= n_ubatch, as the router sets them) in
   {64, 128, 256, 512}: prompt processing of the ~510-token counting prompt from
   ``local_throughput.py`` (``Llama.eval`` after ``reset()``, so no cached prefix) and greedy
   generation of ``--gen-tokens`` tokens after it (``Llama.generate``, no logits processor).
   Each round visits every configuration once, in a rotated order, so slow spells caused by
   other processes on the shared cores spread over all of them.
2. **Logprob recorder.** Generation with the router's ``_LogprobRecorder`` (a llama.cpp custom
   sampler that computes a full log-softmax over the 262k vocabulary each step), with an
   identity processor (the custom-sampler plumbing alone), with no processor, and with the
   proposed alternative: no processor, and after each sampled token the logprob of that token
   alone, read from the context's logits (``llama_get_logits_ith``) with one logsumexp. The
   script checks that the proposed logprobs equal the recorder's. With one thread llama.cpp
   computes in the calling thread, so the thread's CPU time per token is printed beside wall
   time: other processes on the cores barely disturb it, and a few ms/token show.

Example:
    $ .venv/bin/python bench/llama_tuning.py --rounds 5 --gen-tokens 48
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_throughput import MODEL, N_CTX, counting_messages, load_average, spread

THREADS = (1, 2)
BATCHES = (64, 128, 256, 512)


def build(gguf: str, n_threads: int, n_batch: int) -> Any:
    """A Llama with the settings the router's ``load_llama`` would use."""
    from llama_cpp import Llama

    return Llama(model_path=gguf, n_ctx=N_CTX, n_threads=n_threads, n_threads_batch=n_threads,
                 n_batch=n_batch, n_ubatch=n_batch, verbose=False)


def prompt_tokens(llm: Any) -> list[int]:
    from router.providers.llamacpp import format_prompt

    prompt, _ = format_prompt(counting_messages(), "qa", llm)
    return llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)


def time_prompt(llm: Any, tokens: list[int]) -> float:
    """Seconds to process ``tokens`` from an empty context."""
    llm.reset()
    started = time.perf_counter()
    llm.eval(tokens)
    return time.perf_counter() - started


def time_generation(llm: Any, tokens: list[int], n: int, processors: Any = None,
                    after_token: Callable[[Any, int], Any] | None = None) -> tuple[float, float, list[Any]]:
    """Wall and this thread's CPU seconds for tokens 2..n of a greedy generation after
    ``tokens`` (already evaluated)."""
    seen: list[Any] = []
    started = cpu = 0.0
    for i, token in enumerate(llm.generate(tokens, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True,
                                           logits_processor=processors)):
        if after_token is not None:
            seen.append(after_token(llm, token))
        if i == 0:
            started, cpu = time.perf_counter(), time.thread_time()
        if i + 1 >= n:
            break
    return time.perf_counter() - started, time.thread_time() - cpu, seen


def grid(gguf: str, rounds: int, gen_tokens: int) -> None:
    configs = list(itertools.product(THREADS, BATCHES))
    models = {c: build(gguf, *c) for c in configs}
    tokens = prompt_tokens(next(iter(models.values())))
    pp: dict[tuple[int, int], list[float]] = {c: [] for c in configs}
    gen: dict[tuple[int, int], list[float]] = {c: [] for c in configs}
    print(f"grid: {len(tokens)}-token prompt, {gen_tokens} generated tokens, {rounds} rounds, "
          f"{load_average()}")
    for rnd in range(rounds):
        order = configs[rnd % len(configs):] + configs[:rnd % len(configs)]
        for c in order:
            llm = models[c]
            pp[c].append(len(tokens) / time_prompt(llm, tokens))
            seconds, _, _ = time_generation(llm, tokens, gen_tokens)
            gen[c].append((gen_tokens - 1) / seconds)
        print(f"  round {rnd + 1}/{rounds} done ({load_average()})", flush=True)
    print(f"\n{'n_threads':>9s} {'n_batch':>7s}  {'prompt tok/s median [min-max]':30s} "
          f"{'gen tok/s median [min-max]':28s}")
    for c in configs:
        print(f"{c[0]:9d} {c[1]:7d}  {spread(pp[c]):30s} {spread(gen[c]):28s}")
    best_pp = max(configs, key=lambda c: statistics.median(pp[c]))
    best_gen = max(configs, key=lambda c: statistics.median(gen[c]))
    default = (os.cpu_count() or 1, 512)
    print(f"\nbest prompt processing: n_threads={best_pp[0]}, n_batch={best_pp[1]}; "
          f"best generation: n_threads={best_gen[0]}, n_batch={best_gen[1]}")
    if default in pp:
        print(f"router default (n_threads={default[0]}, n_batch={default[1]}): "
              f"pp {statistics.median(pp[default]):.1f} tok/s, gen {statistics.median(gen[default]):.1f} tok/s")
    for llm in models.values():
        llm.close()


class _Identity:
    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return scores


def sampled_logprob(llm: Any, token: int) -> float:
    """The proposed replacement: the sampled token's logprob from the context's logits."""
    import llama_cpp

    row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(llm.n_vocab(),))
    top = float(row.max())
    return float(row[token]) - top - float(np.log(np.exp(row - top).sum()))


def recorder_cost(gguf: str, rounds: int, gen_tokens: int, n_threads: int, n_batch: int) -> None:
    from llama_cpp import LogitsProcessorList

    from router.providers.llama_runtime import _LogprobRecorder

    llm = build(gguf, n_threads, n_batch)
    tokens = prompt_tokens(llm)
    recorder = _LogprobRecorder()
    variants: dict[str, tuple[Any, Callable[[Any, int], Any] | None]] = {
        "no processor": (None, None),
        "identity processor": (LogitsProcessorList([_Identity()]), None),
        "_LogprobRecorder (now)": (LogitsProcessorList([recorder]), lambda _l, t: recorder.logprob(t)),
        "proposed: logits_ith + logsumexp": (None, sampled_logprob),
    }
    per_token: dict[str, list[float]] = {k: [] for k in variants}
    cpu_per_token: dict[str, list[float]] = {k: [] for k in variants}
    print(f"\nlogprob recorder: n_threads={n_threads}, n_batch={n_batch}, {gen_tokens} tokens, "
          f"{rounds} rounds, {load_average()}")
    names = list(variants)
    logprobs: dict[str, list[float]] = {}
    for rnd in range(rounds):
        for name in names[rnd % len(names):] + names[:rnd % len(names)]:
            processors, after = variants[name]
            llm.reset()
            llm.eval(tokens)
            seconds, cpu, seen = time_generation(llm, tokens, gen_tokens, processors, after)
            per_token[name].append(1000 * seconds / (gen_tokens - 1))
            cpu_per_token[name].append(1000 * cpu / (gen_tokens - 1))
            if seen:
                logprobs[name] = seen
    base = statistics.median(per_token["no processor"])
    cpu_base = statistics.median(cpu_per_token["no processor"])
    print(f"{'variant':36s} {'wall ms/token [min-max]':26s} {'extra':>7s}   "
          f"{'CPU ms/token [min-max]':26s} {'extra':>7s}")
    for name in names:
        med, cpu_med = statistics.median(per_token[name]), statistics.median(cpu_per_token[name])
        print(f"{name:36s} {spread(per_token[name], '{:.2f}'):26s} {med - base:+7.2f}   "
              f"{spread(cpu_per_token[name], '{:.2f}'):26s} {cpu_med - cpu_base:+7.2f}")
    if n_threads != 1:
        print("(CPU ms counts the calling thread only: with n_threads > 1 llama.cpp's workers are not in it)")
    now, new = logprobs["_LogprobRecorder (now)"], logprobs["proposed: logits_ith + logsumexp"]
    print(f"proposed logprobs equal the recorder's: {np.allclose(now, new, atol=1e-3)} "
          f"(max |diff| {max(abs(a - b) for a, b in zip(now, new, strict=True)):.2e}, mean {np.mean(now):.3f})")
    scores = np.random.default_rng(0).normal(size=llm.n_vocab()).astype(np.float32)
    strided = np.recarray((scores.size,), dtype=np.dtype([("id", np.intc), ("logit", np.single),
                                                          ("p", np.single)], align=True)).logit
    strided[:] = scores
    for label, fn in (("recorder math alone (strided view)", lambda: recorder(None, strided)),
                      ("logsumexp alone (contiguous row)", lambda: sampled_logprob_math(scores, 7))):
        started = time.perf_counter()
        for _ in range(200):
            fn()
        print(f"{label:36s} {1000 * (time.perf_counter() - started) / 200:.2f} ms/call")
    llm.close()


def sampled_logprob_math(row: np.ndarray, token: int) -> float:
    top = float(row.max())
    return float(row[token]) - top - float(np.log(np.exp(row - top).sum()))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gen-tokens", type=int, default=48)
    parser.add_argument("--only", choices=("grid", "recorder"), default=None)
    parser.add_argument("--recorder-threads", type=int, default=1)
    parser.add_argument("--recorder-batch", type=int, default=512)
    args = parser.parse_args(argv)

    from router.providers.llamacpp import resolve_gguf

    gguf = str(resolve_gguf(MODEL))
    if args.only in (None, "grid"):
        grid(gguf, args.rounds, args.gen_tokens)
    if args.only in (None, "recorder"):
        recorder_cost(gguf, args.rounds, args.gen_tokens, args.recorder_threads, args.recorder_batch)


if __name__ == "__main__":
    main()
