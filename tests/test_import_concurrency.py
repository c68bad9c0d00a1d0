"""Two imports at once (PostgreSQL): they run one after the other, so two folders with the same new
keys both succeed, the second finding the first's rows stored (its rows unchanged)."""

import threading
import time
from pathlib import Path

import pytest
from django.db import connections

from deals.models import Deal, Touch
from interchange.importer import ImportResult, import_program
from interchange.staging import IMPORT_LOCK
from tests.support.services import own_session

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

VALID = Path(__file__).parent / "data" / "program_valid"


def _waiting_on_the_import_lock(admin) -> int:
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND classid = %s AND objid = %s AND database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())",
            IMPORT_LOCK,
        )
        return cursor.fetchone()[0]


def test_two_imports_of_the_same_new_keys_run_one_after_the_other_and_both_succeed():
    results: dict[str, ImportResult | BaseException] = {}

    def run(name: str) -> None:
        try:
            results[name] = import_program(VALID)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            results[name] = exc
        finally:
            connections.close_all()

    holder, admin = own_session(), own_session()
    admin.autocommit = True
    try:
        with holder.cursor() as cursor:  # both imports start while the lock is taken
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", IMPORT_LOCK)
        threads = [threading.Thread(target=run, args=(name,)) for name in ("first", "second")]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while _waiting_on_the_import_lock(admin) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _waiting_on_the_import_lock(admin) == 2  # both wait, nothing written yet
        assert not Deal.objects.exists()
        holder.rollback()  # releases the lock: one import runs, then the other
        for thread in threads:
            thread.join(timeout=60)
    finally:
        holder.close()
        admin.close()
    assert all(isinstance(result, ImportResult) for result in results.values()), results
    summaries = sorted(
        (result.files["deals.csv"].created, result.files["deals.csv"].unchanged)
        for result in results.values()
        if isinstance(result, ImportResult)
    )
    deals = Deal.objects.count()
    assert deals > 0 and summaries == [(0, deals), (deals, 0)]
    touches = [r.files["touches.csv"].created for r in results.values() if isinstance(r, ImportResult)]
    assert sorted(touches) == [0, Touch.objects.count()] and Touch.objects.exists()
