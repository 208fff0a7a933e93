"""Local generation speed by thread count, on a quiet machine and with one core busy.

Three settings of the bundled model (``bundled:gemma-3-270m``, the router's own ``generate``):
``n_threads: 1``, all allowed cores (fixed; the router's default before the adaptive choice) and
``adaptive`` (no ``n_threads`` in the policy: :mod:`router.providers.llama_threads` picks from the
free cores at call time and re-checks while generating). Three conditions: ``quiet`` (whatever
else runs on the machine), ``busy-pinned`` (a ``while True: pass`` process pinned to the last
allowed core) and ``busy-free`` (the same, unpinned). Each round visits every condition, and
within it every setting, in a rotated order; each call processes a short counting prompt and
generates ``--tokens`` tokens greedily (one long line, so every call generates the same count).

Printed per condition and setting: median tokens/s of the whole call (prompt included) by wall
time with [min-max], the process CPU seconds per call, and the ratio of the adaptive setting's
wall time to the better of the two fixed ones (the goal: <= 1.1). Also the thread counts the
adaptive tuner ended calls with.

Example:
    $ .venv/bin/python bench/local_threads.py --rounds 5 --tokens 48
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_throughput import MODEL, N_CTX, counting_messages, load_average, spread

from router.providers.llama_runtime import Loaded, Step, format_prompt, generate, load_llama, resolve_gguf
from router.providers.llama_threads import allowed_cores

CONDITIONS = ("quiet", "busy-pinned", "busy-free")


def settings() -> dict[str, int | None]:
    return {"1": 1, "all": allowed_cores(), "adaptive": None}


def start_busy(condition: str) -> subprocess.Popen[bytes] | None:
    if condition == "quiet":
        return None
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    if condition == "busy-pinned":
        os.sched_setaffinity(proc.pid, {max(os.sched_getaffinity(0))})
    time.sleep(0.5)  # running, and in /proc/stat, before the first call
    return proc


def stop_busy(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        proc.kill()
        proc.wait()


def one_call(loaded: Loaded, prompt: str, tokens: int) -> tuple[float, float, int]:
    """Wall seconds, process CPU seconds and tokens generated for one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = sum(1 for step in generate(loaded, prompt, max_tokens=tokens, temperature=0.0, stop=[])
              if isinstance(step, Step) and step.token >= 0)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args(argv)
    path = str(resolve_gguf(MODEL))
    models = {name: load_llama(path, n_ctx=N_CTX, n_threads=n, n_batch=512) for name, n in settings().items()}
    prompt, _ = format_prompt(counting_messages(10), "qa", models["1"].llm)
    for loaded in models.values():  # warm up: page the weights in
        one_call(loaded, prompt, 4)
    walls: dict[tuple[str, str], list[float]] = defaultdict(list)
    cpus: dict[tuple[str, str], list[float]] = defaultdict(list)
    chosen: dict[str, Counter[int]] = defaultdict(Counter)
    names = list(models)
    print(f"{MODEL}, {args.tokens} tokens a call, {allowed_cores()} allowed cores; at start: {load_average()}",
          flush=True)
    for r in range(args.rounds):
        for condition in CONDITIONS[r % 3:] + CONDITIONS[:r % 3]:
            busy = start_busy(condition)
            try:
                for name in names[r % 3:] + names[:r % 3]:
                    wall, cpu, out = one_call(models[name], prompt, args.tokens)
                    assert out == args.tokens, f"generated {out} tokens, not {args.tokens}"
                    walls[condition, name].append(wall)
                    cpus[condition, name].append(cpu)
                    if models[name].tuner is not None:
                        chosen[condition][models[name].tuner.current] += 1
                    print(f"round {r} {condition:<12} {name:<9} {args.tokens / wall:7.1f} tok/s  {cpu:6.2f} CPU s  "
                          f"load {os.getloadavg()[0]:.1f}", flush=True)
            finally:
                stop_busy(busy)
    print(f"at end: {load_average()}\n")
    print(f"{'condition':<12} {'setting':<9} {'tok/s wall, median [min-max]':<30} {'CPU s/call':<12}")
    for condition in CONDITIONS:
        for name in names:
            rates = [args.tokens / w for w in walls[condition, name]]
            print(f"{condition:<12} {name:<9} {spread(rates):<30} {statistics.median(cpus[condition, name]):<12.2f}")
        med = {name: statistics.median(walls[condition, name]) for name in names}
        best = min(med["1"], med["all"])
        print(f"{'':<12} all/1 wall {med['all'] / med['1']:.2f}x; adaptive/better-fixed wall "
              f"{med['adaptive'] / best:.2f}x; adaptive ended on threads {dict(chosen[condition])}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
