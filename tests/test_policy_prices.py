"""Policy values that decide what a request may spend: a paid network model declares its price,
amounts are finite, and a ``${VAR}`` value never shows in an error, whole or in part.

Before these checks an unpriced ``gpt-4`` counted as free (called under ``cost_ceiling: 0`` and a
$0 budget, recorded at $0), ``limit_usd: .inf`` made every paid call raise ``OverflowError``, and
a rejected ``privacy: "${OPENAI_API_KEY}"`` printed the key's first 29 characters.
"""

from __future__ import annotations

from typing import Any

import pytest

from router import PolicyError, loads_policy
from router.policy.policy_file import load_policy
from router.policy.yaml_source import load_located

UNPRICED = """\
version: 1
name: unpriced
models:
  gpt-4:
    provider: {provider}
    model: gpt-4
    tier: premium
policy:
  cost_ceiling: 0.0
  cascade: [gpt-4]
"""


@pytest.mark.parametrize("provider", ["openai", "google_genai"])
def test_a_network_model_without_price_is_a_located_error(provider: str):
    with pytest.raises(PolicyError) as info:
        loads_policy(UNPRICED.format(provider=provider), "unpriced.yaml")
    err = info.value
    assert (err.file, err.line, err.key) == ("unpriced.yaml", 5, "models.gpt-4.price")
    assert err.column >= 1
    assert str(err).startswith("unpriced.yaml:5:")
    assert "price: {input: USD, output: USD}" in str(err) and provider in str(err)


def test_a_network_model_without_price_is_refused_from_a_dict_too():
    data: dict[str, Any] = {"version": 1, "name": "d", "policy": {"cascade": ["g"]},
                            "models": {"g": {"provider": "google_genai", "model": "gemini-2.0-flash"}}}
    with pytest.raises(PolicyError) as info:
        load_policy(data)
    assert info.value.key == "models.g.price"


def test_an_explicit_zero_price_and_free_kinds_of_model_load_without_price():
    priced = UNPRICED.format(provider="openai").replace("    tier: premium\n",
                                                        "    tier: premium\n    price: {input: 0, output: 0}\n")
    assert loads_policy(priced).models["gpt-4"].price.output == 0
    free = """\
version: 1
name: free
models:
  gemma: {provider: llamacpp, gguf: "bundled:gemma-3-270m", local: true}
  here: {provider: openai, model: m, local: true, base_url: "http://127.0.0.1:9/v1"}
  replay: {provider: recorded, model: m, dataset: d.jsonl, local: true}
policy:
  cascade: [gemma, here, replay]
"""
    policy = loads_policy(free)
    assert {name: spec.price.input + spec.price.output for name, spec in policy.models.items()} == {
        "gemma": 0.0, "here": 0.0, "replay": 0.0}


FINITE = """\
version: 1
name: finite
models:
  gpt: {{provider: openai, model: m, price: {{input: {price}, output: 1.0}}}}
policy:
  cost_ceiling: {ceiling}
  cascade: [gpt]
budgets: [{{name: d, period: day, limit_usd: {limit}}}]
"""


@pytest.mark.parametrize(("field", "key", "line"), [
    ("price", "models.gpt.price.input", 4), ("ceiling", "policy.cost_ceiling", 6),
    ("limit", "budgets.0.limit_usd", 8)])
@pytest.mark.parametrize("value", [".inf", ".nan", "-.inf"])
def test_non_finite_amounts_are_located_errors(field: str, key: str, line: int, value: str):
    values = {"price": "1.0", "ceiling": "0.05", "limit": "1.0", field: value}
    with pytest.raises(PolicyError) as info:
        loads_policy(FINITE.format(**values), "finite.yaml")
    err = info.value
    assert (err.line, err.key) == (line, key), str(err)
    assert "finite" in str(err)


def test_a_non_finite_ceiling_per_call_is_refused_too():
    from router.policy.policy_file import PolicySettings

    with pytest.raises(ValueError, match="finite"):
        PolicySettings(cascade=("m",), cost_ceiling=float("inf"))


KEY = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefSECRET"
ENV_POLICY = """\
version: 1
name: leak
models:
  m: {{provider: llamacpp, gguf: "bundled:gemma-3-270m", local: true}}
policy:
  cascade: [m]
  {field}: "${{OPENAI_API_KEY}}"
"""


@pytest.mark.parametrize("field", ["privacy", "offline", "on_exhausted", "quality_tier", "max_output_tokens"])
def test_no_part_of_a_substituted_value_shows_in_an_error(field: str):
    with pytest.raises(PolicyError) as info:
        loads_policy(ENV_POLICY.format(field=field), environ={"OPENAI_API_KEY": KEY})
    text = str(info.value) + repr(info.value.issues)
    assert "${OPENAI_API_KEY}" in text
    for start in range(len(KEY) - 8):
        assert KEY[start:start + 8] not in text, (KEY[start:start + 8], text)


def test_redact_hides_cut_and_escaped_parts_but_keeps_other_text():
    doc = load_located("a: ${K}\nb: ${Q}\n", {"K": "abcdefghijklmnop\nrstuvwxyz", "Q": "tiny"})
    assert doc.redact("not 'abcdefghijklmnop\\nrst... (a str)") == "not '${K}... (a str)"
    assert doc.redact("ijklmnop in the middle") == "${K} in the middle"
    assert doc.redact("tiny, and abcdefg stays (7 characters)") == "${Q}, and abcdefg stays (7 characters)"
