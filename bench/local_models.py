"""The two bundled local models side by side: Gemma-3-270M (a base model, ``chat_format: qa``)
and SmolLM2-135M-Instruct (a chat model, ``chat_format: auto``).

Measured in one process, the two models interleaved task by task (ABAB), each through the
project's own ``LlamaCppChat`` (what a policy rung runs), temperature 0:

* **throughput**: a counting prompt that makes both write ``--max-tokens`` tokens; generated
  tokens per second of wall time and of this thread's CPU time (with ``n_threads=1`` llama.cpp
  computes in the calling thread, so CPU time measures the work and hardly moves with the load
  of a shared machine), and the ratio SmolLM2/Gemma per repetition.
* **forced tool calls** (``tool_choice="any"``, two tools): a call is *valid* when it parses
  and its arguments validate against the tool's schema (the grammar should make this 100%),
  *right* when the tool and the arguments are the expected ones.
* **auto decisions** (``tool_choice="auto"``, one demonstrated exchange in the history): a
  weather question should get a ``get_weather`` call with the right city, a question needing no
  tool a text answer.
* **agent completion**: ``langchain.agents.create_agent`` with ``get_weather``, the same
  demonstration, ``recursion_limit=6``: *completed* when the run ends with a text answer (no
  ``GraphRecursionError``), *grounded* when that answer states the tool's result ("21 C" and the
  city).

Example:
    $ .venv/bin/python bench/local_models.py --reps 3 --max-tokens 48
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.errors import GraphRecursionError
from pydantic import ValidationError

from router.providers.llamacpp import LlamaCppChat, resolve_gguf

MODELS = {"gemma-270m": ("bundled:gemma-3-270m", "qa"), "smollm2-135m": ("bundled:smollm2-135m", "auto")}


@tool
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"It is sunny and 21 C in {city}."


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


TOOLS = {"get_weather": get_weather, "add": add}
DEMO: list[BaseMessage] = [
    HumanMessage("What is the weather in Rome?"),
    AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Rome"}, "id": "demo-1"}]),
    ToolMessage("Rainy, 12 C.", tool_call_id="demo-1", name="get_weather"),
    AIMessage("It is rainy and 12 C in Rome.")]
FORCED = [("What is the weather in Paris?", "get_weather", {"city": "Paris"}),
          ("Is it raining in London?", "get_weather", {"city": "London"}),
          ("How warm is it in Tokyo today?", "get_weather", {"city": "Tokyo"}),
          ("What is 17 plus 25?", "add", {"a": 17, "b": 25}),
          ("Add 3 and 4.", "add", {"a": 3, "b": 4}),
          ("What is 100 plus 1?", "add", {"a": 100, "b": 1})]
AUTO = [("What is the weather in Paris?", {"city": "Paris"}), ("What's the weather like in Berlin?", {"city": "Berlin"}),
        ("Is it cold in Oslo?", {"city": "Oslo"}), ("What is the capital of France?", None),
        ("What is 2+3?", None), ("Who wrote Hamlet?", None)]
AGENT_CITIES = ["Paris", "Tokyo", "London", "Berlin", "Madrid"]
COUNT = [HumanMessage("Count from 1 to 200, separated by commas.")]


def chat(name: str, max_tokens: int) -> LlamaCppChat:
    gguf, fmt = MODELS[name]
    return LlamaCppChat(model_path=str(resolve_gguf(gguf)), model_name=name, chat_format=fmt, n_threads=1,
                        max_tokens=max_tokens)


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    out = fn()
    return out, time.perf_counter() - wall, time.thread_time() - cpu


def throughput(models: dict[str, LlamaCppChat], reps: int) -> None:
    rows: dict[str, list[tuple[float, float]]] = {n: [] for n in models}
    for _ in range(reps):
        for name, model in models.items():
            msg, wall, cpu = timed(lambda m=model: m.invoke(COUNT))
            tokens = msg.usage_metadata["output_tokens"]
            rows[name].append((tokens / wall, tokens / cpu))
    print(f"throughput: generated tokens per second ({reps} reps, prompt processing included)")
    for name, values in rows.items():
        print(f"  {name:14s} wall {_spread([v[0] for v in values])}   cpu {_spread([v[1] for v in values])}")
    a, b = list(models)
    for i, label in ((0, "wall"), (1, "cpu")):
        print(f"  ratio {b}/{a} {label}: {_spread([y[i] / x[i] for x, y in zip(rows[a], rows[b], strict=True)], 3)}")


def forced(models: dict[str, LlamaCppChat]) -> None:
    score = {n: [0, 0] for n in models}
    for question, want_tool, want_args in FORCED:
        for name, model in models.items():
            msg = model.bind_tools(list(TOOLS.values()), tool_choice="any").invoke(question)
            call = msg.tool_calls[0] if msg.tool_calls else None
            valid = call is not None and _valid(call)
            score[name][0] += valid
            score[name][1] += valid and call["name"] == want_tool and call["args"] == want_args
            print(f"  {name:14s} {question!r:36s} -> {call and (call['name'], call['args'])}")
    for name, (valid, right) in score.items():
        print(f"forced tool calls {name}: valid {valid}/{len(FORCED)}, right tool and arguments {right}/{len(FORCED)}")


def auto(models: dict[str, LlamaCppChat]) -> None:
    score = dict.fromkeys(models, 0)
    for question, want in AUTO:
        for name, model in models.items():
            msg = model.bind_tools([get_weather]).invoke([*DEMO, HumanMessage(question)])
            got = msg.tool_calls[0]["args"] if msg.tool_calls else None
            score[name] += (got == want) if want else (not msg.tool_calls and bool(str(msg.content).strip()))
            print(f"  {name:14s} {question!r:38s} -> {got if got else repr(str(msg.content)[:50])}")
    for name, right in score.items():
        print(f"auto decisions {name}: right {right}/{len(AUTO)} (call with the right city, or text)")


def agents(models: dict[str, LlamaCppChat]) -> None:
    score = {n: [0, 0, []] for n in models}
    for city in AGENT_CITIES:
        for name, model in models.items():
            agent = create_agent(model=model, tools=[get_weather])
            prompt = [*DEMO, HumanMessage(f"What is the weather in {city}?")]
            try:
                out, wall, _ = timed(lambda a=agent, p=prompt: a.invoke({"messages": p}, config={"recursion_limit": 6}))
            except GraphRecursionError:
                print(f"  {name:14s} {city:8s} -> GraphRecursionError")
                continue
            last = out["messages"][-1]
            done = isinstance(last, AIMessage) and not last.tool_calls
            grounded = done and "21" in str(last.content) and city in str(last.content)
            score[name][0] += done
            score[name][1] += grounded
            score[name][2].append(wall)
            steps = len(out["messages"]) - len(prompt)
            print(f"  {name:14s} {city:8s} -> {steps} messages, {wall:.1f} s, final {str(last.content)[:60]!r}")
    for name, (done, grounded, walls) in score.items():
        print(f"agent {name}: completed {done}/{len(AGENT_CITIES)}, grounded {grounded}/{len(AGENT_CITIES)}, "
              f"median {statistics.median(walls) if walls else float('nan'):.1f} s per run")


def _valid(call: dict[str, Any]) -> bool:
    schema = TOOLS[call["name"]].args_schema
    try:
        schema.model_validate(call["args"])  # type: ignore[union-attr]
    except ValidationError:
        return False
    return True


def _spread(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--only", choices=["throughput", "forced", "auto", "agents"])
    args = parser.parse_args()
    models = {name: chat(name, args.max_tokens) for name in MODELS}
    for model in models.values():
        model.invoke("Hello")  # load the weights before timing anything
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    for name, step in (("throughput", lambda: throughput(models, args.reps)), ("forced", lambda: forced(models)),
                       ("auto", lambda: auto(models)), ("agents", lambda: agents(models))):
        if args.only in (None, name):
            step()
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
