"""A test that needs a real service (PostgreSQL, Redis, Chromium, a name that resolves) skips
without it on a developer's machine and fails instead where it must run (CI=true)."""

import os

import psycopg2
import pytest
from django.db import connection

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str, *, must_run: bool = IN_CI, because: str = "CI=true") -> None:
    """Skip with `reason` unless the condition holds; fail instead when the test `must_run`."""
    if condition:
        return
    if must_run:
        pytest.fail(f"{reason} ({because}: this test must run, not skip)")
    pytest.skip(reason)


def own_session(dbname: str | None = None):  # -> psycopg2 connection
    """A PostgreSQL session of its own, outside Django's (the test database, or `dbname` on the
    same server): another client holding a lock or a transaction open."""
    settings = connection.settings_dict
    return psycopg2.connect(
        dbname=dbname or settings["NAME"],
        user=settings["USER"],
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
    )
