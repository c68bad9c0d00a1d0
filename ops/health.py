"""What /healthz and /readyz check.

/healthz: the process answers (no database, no broker). /readyz: the database answers, the Celery
broker is reachable, and the last successful KPI run is recent enough. Every dependency check
gives up after READYZ_CHECK_TIMEOUT_SECONDS, and a failure is reported by its exception's class
name only: messages carry host names, addresses and sometimes URLs, which stay in the log.
"""

import copy
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.models import Max, Min
from django.db.utils import load_backend
from django.utils import timezone
from kombu import Connection
from redis.backoff import NoBackoff
from redis.retry import Retry

from kpis.models import KpiRun

log = logging.getLogger(__name__)

REDIS_SCHEMES = ("redis", "rediss")
FILESYSTEM_FOLDER_OPTIONS = ("data_folder_in", "data_folder_out", "processed_folder", "control_folder")


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **self.details}


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, CheckResult]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ok else "fail",
            "checks": {name: check.as_dict() for name, check in self.checks.items()},
        }


def readiness() -> Readiness:
    database = check_database()
    return Readiness(
        checks={
            "database": database,
            "broker": check_broker(),
            # Without a database the KPI question has no answer; asking would only wait again.
            "kpis": check_kpi_freshness() if database.ok else _failed("DatabaseUnavailable", kpi_threshold()),
        }
    )


def check_timeout() -> int:
    return max(1, settings.READYZ_CHECK_TIMEOUT_SECONDS)


def _timed(name: str, probe: Callable[[], dict[str, Any]]) -> CheckResult:
    started = time.monotonic()
    try:
        details = probe()
    except Exception as exc:  # any failure of a dependency is a failed check, never a 500
        log.warning("readyz: %s check failed", name, exc_info=True)
        return CheckResult(ok=False, details={"error": type(exc).__name__, **_duration(started)})
    return CheckResult(ok=details.pop("ok", True), details={**details, **_duration(started)})


def _duration(started: float) -> dict[str, int]:
    return {"duration_ms": round((time.monotonic() - started) * 1000)}


def _failed(error: str, details: dict[str, Any]) -> CheckResult:
    return CheckResult(ok=False, details={**details, "error": error})


# --- Database ------------------------------------------------------------------------------------


def check_database(alias: str = DEFAULT_DB_ALIAS) -> CheckResult:
    """SELECT 1 on a connection of its own, opened with the check's timeout (the application's
    connections wait longer: a request may, a probe may not)."""
    return _timed("database", partial(_select_one, alias))


def _select_one(alias: str) -> dict[str, Any]:
    settings_dict = copy.deepcopy(connections[alias].settings_dict)
    vendor = connections[alias].vendor
    settings_dict["OPTIONS"] = _short_timeout_options(vendor, settings_dict.get("OPTIONS", {}))
    probe = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, alias=f"{alias}-readyz")
    try:
        with probe.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        probe.close()
    return {"vendor": vendor}


def _short_timeout_options(vendor: str, options: dict[str, Any]) -> dict[str, Any]:
    timeout = check_timeout()
    if vendor == "postgresql":
        server_options = f"{options.get('options', '')} -c statement_timeout={timeout * 1000}".strip()
        return {**options, "connect_timeout": timeout, "options": server_options}
    if vendor == "sqlite":
        # A file next to the process: only its lock can make SELECT 1 wait.
        return {"timeout": timeout}
    return dict(options)


# --- Broker --------------------------------------------------------------------------------------


def check_broker() -> CheckResult:
    """Redis: PING. kombu's filesystem broker: its folders exist and are writable. Other kombu
    transports: a connection."""
    url: str = settings.CELERY_BROKER_URL
    transport = url.split("://", 1)[0].split("+", 1)[0].lower() or "unknown"
    options: dict[str, Any] = settings.CELERY_BROKER_TRANSPORT_OPTIONS or {}
    if transport in REDIS_SCHEMES:
        probe = partial(_ping_redis, url)
    elif transport == "filesystem":
        probe = partial(_filesystem_folders_writable, options)
    else:
        probe = partial(_kombu_connects, url, options)
    result = _timed("broker", probe)
    return CheckResult(ok=result.ok, details={"transport": transport, **result.details})


def _ping_redis(url: str) -> dict[str, Any]:
    timeout = check_timeout()
    # One try: redis-py's default retry policy differs between versions, a probe must not wait it out.
    client = redis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
    finally:
        client.close()
    return {}


def _filesystem_folders_writable(options: dict[str, Any]) -> dict[str, Any]:
    folders = {Path(options[key]) for key in FILESYSTEM_FOLDER_OPTIONS if options.get(key)}
    unusable = [folder for folder in folders if not _writable_folder(folder)]
    if not folders or unusable:
        # Which folders is the operator's business (the log), not the probe's answer.
        log.warning("readyz: broker folders missing or not writable: %s", sorted(map(str, unusable)))
        return {"ok": False, "error": "BrokerFoldersUnusable"}
    return {}


def _writable_folder(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def _kombu_connects(url: str, options: dict[str, Any]) -> dict[str, Any]:
    timeout = check_timeout()
    with Connection(url, connect_timeout=timeout, transport_options=options) as connection:
        connection.ensure_connection(max_retries=0, timeout=timeout)
    return {}


# --- KPI freshness -------------------------------------------------------------------------------


def kpi_threshold() -> dict[str, Any]:
    return {"last_success_age_seconds": None, "threshold_seconds": settings.READYZ_KPI_MAX_AGE_HOURS * 3600}


def check_kpi_freshness(now: datetime | None = None) -> CheckResult:
    """The last successful KPI run finished at most READYZ_KPI_MAX_AGE_HOURS ago.

    Before any run has succeeded the clock starts at the first run ever queued: a fresh install
    (no run yet) is ready, one whose runs have all failed for longer than the threshold is not.
    """
    now = now or timezone.now()
    details = kpi_threshold()
    threshold = details["threshold_seconds"]
    try:
        last_success = KpiRun.objects.filter(
            status=KpiRun.Status.SUCCEEDED, finished_at__isnull=False
        ).aggregate(last=Max("finished_at"))["last"]
        first_queued = None if last_success else KpiRun.objects.aggregate(first=Min("created_at"))["first"]
    except DatabaseError as exc:
        log.warning("readyz: KPI check failed", exc_info=True)
        return _failed(type(exc).__name__, details)
    if last_success is not None:
        age = _seconds_between(last_success, now)
        return CheckResult(ok=age <= threshold, details={**details, "last_success_age_seconds": age})
    if first_queued is None:
        return CheckResult(ok=True, details={**details, "first_run_age_seconds": None})
    waiting = _seconds_between(first_queued, now)
    return CheckResult(ok=waiting <= threshold, details={**details, "first_run_age_seconds": waiting})


def _seconds_between(earlier: datetime, later: datetime) -> int:
    return max(0, int((later - earlier).total_seconds()))
