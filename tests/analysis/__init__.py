"""Tests of the analysis package."""

import os

import pytest


def need(condition: bool, reason: str) -> None:
    """Skip when a system dependency is missing, except in CI (CI=true), where a
    missing dependency must fail the run instead of silently shrinking it."""
    if condition:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)
