"""``get_usage_metadata_callback()`` counts each model call once, in a chain as for the bare router.

Inside ``prompt | router`` the chain's callback manager carries the usage handler down to the
router's own run, which repeats the answer's usage: one call was counted twice (40 tokens against
20 in the record). The model is a loopback fake that reports its usage (a stream's is counted by the router).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableParallel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "security"))
from security_servers import FakeOpenAIServer

from router import PolicyRouter, loads_policy

POLICY = """\
version: 1
name: counted
models:
  loc: {{provider: openai, model: m-loc, base_url: "{url}", api_key_env: LOCAL_GPT_KEY, local: true,
        price: {{input: 0, output: 0}}}}
policy:
  max_output_tokens: 8
  cascade: [loc]
"""


@pytest.fixture
def router(monkeypatch: pytest.MonkeyPatch) -> Iterator[PolicyRouter]:
    monkeypatch.setenv("LOCAL_GPT_KEY", "sk-local-dummy")
    with FakeOpenAIServer(reply="an answer") as fake:
        yield PolicyRouter(policy=loads_policy(POLICY.format(url=fake.base_url), allow_env=["LOCAL_GPT_KEY"]))


def _total(usage: dict[str, Any]) -> int:
    return sum(u["total_tokens"] for u in usage.values())


@pytest.mark.parametrize("shape", ["bare", "chain", "parallel", "with_config", "guarded"])
@pytest.mark.parametrize("entry", ["invoke", "ainvoke", "stream", "batch"])
def test_one_call_is_counted_once(router: PolicyRouter, shape: str, entry: str):
    prompt = ChatPromptTemplate.from_template("Q: {q}")
    runnable: Any = {
        "bare": router, "chain": prompt | router | StrOutputParser(),
        "parallel": prompt | RunnableParallel(a=router),
        "with_config": prompt | router.with_config(tags=["t"]),
        "guarded": router.guard(prompt | router),
    }[shape]
    value: Any = prompt.invoke({"q": "q"}) if shape == "bare" else {"q": "q"}
    calls = 2 if entry == "batch" else 1
    # What the record says one call used (streams: the router's own count, as the fake sends none).
    if entry == "stream":
        record = list(router.stream(prompt.invoke({"q": "q"})))[-1].response_metadata["routing"]
    else:
        record = router.invoke(prompt.invoke({"q": "q"})).response_metadata["routing"]
    (attempt,) = record["attempts"]
    one_call = attempt["input_tokens"] + attempt["output_tokens"]
    with get_usage_metadata_callback() as cb:
        if entry == "invoke":
            runnable.invoke(value)
        elif entry == "ainvoke":
            asyncio.run(runnable.ainvoke(value))
        elif entry == "stream":
            list(runnable.stream(value))
        else:
            runnable.batch([value, value])
    assert _total(cb.usage_metadata) == one_call * calls, cb.usage_metadata
    assert list(cb.usage_metadata) == ["loc"]
