"""A test that needs a real service (PostgreSQL, Redis, Chromium, a name that resolves) skips
without it on a developer's machine and fails instead where it must run (CI=true)."""

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str, *, must_run: bool = IN_CI, because: str = "CI=true") -> None:
    """Skip with `reason` unless the condition holds; fail instead when the test `must_run`."""
    if condition:
        return
    if must_run:
        pytest.fail(f"{reason} ({because}: this test must run, not skip)")
    pytest.skip(reason)
