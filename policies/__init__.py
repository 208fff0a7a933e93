"""The shipped policies, installed as the package data ``router.policy.shipped``.

This file only makes the folder importable under that name (setup.py maps it), for both
regular and editable installs; the YAML files here are the single source of truth.
"""
