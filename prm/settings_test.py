"""Test settings: the same as production, with a fast password hasher and DEBUG-free checks."""

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def _isolate_parallel_test_process() -> None:
    """`make test` runs the suite in parallel processes (pytest-xdist: gw0, gw1...). Each gets
    its own local state folder and its own Redis database, set in the environment before the
    settings read it, so the Celery workers a test starts inherit them: one process's worker never
    drains another's queue, and one process's flush never drops another's messages. Process N uses
    Redis database (REDIS_URL's - N) mod 16. The test databases get their own names from
    pytest-django."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    # Once per process tree: a Celery worker a test starts inherits the environment set here.
    if not worker.startswith("gw") or os.environ.get("PRM_TEST_ISOLATED") == worker:
        return
    os.environ["PRM_TEST_ISOLATED"] = worker
    number = int(worker[2:])
    var_dir = Path(os.environ.get("PRM_VAR_DIR", str(Path(__file__).resolve().parent.parent / "var")))
    os.environ["PRM_VAR_DIR"] = str(var_dir / f"test-{worker}")
    redis_url = os.environ.get("REDIS_URL", "")
    if redis_url:
        parts = urlsplit(redis_url)
        base = int(parts.path.strip("/") or 0)
        isolated = urlunsplit(parts._replace(path=f"/{(base - number) % 16}"))
        os.environ["REDIS_URL"] = isolated


_isolate_parallel_test_process()

from prm.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Serve static files straight from the finders, as DEBUG does, so tests need no collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
# Webhook tests post to a real receiver on 127.0.0.1 (docs/integrations.md, "SSRF").
WEBHOOK_ALLOW_LOOPBACK = True
