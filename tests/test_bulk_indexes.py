"""A first publication builds KpiValue's indexes after its insert (prm.bulk, PostgreSQL): the
indexes and the unique key are all back after it, and a reader holding the table keeps the
publication to the row-by-row insert rather than waiting on it."""

import time

import pytest
from django.db import IntegrityError, connection, transaction

from kpis.models import KpiValue
from prm.bulk import indexes_built_after
from tests.support import kpis as t
from tests.support.services import own_session

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

TABLE = KpiValue._meta.db_table


def _indexes() -> set[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [TABLE])
        return set(cursor.fetchall())


def _unique_constraints() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'u'", [TABLE]
        )
        return [name for (name,) in cursor.fetchall()]


def _value_row(**fields) -> KpiValue:
    """One published row written by hand (a program month's won revenue unless told)."""
    row = {
        "scope": "program",
        "grain": "month",
        "period": "2026-02",
        "period_start": "2026-02-01",
        "metric": "won_revenue",
        "attribution_model": "last_touch",
        "value": 1,
        "run_id": 1,
    }
    return KpiValue.objects.create(**(row | fields))


def test_the_indexes_are_dropped_for_the_block_and_built_again_after_it():
    before = _indexes()
    assert len(before) == 5 and _unique_constraints() == ["kpi_value_unique"]
    with transaction.atomic(), indexes_built_after(TABLE) as rebuilt:
        assert rebuilt
        # Only the primary key is left while the rows go in.
        assert {name for name, _ in _indexes()} == {f"{TABLE}_pkey"}
        assert _unique_constraints() == []
    assert _indexes() == before
    assert _unique_constraints() == ["kpi_value_unique"]


def test_a_first_publication_leaves_every_index_and_the_unique_key_in_place():
    before = _indexes()
    partner = t.partner("p1", t.join_source("web"))
    t.deal("1200.00", created="2026-01-05 10:00", closed="2026-02-10 10:00", sourced_by=partner)
    run = t.recompute()
    assert run.status == "succeeded", run.error
    won = KpiValue.objects.get(
        metric="won_revenue", scope="program", period="2026-02", attribution_model="linear"
    )
    assert won.value == 1200
    assert _indexes() == before
    row = KpiValue.objects.filter(scope="program").first()
    row.pk = None
    with pytest.raises(IntegrityError), transaction.atomic():
        row.save()  # the unique key is enforced again


def test_a_table_held_by_a_reader_or_with_rows_is_left_alone():
    before = _indexes()
    reader = own_session()
    try:
        with reader.cursor() as cursor:  # an open transaction that read the table holds it
            cursor.execute("SET statement_timeout = '10s'")
            cursor.execute(f"SELECT COUNT(*) FROM {TABLE}")
        started = time.monotonic()
        with transaction.atomic(), indexes_built_after(TABLE) as rebuilt:
            assert not rebuilt and _indexes() == before
        assert time.monotonic() - started < 5  # gave up on the lock instead of waiting for it
    finally:
        reader.close()
    _value_row()
    with transaction.atomic(), indexes_built_after(TABLE) as rebuilt:
        assert not rebuilt and _indexes() == before


def test_rows_written_and_removed_earlier_in_the_transaction_do_not_stop_it():
    # Their foreign keys' checks are still pending (deferred to commit) when the table is altered.
    partner = t.partner("p1", t.join_source("web"))
    _value_row(scope="partner", scope_key="p1", partner=partner)
    KpiValue.objects.all().delete()
    before = _indexes()
    with transaction.atomic(), indexes_built_after(TABLE) as rebuilt:
        assert rebuilt
    assert _indexes() == before
