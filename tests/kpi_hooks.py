"""Watching a KPI run from the outside, through the database layer: no engine function replaced.

`on_statement` runs an action when the run's session executes a statement that matches (Django's
public `connection.execute_wrapper`, on the calling thread's connection); the action may look at
the session's tables or make a real fault (`terminate_backend`: the run's backend killed by another
session, as an administrator or a failover would).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.db import connection


@contextlib.contextmanager
def on_statement(pattern: str, action: Callable[[str], None], *, after: bool = False) -> Iterator[None]:
    """While the block runs, call `action(sql)` before (`after`: after) every statement of this
    thread's connection whose SQL matches the regular expression `pattern`."""
    matcher = re.compile(pattern)

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        matches = bool(matcher.search(sql))
        if matches and not after:
            action(sql)
        result = execute(sql, params, many, context)
        if matches and after:
            action(sql)
        return result

    with connection.execute_wrapper(wrapper):
        yield


@contextlib.contextmanager
def statements(pattern: str) -> Iterator[list[str]]:
    """The statements of this thread's connection matching `pattern`, as the block executes them."""
    seen: list[str] = []
    with on_statement(pattern, seen.append):
        yield seen


def in_another_session(work: Callable[[], None]) -> None:
    """Run `work()` on a database session of its own, now, and wait for it."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def terminate_backend() -> None:
    """PostgreSQL: terminate this thread's backend from another session (pg_terminate_backend)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()

    def terminate() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            assert cursor.fetchone()[0]

    in_another_session(terminate)


@contextlib.contextmanager
def failing_kpi_writes(message: str) -> Iterator[None]:
    """A real fault in the database while the block runs: every insert or update of a published KPI
    row fails with `message` (a trigger on the table, as a full disk or a broken constraint would
    fail the statement)."""
    table = "kpis_kpivalue"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION kx_test_fail() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN RAISE EXCEPTION '{message}'; END $$"
            )
            cursor.execute(
                f"CREATE TRIGGER kx_test_fail BEFORE INSERT OR UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION kx_test_fail()"
            )
        else:
            for event in ("INSERT", "UPDATE"):
                cursor.execute(
                    f"CREATE TRIGGER kx_test_fail_{event.lower()} BEFORE {event} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
                )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"DROP TRIGGER IF EXISTS kx_test_fail ON {table}")
                cursor.execute("DROP FUNCTION IF EXISTS kx_test_fail()")
            else:
                for event in ("insert", "update"):
                    cursor.execute(f"DROP TRIGGER IF EXISTS kx_test_fail_{event}")


@contextlib.contextmanager
def publication_blocked(run_started: Callable[[], bool]) -> Iterator[Callable[[], bool]]:
    """Another session holds a real lock that a run's publication waits for, while the block runs.

    PostgreSQL: every published KPI row locked FOR UPDATE from the start (nothing else waits for
    that); the yielded function tells when a session waits for one of them, i.e. a run is inside
    its publishing transaction, about to change a row. SQLite: the database's write lock, taken
    once `run_started()` (the run is running: its claim needed the lock), so the run can commit
    nothing more; the yielded function watches for that, takes it and then says True."""
    release = threading.Event()
    if connection.vendor == "postgresql":
        locked = threading.Event()

        def hold() -> None:
            from django.db import transaction

            from kpis.models import KpiValue

            try:
                with transaction.atomic():
                    list(KpiValue.objects.select_for_update().values_list("pk", flat=True))
                    locked.set()
                    release.wait()
            finally:
                connection.close()

        holder = threading.Thread(target=hold, daemon=True)
        holder.start()
        locked.wait(30)

        def waiting() -> bool:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE %s AND pid <> pg_backend_pid())",
                    ["%kpis_kpivalue%"],
                )
                return bool(cursor.fetchone()[0])

        try:
            yield waiting
        finally:
            release.set()
            holder.join(30)
        return

    import sqlite3

    held: list[sqlite3.Connection] = []

    def write_lock_taken() -> bool:
        # Watched closely: the lock is taken within milliseconds of the run's claim, long before
        # a run (a few hundred statements) can reach its publication.
        deadline = time.monotonic() + 5
        while not held and time.monotonic() < deadline:
            if run_started():
                lock = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None, timeout=30)
                lock.execute("BEGIN IMMEDIATE")
                held.append(lock)
            else:
                time.sleep(0.005)
        return bool(held)

    try:
        yield write_lock_taken
    finally:
        for lock in held:
            lock.rollback()
            lock.close()
