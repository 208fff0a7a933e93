"""Every number and flag a policy file holds is read strictly, not only those of ``policy:``.

``breaker: {enabled: "false"}`` is not False, ``enabled: off`` is not False, ``limit_usd: true``
is no $1 budget and ``timeout_s: "5"`` is no number: each is a PolicyError at the value's file,
line, column and key. Ints stay fine where a float is meant, ``true``/``false`` stay flags, and an
unquoted ``${VAR}`` is the number it holds.
"""

from __future__ import annotations

import math

import pytest
from policy_texts import BASE

import router
from router import PolicyError

GPT_LINE = 11  # a key added to models.gpt lands here, after ``model: gpt-4``
TAIL_LINE = 16  # the first line after BASE


def gpt(key: str, value: str) -> tuple[str, int, int, str]:
    """BASE with ``key: value`` in models.gpt, and where the value is."""
    text = BASE.replace("    model: gpt-4\n", f"    model: gpt-4\n    {key}: {value}\n")
    return text, GPT_LINE, 4 + len(key) + 3, f"models.gpt.{key}"


def block(top: str, key: str, value: str, *, extra: str = "") -> tuple[str, int, int, str]:
    """BASE with a ``top:`` block holding ``key: value`` (after ``extra`` lines), and where the
    value is."""
    lines = [f"{top}:", *extra.splitlines(), f"  {key}: {value}"]
    return BASE + "\n".join(lines) + "\n", TAIL_LINE + len(lines) - 1, 2 + len(key) + 3, f"{top}.{key}"


def check(entry: str, key: str, value: str, *, under: str = "policy") -> tuple[str, int, int, str]:
    """BASE with one confidence check (``entry``'s lines, then ``key: value``), and where the value is."""
    text = BASE + f"  confidence:\n    - {entry}\n      {key}: {value}\n"
    return text, TAIL_LINE + 1 + len(entry.splitlines()), 6 + len(key) + 3, f"{under}.confidence.0.{key}"


NUMBER, INTEGER, BOOLEAN, FINITE = ("a valid number", "a valid integer", "a valid boolean", "a finite number")

CASES = {
    # models.<name>
    "timeout_s-string": (*gpt("timeout_s", '"5"'), NUMBER),
    "timeout_s-bool": (*gpt("timeout_s", "true"), NUMBER),
    "timeout_s-inf": (*gpt("timeout_s", ".inf"), FINITE),
    "timeout_s-nan": (*gpt("timeout_s", ".nan"), FINITE),
    "context_window-bool": (*gpt("context_window", "true"), INTEGER),
    "context_window-string": (*gpt("context_window", "'8192'"), INTEGER),
    "max_retries-bool": (*gpt("max_retries", "true"), INTEGER),
    "max_retries-string": (*gpt("max_retries", "'2'"), INTEGER),
    "n_batch-bool": (*gpt("n_batch", "true"), INTEGER),
    "n_threads-string": (*gpt("n_threads", "'4'"), INTEGER),
    # version
    "version-bool": (BASE.replace("version: 1", "version: true"), 1, 10, "version", "Input should be 1"),
    "version-float": (BASE.replace("version: 1", "version: 1.0"), 1, 10, "version", "Input should be 1"),
    "version-string": (BASE.replace("version: 1", "version: '1'"), 1, 10, "version", "Input should be 1"),
    # breaker
    "breaker-enabled-string": (*block("breaker", "enabled", '"false"'), BOOLEAN),
    "breaker-enabled-off": (*block("breaker", "enabled", "off"), BOOLEAN),  # YAML 1.2: the string 'off'
    "breaker-enabled-int": (*block("breaker", "enabled", "0"), BOOLEAN),
    "breaker-failures-bool": (*block("breaker", "failures", "true"), INTEGER),
    "breaker-window_s-string": (*block("breaker", "window_s", "'60'"), NUMBER),
    "breaker-cooldown_s-inf": (*block("breaker", "cooldown_s", ".inf"), FINITE),
    "breaker-max_retry_wait_s-bool": (*block("breaker", "max_retry_wait_s", "true"), NUMBER),
    "breaker-max_retry_wait_s-inf": (*block("breaker", "max_retry_wait_s", ".inf"), FINITE),
    # budgets
    "budget-limit_usd-bool": (BASE + "budgets:\n  - name: daily\n    period: day\n    limit_usd: true\n",
                              TAIL_LINE + 3, 16, "budgets.0.limit_usd", NUMBER),
    "budget-limit_usd-string": (BASE + "budgets:\n  - name: daily\n    period: day\n    limit_usd: '5'\n",
                                TAIL_LINE + 3, 16, "budgets.0.limit_usd", NUMBER),
    "ledger-ttl_s-inf": (BASE + "ledger: sqlite:///tmp/l.db?ttl_s=inf\n", TAIL_LINE, 9, "ledger",
                         "ttl_s must be a number of seconds > 0"),
    # routing thresholds (the block, a rung, a task)
    "routing-skip_below-bool": (*block("routing", "skip_below", "true", extra="  estimator: e.npz"), NUMBER),
    "routing-trust_gap-string": (*block("routing", "trust_gap", "'0.5'", extra="  estimator: e.npz"), NUMBER),
    "routing-skip_gap-nan": (*block("routing", "skip_gap", ".nan", extra="  estimator: e.npz"), FINITE),
    "routing-rung-trust_gap-bool": (BASE + "routing:\n  estimator: e.npz\n  rungs:\n    gpt:\n      trust_gap: true\n",
                                    TAIL_LINE + 4, 18, "routing.rungs.gpt.trust_gap", NUMBER),
    "routing-task-share-bool": (BASE + "routing:\n  estimator: e.npz\n  tasks:\n    - name: t\n      match: x\n"
                                "      share: true\n", TAIL_LINE + 5, 14, "routing.tasks.0.share", NUMBER),
    # checks (in policy:, in a rule's set, in a routing task)
    "regex-ignore_case-yes": (*check("check: regex\n      pattern: a", "ignore_case", "'yes'"), BOOLEAN),
    "regex-ignore_case-int": (*check("check: regex\n      pattern: a", "ignore_case", "1"), BOOLEAN),
    "min_length-chars-bool": (*check("check: min_length", "chars", "true"), INTEGER),
    "min_length-chars-string": (*check("check: min_length", "chars", "'3'"), INTEGER),
    "logprob-min_mean-inf": (*check("check: logprob", "min_mean", "-.inf"), FINITE),
    "logprob-min_mean-string": (*check("check: logprob", "min_mean", "'-1'"), NUMBER),
    "verifier-threshold-bool": (*check("check: verifier", "threshold", "true"), NUMBER),
    "verifier-top_logprobs-bool": (*check("check: verifier", "top_logprobs", "true"), INTEGER),
    "verifier-max_tokens-string": (*check("check: verifier", "max_tokens", "'4'"), INTEGER),
    "agreement-min_agree-bool": (*check("check: agreement\n      models: [gpt]", "min_agree", "true"), INTEGER),
    "self_consistency-n-bool": (*check("check: self_consistency", "n", "true"), INTEGER),
    "self_consistency-temperature-string": (*check("check: self_consistency", "temperature", "'0.5'"), NUMBER),
    "self_consistency-threshold-inf": (*check("check: self_consistency", "threshold", ".inf"), FINITE),
    "self_consistency-include_answer-no": (*check("check: self_consistency", "include_answer", "no"), BOOLEAN),
    "self_consistency-seed-bool": (*check("check: self_consistency", "seed", "true"), INTEGER),
}
RULE_CHECK = (BASE + "rules:\n  - when: {tags: [x]}\n    set:\n      confidence:\n"
              "        - check: regex\n          pattern: a\n          ignore_case: 'yes'\n")
TASK_CHECK = (BASE + "routing:\n  estimator: e.npz\n  tasks:\n    - name: t\n      match: x\n"
              "      confidence:\n        - check: regex\n          pattern: a\n          ignore_case: 'yes'\n")
CASES["rule-check-ignore_case"] = (RULE_CHECK, TAIL_LINE + 6, 24, "rules.0.set.confidence.0.ignore_case", BOOLEAN)
CASES["task-check-ignore_case"] = (TASK_CHECK, TAIL_LINE + 8, 24, "routing.tasks.0.confidence.0.ignore_case",
                                   BOOLEAN)


@pytest.mark.parametrize(("text", "line", "column", "key", "fragment"), list(CASES.values()), ids=list(CASES))
def test_a_value_of_the_wrong_type_is_a_located_policy_error(text: str, line: int, column: int, key: str,
                                                             fragment: str):
    with pytest.raises(PolicyError) as caught:
        router.loads_policy(text, "p.yaml")
    issues = caught.value.issues
    assert len(issues) == 1, str(caught.value)
    found = issues[0]
    assert (found.file, found.line, found.column, found.key) == ("p.yaml", line, column, key), str(caught.value)
    assert fragment in found.message
    assert str(caught.value).startswith(f"p.yaml:{line}:{column}: {key}: ")


def test_the_auditors_files_give_every_error_at_once():
    text = (BASE.replace("version: 1", "version: true")
            .replace("    model: gpt-4\n", "    model: gpt-4\n    context_window: true\n    max_retries: true\n"
                     "    timeout_s: \"5\"\n")
            + 'breaker: {enabled: "false", failures: true}\nbudgets:\n  - {name: daily, period: day, limit_usd: true}\n')
    with pytest.raises(PolicyError) as caught:
        router.loads_policy(text, "p.yaml")
    assert {i.key for i in caught.value.issues} == {
        "version", "models.gpt.context_window", "models.gpt.max_retries", "models.gpt.timeout_s",
        "breaker.enabled", "breaker.failures", "budgets.0.limit_usd"}


# ------------------------------------------------------------------ controls: valid values still load


def test_ints_for_floats_and_real_flags_load():
    text = (BASE.replace("    model: gpt-4\n", "    model: gpt-4\n    timeout_s: 5\n    context_window: 8192\n"
                         "    max_retries: 2\n    n_batch: 256\n")
            + "  confidence:\n    - {check: regex, pattern: a, ignore_case: true}\n"
              "    - {check: logprob, min_mean: -2}\n    - {check: min_length, chars: 0}\n"
              "    - {check: self_consistency, n: 2, temperature: 1, threshold: 1, include_answer: false, seed: 7}\n"
              "    - {check: verifier, threshold: 0, top_logprobs: 5, max_tokens: 2}\n"
              "breaker: {enabled: false, failures: 2, window_s: 10, cooldown_s: 5, max_retry_wait_s: 0}\n"
              "budgets:\n  - {name: daily, period: day, limit_usd: 20}\n"
              "routing:\n  estimator: e.npz\n  skip_below: 1\n  trust_gap: 0\n  skip_gap: 0.25\n"
              "  rungs: {gpt: {trust_gap: 1}}\n  tasks:\n    - {name: t, match: x, share: 0.5}\n")
    policy = router.loads_policy(text)
    gpt = policy.models["gpt"]
    assert (gpt.timeout_s, gpt.context_window, gpt.max_retries, gpt.n_batch) == (5.0, 8192, 2, 256)
    assert isinstance(gpt.timeout_s, float)
    regex, logprob, min_length, consistency, verifier = policy.policy.confidence
    assert regex.ignore_case is True and logprob.min_mean == -2.0 and min_length.chars == 0
    assert (consistency.n, consistency.temperature, consistency.include_answer, consistency.seed) == (2, 1.0, False, 7)
    assert (verifier.threshold, verifier.top_logprobs, verifier.max_tokens) == (0.0, 5, 2)
    assert policy.breaker.enabled is False and policy.breaker.failures == 2
    assert (policy.breaker.window_s, policy.breaker.cooldown_s, policy.breaker.max_retry_wait_s) == (10.0, 5.0, 0.0)
    assert policy.budgets[0].limit_usd == 20.0
    assert policy.routing is not None
    assert (policy.routing.skip_below, policy.routing.trust_gap, policy.routing.skip_gap) == (1.0, 0.0, 0.25)
    assert policy.routing.rungs["gpt"].trust_gap == 1.0 and policy.routing.tasks[0].share == 0.5
    assert policy.version == 1


def test_an_unquoted_variable_is_the_number_or_flag_it_holds():
    text = (BASE.replace("    model: gpt-4\n", "    model: gpt-4\n    timeout_s: ${TIMEOUT:-5}\n"
                         "    max_retries: ${RETRIES}\n")
            + "breaker:\n  enabled: ${BREAKER}\nbudgets:\n  - name: daily\n    period: day\n"
              "    limit_usd: ${LIMIT:-2.5}\n")
    policy = router.loads_policy(text, environ={"RETRIES": "3", "BREAKER": "false"})
    assert (policy.models["gpt"].timeout_s, policy.models["gpt"].max_retries) == (5.0, 3)
    assert policy.breaker.enabled is False and math.isclose(policy.budgets[0].limit_usd, 2.5)


def test_a_quoted_variable_is_a_string_and_an_error_that_shows_the_variable_not_its_value():
    text = BASE.replace("    model: gpt-4\n", '    model: gpt-4\n    timeout_s: "${TIMEOUT}"\n')
    with pytest.raises(PolicyError) as caught:
        router.loads_policy(text, "p.yaml", environ={"TIMEOUT": "12345678901"})
    found = caught.value.issues[0]
    assert (found.line, found.key) == (GPT_LINE, "models.gpt.timeout_s")
    assert "${TIMEOUT}" in str(caught.value) and "12345678901" not in str(caught.value)
