"""Deal.segment, kept by the database (deals/migrations/0005_deal_segment.py), against the KPI
engine's own classification of the same deals (kpis/engine/facts.py `deal_select`) after every
kind of write: the edge cases of the contract by hand, touches added, moved, redated and deleted,
deals closed, reopened, redated and resourced, queryset updates, bulk inserts, the importer and
the seeder (its COPY path on PostgreSQL)."""

import io

import pytest
from django.core.management import call_command
from django.db import connection

from deals.models import Deal, Touch
from deals.selectors import DealListQuery, deal_list
from interchange.importer import import_program
from kpis.engine import facts
from kpis.engine.context import EngineSettings, RunContext
from program.models import ProgramSettings, program_today
from tests.support import kpis as kt
from tests.test_import_program import VALID

pytestmark = pytest.mark.django_db

ENGINE_SEGMENTS = {"s": "sourced", "i": "influenced", "d": "direct"}


def engine_segments() -> dict[int, str]:
    """Every deal's segment as a KPI run classes it: the engine's kx_deal SELECT on the live rows."""
    ctx = RunContext(EngineSettings.from_program(ProgramSettings.load()), program_today())
    ctx.exec("DROP TABLE IF EXISTS kx_deal")
    with ctx.sql.session_time_zone():
        ctx.fill("kx_deal", facts.deal_select(ctx, segment_from_base=True))
    rows = ctx.fetch("SELECT id, seg FROM kx_deal")
    ctx.exec("DROP TABLE kx_deal")
    return {deal_id: ENGINE_SEGMENTS[seg] for deal_id, seg in rows}


def stored_segments() -> dict[int, str]:
    return dict(Deal.objects.values_list("id", "segment"))


def listed_segments() -> dict[int, str]:
    """Each deal's segment as the deal list's segment filter finds it."""
    return {
        d.pk: segment
        for segment in ("sourced", "influenced", "direct")
        for d in deal_list(DealListQuery(segment=segment))
    }


def assert_agrees() -> dict[int, str]:
    engine = engine_segments()
    assert stored_segments() == engine
    assert listed_segments() == engine
    return engine


@pytest.fixture
def edge_cases():
    """Every edge of the contract, by hand (closed 2026-03-20 09:00 unless open):

    at_close    won, no sourcing partner, one touch exactly at the close     -> influenced
    after_close won, one touch one second after the close                    -> direct
    both        won, sourced by Alpha and touched by Bravo                   -> sourced
    untouched   won, no touch                                                -> direct
    open_touch  open, touched (no close: every touch counts)                 -> influenced
    open_plain  open, no touch                                               -> direct
    lost_touch  lost, touched before the close                               -> influenced
    mixed       won, one touch after the close and one before                -> influenced
    """
    web = kt.join_source("web")
    alpha, bravo = kt.partner("alpha", web), kt.partner("bravo", web)
    closed = {"created": "2026-03-01 09:00", "closed": "2026-03-20 09:00"}
    d = {
        "at_close": kt.deal("100.00", **closed, key="at_close"),
        "after_close": kt.deal("200.00", **closed, key="after_close"),
        "both": kt.deal("300.00", **closed, sourced_by=alpha, key="both"),
        "untouched": kt.deal("400.00", **closed, key="untouched"),
        "open_touch": kt.deal("500.00", created="2026-03-01 09:00", key="open_touch"),
        "open_plain": kt.deal("600.00", created="2026-03-01 09:00", key="open_plain"),
        "lost_touch": kt.deal("700.00", **closed, status="lost", key="lost_touch"),
        "mixed": kt.deal("800.00", **closed, key="mixed"),
    }
    kt.touch(d["at_close"], alpha, "2026-03-20 09:00")
    kt.touch(d["after_close"], alpha, "2026-03-20 09:00:01")
    kt.touch(d["both"], bravo, "2026-03-05 09:00")
    kt.touch(d["open_touch"], bravo, "2026-03-05 09:00")
    kt.touch(d["lost_touch"], bravo, "2026-03-05 09:00")
    kt.touch(d["mixed"], alpha, "2026-03-21 09:00")
    kt.touch(d["mixed"], bravo, "2026-03-19 09:00")
    return {"alpha": alpha, "bravo": bravo, **d}


def segment(deal: Deal) -> str | None:
    return Deal.objects.values_list("segment", flat=True).get(pk=deal.pk)


def test_every_edge_case_is_classed_as_the_kpi_engine_classes_it(edge_cases):
    engine = assert_agrees()
    assert {key: engine[edge_cases[key].pk] for key in edge_cases if key not in ("alpha", "bravo")} == {
        "at_close": "influenced",
        "after_close": "direct",
        "both": "sourced",
        "untouched": "direct",
        "open_touch": "influenced",
        "open_plain": "direct",
        "lost_touch": "influenced",
        "mixed": "influenced",
    }


def test_the_list_of_won_influenced_deals_sums_to_the_published_influenced_revenue(edge_cases):
    run = kt.recompute()
    assert run.status == "succeeded"
    won = [d.amount for d in deal_list(DealListQuery(status="won", segment="influenced"))]
    # at_close (100) and mixed (800): after_close's only touch is late, both is sourced.
    assert sorted(won) == [100, 800]
    assert kt.value("influenced_revenue", "2026-03") == sum(won)
    sourced = [d.amount for d in deal_list(DealListQuery(status="won", segment="sourced"))]
    assert kt.value("sourced_revenue", "2026-03") == sum(sourced) == 300


def test_touch_writes_reclass_their_deals(edge_cases):
    alpha, untouched, at_close = edge_cases["alpha"], edge_cases["untouched"], edge_cases["at_close"]
    touch = kt.touch(untouched, alpha, "2026-03-10 09:00")
    assert segment(untouched) == "influenced"
    assert_agrees()
    # Redated after the close: no longer counts.
    Touch.objects.filter(pk=touch.pk).update(touched_at=kt.at("2026-03-25 09:00"))
    assert segment(untouched) == "direct"
    # Moved by save() onto another deal (and back before the close): both deals are reclassed.
    touch.refresh_from_db()
    touch.touched_at = kt.at("2026-03-10 09:00")
    touch.deal = edge_cases["open_plain"]
    touch.save()
    assert (segment(untouched), segment(edge_cases["open_plain"])) == ("direct", "influenced")
    assert_agrees()
    # Deleted, one by one and in bulk.
    touch.delete()
    assert segment(edge_cases["open_plain"]) == "direct"
    Touch.objects.filter(deal=at_close).delete()
    assert segment(at_close) == "direct"
    # Inserted in bulk.
    Touch.objects.bulk_create(
        [
            Touch(deal=at_close, partner=alpha, kind="co_sell", touched_at=kt.at("2026-03-02 09:00")),
            Touch(deal=untouched, partner=alpha, kind="co_sell", touched_at=kt.at("2026-03-21 09:00")),
        ]
    )
    assert (segment(at_close), segment(untouched)) == ("influenced", "direct")
    assert_agrees()


def test_deal_writes_reclass_the_deal(edge_cases):
    after_close, both, mixed = edge_cases["after_close"], edge_cases["both"], edge_cases["mixed"]
    # Reopened: every touch counts again.
    Deal.objects.filter(pk=after_close.pk).update(status="open", closed_at=None)
    assert segment(after_close) == "influenced"
    # Closed again exactly at its touch: the touch counts; a second earlier: it does not.
    Deal.objects.filter(pk=after_close.pk).update(status="won", closed_at=kt.at("2026-03-20 09:00:01"))
    assert segment(after_close) == "influenced"
    Deal.objects.filter(pk=after_close.pk).update(closed_at=kt.at("2026-03-20 09:00"))
    assert segment(after_close) == "direct"
    # The sourcing partner cleared (touched: influenced) and set (sourced).
    both.sourcing_partner = None
    both.save()
    assert segment(both) == "influenced"
    Deal.objects.filter(pk=mixed.pk).update(sourcing_partner=edge_cases["bravo"])
    assert segment(mixed) == "sourced"
    assert_agrees()
    # A stale instance saved again cannot write its old segment back.
    stale = Deal.objects.get(pk=mixed.pk)
    Deal.objects.filter(pk=mixed.pk).update(sourcing_partner=None)
    stale.sourcing_partner = None
    stale.segment = "sourced"
    stale.name = "renamed"
    stale.save()
    assert segment(mixed) == "influenced"
    assert_agrees()


def test_new_deals_are_classed_when_inserted(edge_cases):
    created = kt.deal("10.00", created="2026-03-01 09:00", sourced_by=edge_cases["alpha"])
    assert segment(created) == "sourced"
    Deal.objects.bulk_create(
        [
            Deal(account=created.account, amount=5, created_at=kt.at("2026-03-01 09:00"), key="bulk-1"),
            Deal(
                account=created.account,
                amount=6,
                created_at=kt.at("2026-03-01 09:00"),
                sourcing_partner=edge_cases["bravo"],
                key="bulk-2",
            ),
        ]
    )
    assert dict(Deal.objects.filter(key__startswith="bulk-").values_list("key", "segment")) == {
        "bulk-1": "direct",
        "bulk-2": "sourced",
    }
    assert_agrees()


def test_a_deleted_deal_takes_its_touches_and_leaves_the_others_right(edge_cases):
    edge_cases["mixed"].delete()
    assert not Deal.objects.filter(pk=edge_cases["mixed"].pk).exists()
    assert_agrees()


def test_imported_programs_are_classed_as_the_engine_classes_them():
    import_program(VALID)
    engine = assert_agrees()
    assert set(engine.values()) >= {"sourced", "influenced"}
    import_program(VALID)  # the second import updates every row in place
    assert assert_agrees() == engine


@pytest.mark.postgres
def test_a_seeded_program_is_classed_as_the_engine_classes_it():
    # PostgreSQL: the seeder loads deals and touches with COPY.
    call_command("seed_demo", "--partners", "20", "--deals", "300", "--seed", "5", stdout=io.StringIO())
    engine = assert_agrees()
    assert set(engine.values()) == {"sourced", "influenced", "direct"}


@pytest.mark.postgres
def test_truncating_the_touches_leaves_no_influenced_deal(edge_cases):
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's transaction defers its FK checks
        cursor.execute(f"TRUNCATE {Touch._meta.db_table}")
    assert not Deal.objects.filter(segment="influenced").exists()
    assert_agrees()
