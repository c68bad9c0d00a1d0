"""Shared fixtures and the rules for tests that need real services.

Tests marked `postgres` run only on PostgreSQL: outside CI they skip on SQLite with a clear reason;
with CI=true they fail instead, because CI must run them.
"""

import os
from pathlib import Path

import pytest
from django.db import connection

from dashboards.browser import CHROMIUM
from tests.support.services import IN_CI, require

# Browser tests must run (fail, never skip) in CI or when PRM_REQUIRE_BROWSER=1.
REQUIRE_BROWSER = IN_CI or os.environ.get("PRM_REQUIRE_BROWSER", "") == "1"


@pytest.fixture(autouse=True)
def _service_markers(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("postgres"):
        require(connection.vendor == "postgresql", "needs PostgreSQL: set DATABASE_URL=postgres://...")
    if request.node.get_closest_marker("browser"):
        require(
            os.path.exists(CHROMIUM),
            "Chromium not installed: browser tests skipped (apt-get install chromium)",
            must_run=REQUIRE_BROWSER,
            because="PRM_REQUIRE_BROWSER=1 or CI=true",
        )


@pytest.fixture(autouse=True)
def _fresh_cache(settings):
    # Throttle counters and cached API responses live in the cache; ids repeat across tests on SQLite.
    # Tests never use, nor flush, a cache CACHE_URL names; the one test of the Redis cache sets its own.
    from django.core.cache import caches

    settings.CACHES = {
        alias: {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": f"test-{alias}"}
        for alias in settings.CACHES
    }
    for cache in caches.all():
        cache.clear()
    yield
    for cache in caches.all():
        cache.clear()


@pytest.fixture
def redis_url() -> str:
    """REDIS_URL, reachable; without it the test skips (CI=true: fails, since CI sets it)."""
    url = os.environ.get("REDIS_URL", "")
    require(bool(url), "needs Redis: set REDIS_URL=redis://...")
    _ping_redis(url)
    return url


def _ping_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.fail(f"REDIS_URL is set but Redis is unreachable: {exc}")


@pytest.fixture
def broker(tmp_path):
    """(broker url, transport options, extra env for the worker)."""
    redis_url = os.environ.get("REDIS_URL", "")
    if redis_url:
        _ping_redis(redis_url)
        return redis_url, {}, {"REDIS_URL": redis_url}
    return _filesystem_broker(tmp_path)


@pytest.fixture(params=["redis", "filesystem"])
def each_broker(request, tmp_path):
    """`broker` on Redis (skipped without REDIS_URL; CI=true: fails), then on the filesystem broker
    whatever REDIS_URL says: the two lose a dead worker's message differently."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        return url, {}, {"REDIS_URL": url}
    return _filesystem_broker(tmp_path)


def _filesystem_broker(tmp_path):
    folder = tmp_path / "celery-broker"
    options = {
        "data_folder_in": str(folder / "out"),
        "data_folder_out": str(folder / "out"),
        "processed_folder": str(folder / "processed"),
        # Where kombu records queue bindings (by default `control` in the working directory).
        "control_folder": str(folder / "control"),
        "store_processed": False,
    }
    for key in ("data_folder_in", "processed_folder", "control_folder"):
        Path(options[key]).mkdir(parents=True, exist_ok=True)
    return "filesystem://", options, {"REDIS_URL": ""}


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server on 127.0.0.1 and EMAIL_URL pointing at it (tests/smtp.py)."""
    from prm.email import email_settings
    from tests.smtp import SmtpServer

    with SmtpServer() as server:
        settings.EMAIL_URL = server.url
        for name, value in email_settings(server.url, default_file_path=Path("/nonexistent")).items():
            setattr(settings, name, value)
        yield server


@pytest.fixture
def eager_tasks():
    """Queued Celery tasks run in this process at once (the .delay() call path is unchanged)."""
    from prm.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = False
    app.conf.task_eager_propagates = False
