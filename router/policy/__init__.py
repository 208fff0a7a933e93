"""Policy files: pydantic models, YAML loading with located errors, rules and overrides.

Example:
    >>> from router.policy import load_policy
    >>> load_policy("policies/default.yaml").name
    'default'
"""

from router.policy.policy_file import ModelSpec, Policy, PolicySettings, load_policy, loads_policy
from router.policy.sources import packaged_policies, resolve_policy

__all__ = ["ModelSpec", "Policy", "PolicySettings", "load_policy", "loads_policy", "packaged_policies",
           "resolve_policy"]
