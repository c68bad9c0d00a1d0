"""The lookups a published state gets (PostgreSQL): the patching's (DELTA_INDEXES) and the
drill-down's (DRILL_INDEXES), whichever session builds them (a chunked run's facts, or the two
sessions of kpis.engine.index_state after publishing)."""

import pytest
from django.db import connection, transaction

from interchange.demo import DemoSize
from interchange.seeding import seed_database
from kpis.engine import index_state, run_schema
from kpis.engine.tables import DELTA_INDEXES, DRILL_INDEXES, index_name
from kpis.models import KpiPublication
from tests.support import kpis as t

pytestmark = pytest.mark.postgres

EVERY_LOOKUP = {index_name(table, columns) for table, columns in DELTA_INDEXES + DRILL_INDEXES}


def state_indexes(run_id: int) -> dict[str, str]:
    """The state's indexes: name -> the table it is on."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, tablename FROM pg_indexes WHERE schemaname = %s", [run_schema(run_id)]
        )
        return dict(cursor.fetchall())


def drop_lookups(run_id: int, names: set[str]) -> None:
    with connection.cursor() as cursor:
        for name in sorted(names):
            cursor.execute(f"DROP INDEX {run_schema(run_id)}.{name}")


def state_run() -> int:
    return KpiPublication.objects.get(pk=1).state_run_id


@pytest.fixture
def small_program():
    seed_database(DemoSize(partners=30, deals=400, seed=5), progress=lambda _: None)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("chunks", [1, 2])
def test_a_published_state_has_every_lookup_on_its_own_table(settings, small_program, chunks):
    settings.KPI_CHUNKS = chunks
    run = t.recompute()
    assert run.status == "succeeded", run.error
    indexes = state_indexes(state_run())
    assert set(indexes) >= EVERY_LOOKUP
    for table, columns in DELTA_INDEXES + DRILL_INDEXES:
        assert indexes[index_name(table, columns)] == table


@pytest.mark.django_db(transaction=True)
def test_lookups_dropped_are_built_again_by_two_sessions_and_the_others_kept(small_program):
    assert t.recompute().status == "succeeded"
    run_id = state_run()
    dropped = {
        index_name("kx_touch_all", "deal_id"),
        index_name("kx_touch_all", "touched_mi"),
        index_name("kx_deal", "closed_mi"),
        index_name("kx_cells", "scope, sid, grain, pidx"),
    }
    kept = {name: oid for name, oid in index_oids(run_id).items() if name not in dropped}
    drop_lookups(run_id, dropped)
    assert not dropped & set(state_indexes(run_id))

    index_state(run_id)

    assert set(state_indexes(run_id)) >= EVERY_LOOKUP
    # What existed is not built again.
    assert {name: oid for name, oid in index_oids(run_id).items() if name in kept} == kept


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_one_session_builds_them_all(small_program):
    # Another session would not see a state written in this transaction: the caller's builds all.
    assert t.recompute().status == "succeeded"
    run_id = state_run()
    dropped = {index_name("kx_touch_all", "partner_id"), index_name("kx_attr", "js, closed_mi")}
    drop_lookups(run_id, dropped)
    with transaction.atomic():
        index_state(run_id)
        assert set(state_indexes(run_id)) >= EVERY_LOOKUP
    assert set(state_indexes(run_id)) >= EVERY_LOOKUP


def index_oids(run_id: int) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'i'",
            [run_schema(run_id)],
        )
        return dict(cursor.fetchall())
