"""What resetting the KV cache before each local generation costs: prompt re-evaluation.

A 16-turn chat history grows by one question and answer per turn; each turn asks the local model
(bundled Gemma-3-270M, ``qa`` format) for a short answer with the whole history as its prompt.
``reset`` (the default: reproducible decisions) evaluates the whole prompt every turn;
``prefix_cache: true`` keeps the KV cache and evaluates only the new suffix. Both run in this
process, interleaved per round, and the ratio is printed (reset / prefix), with whether the two
produced the same answers.

Run: ``.venv/bin/python bench/prefix_cache.py [rounds]``
"""

from __future__ import annotations

import sys
import time

from langchain_core.messages import AIMessage, HumanMessage

from router.providers.llama_runtime import resolve_gguf
from router.providers.llamacpp import LlamaCppChat

TURNS = 16
QUESTIONS = [f"What is {a} plus {b}? Also name a country that starts with the letter {chr(65 + a)}."
             for a, b in zip(range(TURNS), range(3, 3 + TURNS), strict=True)]


def conversation(chat: LlamaCppChat) -> tuple[float, list[str]]:
    history: list = []
    answers = []
    started = time.perf_counter()
    for question in QUESTIONS:
        history.append(HumanMessage(question))
        reply = chat.invoke(history, max_tokens=8)
        answers.append(str(reply.content))
        history.append(AIMessage(str(reply.content)))
    return time.perf_counter() - started, answers


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    path = str(resolve_gguf("bundled:gemma-3-270m"))
    reset = LlamaCppChat(model_path=path, chat_format="qa", n_ctx=4096, n_threads=1)
    reuse = LlamaCppChat(model_path=path, chat_format="qa", n_ctx=4096, n_threads=1, prefix_cache=True)
    conversation(reset)  # load and warm up
    times: dict[str, list[float]] = {"reset": [], "prefix": []}
    same = True
    for _ in range(rounds):
        t_reset, a_reset = conversation(reset)
        t_prefix, a_prefix = conversation(reuse)
        times["reset"].append(t_reset)
        times["prefix"].append(t_prefix)
        same = same and a_reset == a_prefix
    best = {k: min(v) for k, v in times.items()}
    print(f"{TURNS}-turn history, {rounds} rounds, best of each:")
    print(f"  reset before each turn : {best['reset']:.2f} s")
    print(f"  prefix_cache: true     : {best['prefix']:.2f} s")
    print(f"  ratio reset/prefix     : {best['reset'] / best['prefix']:.2f}x")
    print(f"  same answers           : {same}")


if __name__ == "__main__":
    main()
