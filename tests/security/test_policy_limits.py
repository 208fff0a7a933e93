"""Limits that hold whatever the YAML library does, and ledger URLs that never break a repr.

A merge-key bomb flattens, on PyYAML older than 6.0.4, into millions of repeated pairs; every pair
now counts towards the 10 000-value cap, duplicates included. A literal flood of duplicate keys
is the same shape and needs no old PyYAML to show it."""

from __future__ import annotations

import time

import pytest

from router import loads_policy
from router.errors import PolicyError
from router.spend.config import redact

BASE = "version: 1\nname: x\nmodels: {m: {provider: llamacpp, gguf: '', local: true}}\npolicy: {cascade: [m]}\n"


def test_a_flood_of_duplicate_keys_hits_the_value_cap_at_once():
    text = BASE + "rules:\n  - when: {tags: [a]}\n    set:\n" + "      privacy: true\n" * 20_001
    started = time.perf_counter()
    with pytest.raises(PolicyError, match="more than 10000 values"):
        loads_policy(text)
    assert time.perf_counter() - started < 5


def test_a_ledger_port_that_is_not_a_number_is_a_located_error_that_shows_no_password():
    with pytest.raises(PolicyError) as caught:
        loads_policy(BASE + "ledger: redis://admin:Sup3rS3cretPw@db.example:port/0\n")
    [issue] = caught.value.issues
    assert (issue.line, issue.column, issue.key) == (5, 9, "ledger")
    assert "port must be a number" in issue.message and "Sup3rS3cretPw" not in str(caught.value)


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://u:pw@host:port/0", "redis://u:***@host:port/0"),
    ("redis://u:p@ss@db:6379/0", "redis://u:***@db:6379/0"),
    ("redis://db:6379/0", "redis://db:6379/0"),
])
def test_redact_never_raises_and_hides_every_password(url: str, shown: str):
    assert redact(url) == shown
