"""Database session settings: how long a statement may run, by process, and the settings of heavy reads.

Every PostgreSQL session is opened with a `statement_timeout` that depends on what the process is
(docs/operations.md, "Requests that end"):

- `web` (gunicorn, runserver, the test client): `DB_STATEMENT_TIMEOUT_SECONDS` (30), shorter than
  the worker timeout `WEB_TIMEOUT_SECONDS` (60, gunicorn `--timeout`), so PostgreSQL cancels a
  runaway query before gunicorn kills the worker that waits for it;
- `task` (a Celery worker): `TASK_STATEMENT_TIMEOUT_SECONDS` (1800), for KPI runs and mail;
- `command` (`manage.py` commands other than runserver: imports, seeding, recomputes an operator
  starts and can interrupt): `COMMAND_STATEMENT_TIMEOUT_SECONDS` (0, no limit).

Web sessions also run without JIT compilation (its cost outweighed the short statements of a
page). The role comes from `PRM_DB_ROLE` (manage.py sets it; unset means `web`); a Celery worker switches
to `task` when it starts. Each session also sets `client_connection_check_interval` (PostgreSQL 14+),
so a query whose client has gone (a killed worker, a closed psql) is cancelled within seconds
instead of running on until it writes its first row.

Set per session from the `connection_created` signal: one SET when the connection opens, nothing
per request. `transaction_settings` runs a block with further settings (SET LOCAL), e.g. the KPI
engine's settings for an engine path computed on request (kpis.engine.session).
"""

import contextlib
import os
from collections.abc import Iterator

from django.conf import settings
from django.db import connection as default_connection
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.db.utils import OperationalError

ROLE_ENV = "PRM_DB_ROLE"
ROLES = ("web", "task", "command")
_role = os.environ.get(ROLE_ENV, "web")

# SQLSTATE 57014 query_canceled: a statement timeout, or pg_cancel_backend.
QUERY_CANCELED = "57014"


def current_role() -> str:
    return _role


def statement_timeout_seconds(role: str | None = None) -> int:
    """The statement timeout of a role's sessions, in seconds (0: none)."""
    role = role or _role
    if role == "task":
        return settings.TASK_STATEMENT_TIMEOUT_SECONDS
    if role == "command":
        return settings.COMMAND_STATEMENT_TIMEOUT_SECONDS
    return settings.DB_STATEMENT_TIMEOUT_SECONDS


def set_role(role: str) -> None:
    """Switch this process to `role`; sessions already open take its timeout at once."""
    global _role
    if role not in ROLES:
        raise ValueError(f"unknown database role {role!r}; one of {', '.join(ROLES)}")
    _role = role
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            apply_session_settings(conn)


def apply_session_settings(conn: BaseDatabaseWrapper) -> None:
    """The role's statement timeout (and the client check) on one open PostgreSQL session."""
    if conn.vendor != "postgresql":
        return
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('statement_timeout', %s, false)", [f"{statement_timeout_seconds()}s"]
        )
        # Web requests read a page's worth of rows: JIT compilation, which PostgreSQL starts on a
        # plan's estimated cost, took 0.1-2.8 s on this kind of statement (a partner's deals looked
        # up by id: cost estimated on the per-touch row count, docs/benchmarks.md "Pages") for
        # queries that run in 10-100 ms. Tasks and commands keep the server's default.
        cursor.execute("SELECT set_config('jit', 'off', false)" if _role == "web" else "RESET jit")
        if getattr(conn, "pg_version", 0) >= 140000:  # the PostgreSQL wrapper's attribute
            interval = f"{settings.DB_CLIENT_CHECK_SECONDS}s"
            cursor.execute("SELECT set_config('client_connection_check_interval', %s, false)", [interval])


def _on_connection_created(sender, connection: BaseDatabaseWrapper, **kwargs) -> None:
    apply_session_settings(connection)


def connect_signals() -> None:
    connection_created.connect(_on_connection_created, dispatch_uid="prm.database.session_settings")


@contextlib.contextmanager
def transaction_settings(
    settings_: dict[str, str], conn: BaseDatabaseWrapper = default_connection
) -> Iterator[None]:
    """Run the block in a transaction with these PostgreSQL settings (SET LOCAL: they end with it),
    set in one statement. Only settings a transaction may change (kpis.engine.session sets
    temp_buffers apart, for the session). The statement timeout stays the process's: see
    `statement_timeout_seconds`."""
    from django.db import transaction

    with transaction.atomic(using=conn.alias):
        if conn.vendor == "postgresql" and settings_:
            calls = ", ".join("set_config(%s, %s, true)" for _ in settings_)
            with conn.cursor() as cursor:
                cursor.execute(f"SELECT {calls}", [part for item in settings_.items() for part in item])
        yield


def is_query_timeout(exc: BaseException) -> bool:
    """A statement cancelled by its timeout (or by an operator), or SQLite's lock wait given up."""
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    if getattr(cause, "pgcode", None) == QUERY_CANCELED:
        return True
    return "database is locked" in str(exc)
