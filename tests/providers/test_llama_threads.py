"""Local threads follow the free cores when the policy leaves ``n_threads`` open (issue 26, point 7):
the choice rule, the load reading (another process's busy loop is seen), the choice applied to
the real llama.cpp context, and results identical whatever the thread count."""

from __future__ import annotations

import subprocess
import sys
import time

import llama_cpp
import pytest
from langchain_core.messages import HumanMessage

from router.providers import llama_threads
from router.providers.llama_runtime import Step, format_prompt, generate, load_llama, resolve_gguf
from router.providers.llama_threads import LOAD, allowed_cores, threads_for


def test_the_choice_rule():
    assert [threads_for(2, o) for o in (0.0, 0.3, 0.4, 0.5, 1.0, 1.4, 1.5, 2.0)] == [2, 2, 2, 1, 1, 1, 1, 1]
    assert [threads_for(8, o) for o in (0.0, 1.0, 2.5, 9.0)] == [8, 7, 5, 1]
    assert threads_for(1, 0.0) == 1


@pytest.mark.skipif(not LOAD.available, reason="no /proc/stat")
def test_another_process_busy_loop_is_seen():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        LOAD.sample()
        time.sleep(0.3)
        assert LOAD.others() >= 0.5  # at least half a core to the loop, whatever else runs
    finally:
        busy.kill()
        busy.wait()


@pytest.fixture(scope="module")
def adaptive():
    return load_llama(str(resolve_gguf("bundled:gemma-3-270m")), n_ctx=512, n_threads=None, n_batch=512)


@pytest.mark.skipif(allowed_cores() < 2, reason="one core: nothing to choose")
def test_the_choice_is_applied_to_the_llama_context(adaptive, monkeypatch: pytest.MonkeyPatch):
    ctx = adaptive.llm.ctx
    assert adaptive.tuner is not None
    monkeypatch.setattr(LOAD, "available", True)
    monkeypatch.setattr(LOAD, "others", lambda: 1.0)
    monkeypatch.setattr(llama_threads, "RECHECK_S", 0.0)
    adaptive.tuner.begin()
    assert llama_cpp.llama_n_threads(ctx) == llama_cpp.llama_n_threads_batch(ctx) == allowed_cores() - 1
    monkeypatch.setattr(LOAD, "others", lambda: 0.0)
    adaptive.tuner.tick()
    assert llama_cpp.llama_n_threads(ctx) == allowed_cores()
    monkeypatch.setattr(LOAD, "others", lambda: None)  # no usable window: keep the last choice
    adaptive.tuner.begin()
    assert adaptive.tuner.current == allowed_cores()


def test_a_fixed_n_threads_is_not_tuned():
    loaded = load_llama(str(resolve_gguf("bundled:gemma-3-270m")), n_ctx=512, n_threads=1, n_batch=512)
    assert loaded.tuner is None


@pytest.mark.skipif(allowed_cores() < 2, reason="one core: nothing to choose")
def test_text_and_logprobs_do_not_depend_on_the_thread_count(adaptive, monkeypatch: pytest.MonkeyPatch):
    prompt, _ = format_prompt([HumanMessage("Write a sentence about the sea.")], "qa", adaptive.llm)
    monkeypatch.setattr(LOAD, "available", True)
    runs = []
    for others in (0.0, 1.5, 0.0):
        monkeypatch.setattr(LOAD, "others", lambda o=others: o)
        runs.append([(s.text, s.logprob) for s in generate(adaptive, prompt, max_tokens=12, temperature=0.0,
                                                           stop=[]) if isinstance(s, Step)])
    assert runs[0] == runs[1] == runs[2] and len(runs[0]) == 12
