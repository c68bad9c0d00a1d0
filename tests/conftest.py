"""Shared fixtures and the rules for tests that need real services.

Tests marked `postgres` run only on PostgreSQL: outside CI they skip on SQLite with a clear reason;
with CI=true they fail instead, because CI must run them.
"""

import os

import pytest
from django.db import connection

from dashboards.browser import CHROMIUM

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Browser tests must run (fail, never skip) in CI or when PRM_REQUIRE_BROWSER=1.
REQUIRE_BROWSER = IN_CI or os.environ.get("PRM_REQUIRE_BROWSER", "") == "1"


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this test must run, not skip)")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _service_markers(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("postgres"):
        _require(connection.vendor == "postgresql", "needs PostgreSQL: set DATABASE_URL=postgres://...")
    if request.node.get_closest_marker("browser") and not os.path.exists(CHROMIUM):
        reason = "Chromium not installed: browser tests skipped (apt-get install chromium)"
        if REQUIRE_BROWSER:
            pytest.fail(f"{reason}; PRM_REQUIRE_BROWSER=1 or CI=true: this test must run, not skip")
        pytest.skip(reason)
