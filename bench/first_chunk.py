"""First-chunk time of ``PolicyRouter.stream`` against the bare model it routes to, in the same
process: the bundled local model (llama-cpp-python), and ``ChatOpenAI`` on llama-cpp-python's
OpenAI-compatible server over loopback. The router's final rung streams live, so the ratio
should stay near 1 (the target is at most about 1.2x).

Run: ``.venv/bin/python bench/first_chunk.py [--runs 5]``. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from router import PolicyRouter, loads_policy
from tests.conftest import LOCAL_POLICY

QUESTION = "What is the capital of France? Answer in one long sentence."
NO_CHECKS = LOCAL_POLICY.split("  confidence:")[0].replace("max_output_tokens: 16", "max_output_tokens: 48") \
    + "  confidence: []\n"


def first_chunk_s(stream: Any) -> tuple[float, float]:
    started = time.perf_counter()
    first = None
    for chunk in stream():
        if first is None and chunk.content:
            first = time.perf_counter() - started
    return (first if first is not None else float("nan")), time.perf_counter() - started


def measure(label: str, bare: Any, routed: Any, runs: int) -> None:
    first_chunk_s(bare), first_chunk_s(routed)  # warm both
    b = [first_chunk_s(bare) for _ in range(runs)]
    r = [first_chunk_s(routed) for _ in range(runs)]
    bf, bt = statistics.median(x[0] for x in b), statistics.median(x[1] for x in b)
    rf, rt = statistics.median(x[0] for x in r), statistics.median(x[1] for x in r)
    print(f"{label}: bare first {bf*1000:.0f} ms of {bt*1000:.0f} ms; router first {rf*1000:.0f} ms "
          f"of {rt*1000:.0f} ms; first-chunk ratio {rf/bf:.2f}x, total ratio {rt/bt:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    router = PolicyRouter(policy=loads_policy(NO_CHECKS), max_tokens=48)
    bare = router.catalog.chat_model("gemma")
    kwargs = {"max_tokens": 48, "temperature": 0.0}
    measure("local gemma-270m", lambda: bare.stream(QUESTION, **kwargs), lambda: router.stream(QUESTION), args.runs)

    import os

    from langchain_openai import ChatOpenAI

    from router.providers.llamacpp import resolve_gguf
    from tests.langchain.conftest import KEY_VAR, OPENAI_KEY, served_policy
    from tests.servers.openai_llama import LlamaOpenAIServer

    path = resolve_gguf("bundled:gemma-3-270m")
    os.environ[KEY_VAR] = OPENAI_KEY
    with LlamaOpenAIServer(Path(path), api_key=OPENAI_KEY) as server:
        server.warm_up()
        policy = served_policy(server.base_url, max_output_tokens=48)
        policy["policy"]["cascade"], policy["policy"]["confidence"] = ["gpt-3.5-turbo"], []
        served = PolicyRouter.from_dict(policy)
        client = ChatOpenAI(model="gpt-3.5-turbo", base_url=server.base_url, api_key=OPENAI_KEY,
                            temperature=0, max_tokens=48)
        measure("OpenAI-compatible server", lambda: client.stream(QUESTION), lambda: served.stream(QUESTION),
                args.runs)


if __name__ == "__main__":
    main()
