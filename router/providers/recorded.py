"""Recorded models: answer from a dataset of recorded outcomes instead of calling anyone.

A catalog entry ``provider: recorded`` names the recorded model (``model:``) and the dataset
(``dataset:``, a RouterBench CSV or JSONL file, see :mod:`router.lab.datasets`). For a request
it looks up the last human message's text in the dataset (exactly, or after collapsing
whitespace) and returns that model's recorded response; the recorded cost is reported as the
attempt's actual cost, and usage comes from counting tokens (cl100k). The worst case reserved
against the ceiling and the budgets is therefore at least the recorded cost, not only what
``price:`` makes of the tokens: :func:`recorded_cost_bound`, the most any of the model's
recorded answers cost, known before any call. A prompt that is not in
the dataset, or a model with no outcome for it, fails as a :class:`ProviderError` of kind
``missing_record``, so the cascade escalates past it.

A relative ``dataset:`` path is resolved against the current working directory (like
``gguf:``); ``${VAR:-default}`` in the policy file helps to point elsewhere. ``router simulate``
replaces every recorded model's dataset with the one it is given. Recorded models run here,
so they may be ``local: true``.

Example:
    >>> policy = loads_policy('''
    ... version: 1
    ... name: replay
    ... models:
    ...   gpt-4: {provider: recorded, model: gpt-4-1106-preview, local: true,
    ...           dataset: data/routerbench-sample/arc_challenge.jsonl}
    ... policy: {cascade: [gpt-4]}
    ... ''')
    >>> PolicyRouter(policy=policy).invoke(prompt_from_the_dataset).content
    'D'
"""

from __future__ import annotations

import functools
import hashlib
import weakref
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict

from router.errors import ProviderError
from router.lab.datasets import Dataset, DatasetError, load_dataset
from router.policy.policy_file import ModelSpec
from router.providers.base import COMMON_FINISH_REASONS, BaseAdapter
from router.routing.tokens import count_openai_tokens, count_text_tokens, message_text

MISSING_RECORD = "missing_record"


class MissingRecordError(LookupError):
    """The dataset holds no outcome of this model for this prompt."""

    def __init__(self, model: str, dataset: str, prompt: str, reason: str) -> None:
        self.model, self.dataset, self.reason = model, dataset, reason
        # A digest, not the prompt: prompts may hold personal data.
        self.prompt_digest = hashlib.sha1(prompt.encode()).hexdigest()[:12]
        super().__init__(f"{reason} (prompt sha1 {self.prompt_digest}, {len(prompt)} chars) "
                         f"in {dataset}")


def request_text(messages: Sequence[BaseMessage]) -> str:
    """The text a recorded answer is looked up by: the last human message's."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message_text(message)
    return message_text(messages[-1]) if messages else ""


@functools.lru_cache(maxsize=16384)
def _cached_tokens(texts: tuple[str, ...]) -> int:
    return count_openai_tokens([HumanMessage(content=text) for text in texts])


@functools.lru_cache(maxsize=16384)
def _cached_text_tokens(text: str) -> int:
    return count_text_tokens(text)


def count_request_tokens(messages: Sequence[BaseMessage]) -> int:
    """cl100k tokens of ``messages`` with OpenAI's chat overhead (which depends on the texts
    only), memoised: a simulation counts the same prompt for selection, each rung and usage."""
    return _cached_tokens(tuple(message_text(m) for m in messages))


_COST_BOUNDS: weakref.WeakKeyDictionary[Dataset, dict[str, float]] = weakref.WeakKeyDictionary()


def _max_costs(dataset: Dataset) -> dict[str, float]:
    bounds = _COST_BOUNDS.get(dataset)
    if bounds is None:
        bounds = {}
        for record in dataset:
            for model, outcome in record.outcomes.items():
                bounds[model] = max(bounds.get(model, 0.0), outcome.cost_usd)
        _COST_BOUNDS[dataset] = bounds
    return bounds


def recorded_cost_bound(spec: ModelSpec) -> float:
    """The most any recorded answer of ``spec``'s model cost in its dataset: a worst case known
    before the call whatever the prompt. 0 when the dataset cannot be read (the model is then
    unavailable and never called)."""
    if not spec.dataset:
        return 0.0
    try:
        dataset = load_dataset(spec.dataset)
    except DatasetError:
        return 0.0
    return _max_costs(dataset).get(spec.model or "", 0.0)


class RecordedChatModel(BaseChatModel):
    """A chat model replaying ``recorded_model``'s answers from ``dataset``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    dataset: Dataset
    recorded_model: str

    @property
    def _llm_type(self) -> str:
        return "recorded"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"recorded_model": self.recorded_model, "dataset": self.dataset.name}

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        prompt = request_text(messages)
        record = self.dataset.find(prompt)
        if record is None:
            raise MissingRecordError(self.recorded_model, self.dataset.name, prompt, "prompt not in dataset")
        outcome = record.outcomes.get(self.recorded_model)
        if outcome is None:
            raise MissingRecordError(self.recorded_model, self.dataset.name, prompt,
                                f"no recorded outcome of {self.recorded_model!r} for record {record.id!r}")
        input_tokens = count_request_tokens(messages)
        output_tokens = _cached_text_tokens(outcome.response)
        message = AIMessage(
            content=outcome.response,
            usage_metadata={"input_tokens": input_tokens, "output_tokens": output_tokens,
                            "total_tokens": input_tokens + output_tokens},
            response_metadata={"model_name": self.recorded_model, "record_id": record.id,
                               "recorded_cost_usd": outcome.cost_usd, "recorded_correct": outcome.correct})
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None,
                         **kwargs: Any) -> ChatResult:
        # A dictionary look-up: no reason to hop to a thread as the default would.
        return self._generate(messages, stop, None, **kwargs)


class _RecordedAdapter(BaseAdapter):
    name = "recorded"
    network = False
    local_rule = "any"
    replays_dataset = True
    required_fields = ("model",)
    finish_reasons = COMMON_FINISH_REASONS
    supports_logprobs = False
    supports_tools = False
    reports_finish_reason = False  # recorded outcomes keep no finish reason
    per_event_loop = False

    def unavailable_reason(self, spec: ModelSpec, env_hint: str | None) -> str | None:
        if not spec.dataset:
            return "unavailable: no dataset: for this recorded model"
        try:
            dataset = load_dataset(spec.dataset)
        except DatasetError as err:
            return f"unavailable: {err}"
        if spec.model not in dataset.models:
            return f"unavailable: model {spec.model!r} not recorded in {dataset.name}"
        return None

    def count_tokens(self, spec: ModelSpec, messages: Sequence[BaseMessage]) -> int:
        return count_request_tokens(messages)

    def tool_tokens(self, spec: ModelSpec, tools: Sequence[dict[str, Any]]) -> int:
        return 0  # no tools: a recorded answer does not read them

    def worst_case_floor_usd(self, spec: ModelSpec) -> float:
        return recorded_cost_bound(spec)

    def build(self, name: str, spec: ModelSpec) -> BaseChatModel:
        if not spec.dataset:
            raise ValueError(f"recorded model {name!r} has no dataset:")
        return RecordedChatModel(dataset=load_dataset(spec.dataset), recorded_model=spec.model or name,
                                 name=name)

    def call_kwargs(self, spec: ModelSpec, *, max_tokens: int, temperature: float,
                    want_logprobs: bool) -> dict[str, Any]:
        return {}

    def token_logprobs(self, message: AIMessage) -> tuple[float, ...] | None:
        return None

    def reported_cost_usd(self, message: AIMessage) -> float | None:
        cost = message.response_metadata.get("recorded_cost_usd")
        return float(cost) if cost is not None else None

    def translate_error(self, spec: ModelSpec, exc: BaseException) -> ProviderError | None:
        if isinstance(exc, MissingRecordError):
            return ProviderError(str(exc), provider="recorded", model=spec.model or "?", kind=MISSING_RECORD)
        if isinstance(exc, DatasetError):
            return ProviderError(str(exc), provider="recorded", model=spec.model or "?", kind="malformed")
        return None


ADAPTER = _RecordedAdapter()

__all__ = ["ADAPTER", "MISSING_RECORD", "MissingRecordError", "RecordedChatModel", "recorded_cost_bound", "request_text"]
