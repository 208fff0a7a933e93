"""Packaging that pyproject.toml cannot express: the top-level ``policies/`` folder is installed
as the package ``router.policy.shipped`` (package data), so the shipped policies resolve by name
after a plain ``pip install`` and, in an editable install, are read from ``policies/`` itself.
Everything else is declared in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["router", "router.*"]), "router.policy.shipped"],
    package_dir={"router.policy.shipped": "policies"},
    package_data={"router.policy.shipped": ["*.yaml"]},
)
