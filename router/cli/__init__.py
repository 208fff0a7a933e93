"""The ``router`` command: ask, explain, validate (``main``), simulate and calibrate (``lab``), spend."""

from router.cli.main import main

__all__ = ["main"]
