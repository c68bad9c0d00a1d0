"""Incremental runs recompute only the periods their changes touched, and publish exactly what a
full recompute publishes (on SQLite, on PostgreSQL, and chunked on PostgreSQL)."""

import random
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from deals.models import Deal, DealRegistration, Touch
from interchange.demo import DemoSize
from interchange.seeding import seed_database
from kpis.costs import book_program_cost
from kpis.engine import state_exists, state_table
from kpis.models import CostEntry, CostEntryLink, KpiPublication, KpiRun, KpiValue
from kpis.services import target_set
from partners.models import JoinSource, Partner
from tests.support import kpis as t
from tests.test_kpi_runs import published, small_program

D = Decimal


def full_recompute_set(as_of: str = "2026-12-31") -> set[tuple]:
    """What a full run publishes from scratch on the current data (then left published)."""
    KpiValue.objects.all().delete()
    run = t.recompute(as_of=as_of)
    assert run.status == "succeeded", run.error
    return published()


def incremental(as_of: str = "2026-12-31") -> KpiRun:
    run = t.recompute(as_of=as_of, mode="incremental")
    assert run.status == "succeeded", run.error
    return run


def publish_after(monkeypatch, write) -> None:
    """Make every run commit `write()` just before it publishes (a write made while it computed)."""
    from kpis import run_publication

    original = run_publication.publish

    def publish(**kwargs):
        write()
        return original(**kwargs)

    monkeypatch.setattr(run_publication, "publish", publish)


@pytest.mark.django_db
def test_one_changed_deal_recomputes_its_month_quarter_and_year_only():
    deals = small_program(partners=3)
    full = t.recompute()
    # 2026-01 .. 2026-12: 12 months, 4 quarters, 1 year.
    assert full.periods_recomputed == 17
    # A sourced deal won on 2026-03-10: only March, Q1 and 2026 can change.
    march = next(d for d in deals if d.closed_at.month == 3)
    Deal.objects.filter(pk=march.pk).update(amount=D("555.55"), updated_at=timezone.now())
    run = incremental()
    assert run.periods_recomputed == 3
    assert set(KpiValue.objects.filter(run=run).values_list("grain", "period")) == {
        ("month", "2026-03"),
        ("quarter", "2026-Q1"),
        ("year", "2026"),
    }
    assert t.value("sourced_revenue", "2026-03", scope="partner", key=march.sourcing_partner.key) == D(
        "555.55"
    )
    after = published()
    assert full_recompute_set() == after


@pytest.mark.django_db
def test_a_deal_moved_to_another_year_recomputes_both_places():
    deals = small_program(partners=2)
    t.recompute()
    Deal.objects.filter(pk=deals[0].pk).update(
        created_at=t.at("2025-11-01 10:00"), closed_at=t.at("2025-11-20 10:00"), updated_at=timezone.now()
    )
    run = incremental()
    # Its old month (February, Q1, 2026) and the new ones; 2025-11 .. 2025-12 join the range too.
    labels = set(KpiValue.objects.filter(run=run).values_list("period", flat=True))
    assert {"2026-02", "2026-Q1", "2026", "2025-11", "2025-Q4", "2025"} <= labels
    assert not labels & {"2026-05", "2026-Q3"}
    after = published()
    assert full_recompute_set() == after


@pytest.mark.django_db
def test_changes_in_most_months_recompute_every_period(monkeypatch):
    """On facts built in full (here: every change is too many to patch), a run that finds most
    months changed recomputes every period; patched cells recompute only the changed ones."""
    from kpis.engine.incremental import delta_facts

    monkeypatch.setattr(delta_facts, "DELTA_MAX_SHARE", 0)
    monkeypatch.setattr(delta_facts, "DELTA_MIN_ROWS", 0)
    web = t.join_source("web")
    p = t.partner("p", web, joined="2026-01-02")
    for month in range(1, 13):
        t.deal(
            "100.00", created=f"2026-{month:02d}-03 10:00", closed=f"2026-{month:02d}-20 10:00", sourced_by=p
        )
    full = t.recompute()
    # Nine of the twelve months change (3/4): comparing the other families is not worth it.
    Deal.objects.filter(closed_at__month__lte=9).update(amount=D("250.00"), updated_at=timezone.now())
    run = incremental()
    assert run.periods_recomputed == full.periods_recomputed == 17
    assert t.value("won_revenue", "2026") == D("2550.00")
    after = published()
    assert full_recompute_set() == after
    # Eight months: only those, their quarters (Q1-Q3) and the year.
    Deal.objects.filter(closed_at__month__lte=8).update(amount=D("260.00"), updated_at=timezone.now())
    assert incremental().periods_recomputed == 8 + 3 + 1
    monkeypatch.undo()
    Deal.objects.filter(closed_at__month__lte=9).update(amount=D("270.00"), updated_at=timezone.now())
    run = incremental()
    assert run.changed_rows == 9
    assert run.periods_recomputed == 9 + 3 + 1
    assert t.value("won_revenue", "2026") == D("2730.00")
    assert full_recompute_set() == published()


def _mutate(rng: random.Random, round_no: int) -> None:
    """A batch of the edits a program sees overnight, of every kind the KPIs read."""
    now = timezone.now()
    deal_ids = list(Deal.objects.values_list("id", flat=True))
    partner_ids = list(Partner.objects.filter(joined_at__isnull=False).values_list("id", flat=True))
    sources = list(JoinSource.objects.values_list("id", flat=True))
    won = list(Deal.objects.filter(status="won").values_list("id", flat=True))

    def some(ids: list[int], n: int = 3) -> list[int]:
        return rng.sample(ids, min(n, len(ids)))

    Deal.objects.filter(pk__in=some(won)).update(amount=D(rng.randint(100, 90000)), updated_at=now)
    Deal.objects.filter(pk__in=some(won, 2)).update(status="lost", updated_at=now)
    for deal_id in some(won, 2):
        days = rng.choice([-95, -40, -12, 9, 33])
        deal = Deal.objects.get(pk=deal_id)
        Deal.objects.filter(pk=deal_id).update(
            created_at=deal.created_at + timedelta(days=days),
            closed_at=deal.closed_at + timedelta(days=days),
            updated_at=now,
        )
    Deal.objects.filter(pk__in=some(deal_ids, 2)).update(
        sourcing_partner_id=rng.choice(partner_ids), updated_at=now
    )
    Deal.objects.filter(pk__in=some(won, 2)).update(sourcing_partner=None, updated_at=now)
    # A deal with commission entries cannot be deleted (the ledger protects it): delete others.
    deletable = list(Deal.objects.filter(commission_entries__isnull=True).values_list("id", flat=True))
    Deal.objects.filter(pk__in=some(deletable, 2)).delete()
    # A new deal won this round, touched by two partners, and a late touch on an old deal.
    p1, p2 = Partner.objects.filter(pk__in=some(partner_ids, 2))
    new = t.deal(
        f"{1000 + round_no}.00",
        created=f"2026-0{round_no + 3}-02 09:00",
        closed=f"2026-0{round_no + 4}-15 09:00",
    )
    t.touch(new, p1, f"2026-0{round_no + 3}-05 09:00")
    t.touch(new, p2, f"2026-0{round_no + 4}-01 09:00")
    Touch.objects.filter(pk__in=some(list(Touch.objects.values_list("id", flat=True)), 3)).delete()
    # Registrations decided, and one withdrawn.
    regs = list(DealRegistration.objects.filter(status="submitted").values_list("id", flat=True))
    DealRegistration.objects.filter(pk__in=some(regs, 2)).update(
        status="approved", decided_at=now, updated_at=now
    )
    DealRegistration.objects.filter(
        pk__in=some(
            list(
                DealRegistration.objects.filter(commission_entries__isnull=True).values_list("id", flat=True)
            ),
            1,
        )
    ).delete()
    # Partners: a join date corrected, one moved to another join source, one new that sold.
    for partner_id in some(partner_ids, 1):
        partner = Partner.objects.get(pk=partner_id)
        Partner.objects.filter(pk=partner_id).update(
            applied_at=partner.applied_at - timedelta(days=20),
            joined_at=partner.joined_at - timedelta(days=20),
            updated_at=now,
        )
    Partner.objects.filter(pk__in=some(partner_ids, 1)).update(
        join_source_id=rng.choice(sources), updated_at=now
    )
    source = JoinSource.objects.get(pk=rng.choice(sources))
    newcomer = t.partner(f"new-{round_no}", source, joined=f"2026-0{round_no + 2}-03")
    t.deal(
        "321.00",
        created=f"2026-0{round_no + 2}-10 10:00",
        closed=f"2026-0{round_no + 3}-10 10:00",
        sourced_by=newcomer,
    )
    # Costs and a target.
    CostEntry.objects.filter(pk__in=some(list(CostEntry.objects.values_list("id", flat=True)), 2)).delete()
    CostEntry.objects.create(date=f"2026-0{round_no + 1}-14", amount=D("123.45"), partner=p1, category="mdf")
    target_set(metric="won_revenue", period=f"2026-0{round_no + 5}", value="50000", partner=p2)
    _mutate_economics(rng, round_no, p1, p2)


def _mutate_economics(rng: random.Random, round_no: int, p1: Partner, p2: Partner) -> None:
    """Booked costs and their links (docs/kpis.md, "Commissions and MDF in the KPIs"): a payout
    superseding recorded commissions, an MDF claim with deals and a registration, a link moved to
    another deal, a linked registration's deal taken away, a booked cost re-dated."""
    month = round_no + 1
    CostEntry.objects.create(date=date(2026, month, 20), amount=D("40.00"), partner=p1, category="commission")
    book_program_cost(
        source=CostEntry.Source.COMMISSION_PAYOUT,
        reference=f"payout:{round_no}",
        date=date(2026, month, 5),
        amount=D("310.00"),
        category=CostEntry.Category.COMMISSION,
        partner=p1,
    )
    won = list(Deal.objects.filter(status="won").values_list("id", flat=True))
    registrations = list(DealRegistration.objects.filter(deal__isnull=False).values_list("id", flat=True))
    book_program_cost(
        source=CostEntry.Source.MDF_REIMBURSEMENT,
        reference=f"mdf-claim:{round_no}",
        date=date(2026, month + 1, 1),
        amount=D("900.00"),
        category=CostEntry.Category.MDF,
        partner=p2,
        deal_ids=rng.sample(won, 2),
        registration_ids=rng.sample(registrations, min(2, len(registrations))),
    )
    links = list(CostEntryLink.objects.filter(deal__isnull=False).values_list("id", "cost_entry_id"))
    link_id, cost_id = rng.choice(links)
    taken = set(CostEntryLink.objects.filter(cost_entry_id=cost_id).values_list("deal_id", flat=True))
    CostEntryLink.objects.filter(pk=link_id).update(deal_id=rng.choice([d for d in won if d not in taken]))
    linked = CostEntryLink.objects.filter(registration__deal__isnull=False).values_list(
        "registration_id", flat=True
    )
    DealRegistration.objects.filter(pk__in=list(linked)[:1]).update(deal=None)
    booked = list(CostEntry.objects.exclude(source=CostEntry.Source.RECORDED).values_list("id", flat=True))
    CostEntry.objects.filter(pk=rng.choice(booked)).update(date=date(2026, rng.randint(1, 9), 28))


@pytest.fixture
def demo_program():
    seed_database(DemoSize(partners=30, deals=500, seed=7), progress=lambda _: None)


def _assert_incremental_equals_full(rounds: int = 3) -> list[KpiRun]:
    rng = random.Random(20261201)
    first = t.recompute()
    assert first.status == "succeeded", first.error
    runs = []
    for round_no in range(1, rounds + 1):
        _mutate(rng, round_no)
        run = incremental()
        assert run.periods_recomputed < first.periods_recomputed
        runs.append(run)
        after = published()
        # The full run from scratch then leaves its own state; the next round diffs against it.
        assert full_recompute_set() == after, f"round {round_no}"
    return runs


@pytest.mark.django_db
def test_incremental_runs_after_every_kind_of_change_equal_full_recomputes(demo_program):
    _assert_incremental_equals_full()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_chunked_incremental_runs_equal_full_recomputes(settings, demo_program):
    settings.KPI_CHUNKS = 2
    runs = _assert_incremental_equals_full(rounds=2)
    with connection.cursor() as cursor:
        cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'kpirun_%'")
        left = [row[0] for row in cursor.fetchall()]
    assert left == [f"kpirun_{KpiRun.objects.order_by('-id').first().pk}"]
    assert all(run.periods_recomputed > 0 for run in runs)


@pytest.mark.django_db
def test_the_as_of_date_moving_on_recomputes_the_provisional_cohorts():
    web = t.join_source("web")
    p = t.partner("p", web, joined="2026-10-20")
    d = t.deal("100.00", created="2026-10-25 10:00", closed="2026-11-05 10:00", sourced_by=p)
    t.touch(d, p, "2026-10-26 10:00")
    t.recompute(as_of="2026-11-10")
    # Nothing changed but the date: the October cohort leaves its 90-day window on 2027-01-18.
    run = incremental(as_of="2027-01-31")
    assert run.periods_recomputed > 0
    after = published()
    assert full_recompute_set(as_of="2027-01-31") == after


@pytest.mark.django_db
def test_a_renamed_key_or_a_written_set_makes_the_run_recompute_everything():
    small_program(partners=2)
    full = t.recompute()
    Partner.objects.filter(key="p0").update(key="p0-renamed", updated_at=timezone.now())
    run = incremental()
    assert run.periods_recomputed == full.periods_recomputed
    assert KpiValue.objects.filter(scope="partner", scope_key="p0").count() == 0
    assert KpiValue.objects.filter(scope="partner", scope_key="p0-renamed").count() > 0

    # Someone deletes published rows: the state no longer describes the set, so all is redone.
    KpiValue.objects.filter(scope="program", period="2026-02").delete()
    Deal.objects.filter(pk=Deal.objects.first().pk).update(amount=D("1.00"), updated_at=timezone.now())
    run = incremental()
    assert run.periods_recomputed == full.periods_recomputed
    assert KpiValue.objects.filter(scope="program", period="2026-02").exists()
    after = published()
    assert full_recompute_set() == after


@pytest.mark.django_db
def test_a_state_left_by_other_kpi_code_makes_the_run_recompute_everything(monkeypatch):
    from kpis.engine import state

    deals = small_program(partners=2)
    full = t.recompute()
    monkeypatch.setattr(state, "CODE_VERSION", "a-release-with-another-formula")
    Deal.objects.filter(pk=deals[0].pk).update(amount=D("4.00"), updated_at=timezone.now())
    assert incremental().periods_recomputed == full.periods_recomputed
    Deal.objects.filter(pk=deals[0].pk).update(amount=D("5.00"), updated_at=timezone.now())
    assert incremental().periods_recomputed == 3  # the new state carries the new version


@pytest.mark.django_db
def test_a_missing_or_incomplete_state_makes_the_run_recompute_everything():
    small_program(partners=2)
    full = t.recompute()
    state = KpiPublication.objects.get(pk=1).state_run_id
    assert state == full.pk and state_exists(full.pk)
    # PostgreSQL empties unlogged tables after a crash: the sentinel goes with them.
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {state_table(full.pk, 'kx_state')}")
    assert not state_exists(full.pk)
    Deal.objects.filter(pk=Deal.objects.first().pk).update(amount=D("2.00"), updated_at=timezone.now())
    run = incremental()
    assert run.periods_recomputed == full.periods_recomputed
    assert KpiPublication.objects.get(pk=1).state_run_id == run.pk and state_exists(run.pk)
    after = published()
    assert full_recompute_set() == after


@pytest.mark.django_db
def test_a_set_written_during_an_incremental_run_fails_it_and_publishes_nothing(monkeypatch):
    from kpis import services
    from kpis.run_publication import PublishedSetChanged
    from kpis.services import kpi_run_create

    deals = small_program(partners=2)
    t.recompute()
    Deal.objects.filter(pk=deals[0].pk).update(amount=D("3.00"), updated_at=timezone.now())
    # A partner deleted meanwhile: its rows go by cascade, which writes the published set.
    publish_after(monkeypatch, lambda: KpiValue.objects.filter(scope="partner", scope_key="p1").delete())
    before = published()
    run, _ = kpi_run_create(trigger="command", mode="incremental", as_of=t.at("2026-12-31").date())
    with pytest.raises(PublishedSetChanged):
        services.kpi_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and "next run recomputes every period" in run.error
    assert published() == {row for row in before if not (row[1] == "partner" and row[2] == "p1")}
    monkeypatch.undo()
    rerun = incremental()
    assert rerun.periods_recomputed == 17
    after = published()
    assert full_recompute_set() == after


@pytest.mark.django_db
def test_a_change_in_a_month_that_left_the_range_recomputes_its_quarter_and_year():
    web = t.join_source("web")
    p = t.partner("p", web, joined="2026-01-02")
    t.deal("100.00", created="2026-02-03 10:00", closed="2026-03-20 10:00", sourced_by=p)
    CostEntry.objects.create(date="2026-08-14", amount=D("500.00"), partner=p, category="mdf")
    t.recompute(as_of="2026-06-30")
    assert t.value("program_cost", "2026") == D("500.00")
    # The only August fact goes: the range ends in June again, and Q3 leaves it, but 2026 stays.
    CostEntry.objects.all().delete()
    incremental(as_of="2026-06-30")
    assert t.value("program_cost", "2026") == D("0.0000")
    assert not KpiValue.objects.filter(period__in=["2026-08", "2026-Q3"]).exists()
    after = published()
    assert full_recompute_set(as_of="2026-06-30") == after

    # The earliest fact goes: January leaves the range; Q1 and 2026 lose its revenue.
    early = t.deal("77.00", created="2025-12-28 10:00", closed="2026-01-20 10:00")
    t.recompute(as_of="2026-06-30")
    assert t.value("won_revenue", "2026-Q1") == D("177.00")
    Deal.objects.filter(pk=early.pk).delete()
    incremental(as_of="2026-06-30")
    assert t.value("won_revenue", "2026-Q1") == t.value("won_revenue", "2026") == D("100.00")
    after = published()
    assert full_recompute_set(as_of="2026-06-30") == after


@pytest.mark.django_db
def test_settings_changed_while_a_run_computed_make_the_next_run_recompute_everything(monkeypatch):

    web = t.join_source("web")
    p1, p2 = t.partner("p1", web, joined="2026-01-02"), t.partner("p2", web, joined="2026-01-02")
    d = t.deal("100.00", created="2026-02-03 10:00", closed="2026-03-20 10:00")
    t.touch(d, p1, "2026-02-05 10:00")
    t.touch(d, p2, "2026-02-06 10:00")
    sourced = t.deal("50.00", created="2026-07-03 10:00", closed="2026-08-20 10:00", sourced_by=p1)
    publish_after(monkeypatch, lambda: t.program(attribution_model="first_touch"))  # while linear computes
    full = t.recompute()
    monkeypatch.undo()
    Deal.objects.filter(pk=sourced.pk).update(amount=D("60.00"), updated_at=timezone.now())
    run = incremental()
    assert run.periods_recomputed == full.periods_recomputed
    assert set(KpiValue.objects.values_list("attribution_model", flat=True)) == {"first_touch"}
    after = published()
    assert full_recompute_set() == after


@pytest.mark.django_db
def test_a_failed_clean_up_after_publishing_keeps_the_run_succeeded_and_its_state(monkeypatch):
    from django.db import OperationalError

    from kpis import run_publication

    deals = small_program(partners=2)
    first = t.recompute()

    original = run_publication.drop_unused_namespaces

    def lock_timeout(*, keep):
        if keep == first.pk:  # the clean-up when the run is created
            return original(keep=keep)
        raise OperationalError("lock timeout")  # the clean-up after it published

    monkeypatch.setattr(run_publication, "drop_unused_namespaces", lock_timeout)
    Deal.objects.filter(pk=deals[0].pk).update(amount=D("6.00"), updated_at=timezone.now())
    run = incremental()
    assert run.periods_recomputed == 3
    assert KpiPublication.objects.get(pk=1).state_run_id == run.pk
    monkeypatch.undo()
    # The next run restricts itself again, and clears what the failed clean-up left.
    Deal.objects.filter(pk=deals[0].pk).update(amount=D("7.00"), updated_at=timezone.now())
    last = incremental()
    assert last.periods_recomputed == 3
    assert not state_exists(first.pk) and not state_exists(run.pk) and state_exists(last.pk)


@pytest.mark.django_db
def test_the_clean_up_keeps_the_tables_of_a_run_still_queued_or_running():
    from kpis.engine import drop_state, state_runs
    from kpis.run_publication import drop_unused_namespaces

    small_program(partners=1)
    done = t.recompute()
    queued = KpiRun.objects.create(trigger="command", status=KpiRun.Status.QUEUED)
    finished = KpiRun.objects.create(trigger="command", status=KpiRun.Status.FAILED)
    with connection.cursor() as cursor:
        for run in (queued, finished):
            if connection.vendor == "postgresql":
                cursor.execute(f"CREATE SCHEMA kpirun_{run.pk}")
            cursor.execute(f"CREATE TABLE {state_table(run.pk, 'kx_deal')} (id BIGINT)")
    drop_unused_namespaces(keep=done.pk)
    assert state_runs() == {done.pk, queued.pk}
    drop_state(queued.pk)


@pytest.mark.django_db
def test_a_renamed_join_source_key_alone_is_not_skipped_by_the_nightly_shortcut():
    small_program(partners=1)
    t.recompute()
    JoinSource.objects.filter(key="web").update(key="website")
    run = incremental()
    assert run.periods_recomputed > 0
    assert not KpiValue.objects.filter(scope="join_source", scope_key="web").exists()
    assert KpiValue.objects.filter(scope="join_source", scope_key="website").exists()


@pytest.mark.django_db
def test_a_touch_edited_on_its_own_is_not_skipped_by_the_nightly_shortcut():
    """The admin's touch page saves the touch alone (not its deal): the nightly run must see it."""
    small_program(partners=2)
    t.recompute()
    touch = Touch.objects.order_by("id").first()
    february = t.value("opportunities_influenced", "2026-02", scope="partner", key=touch.partner.key)
    assert touch.touched_at.month == 2 and february == 2
    touch.touched_at = touch.touched_at.replace(month=5)
    touch.save()
    run = incremental()
    assert run.periods_recomputed > 0
    assert t.value("opportunities_influenced", "2026-02", scope="partner", key=touch.partner.key) == 1
    assert full_recompute_set() == published()


@pytest.mark.django_db
def test_a_touch_replaced_under_an_older_clock_is_not_skipped_by_the_nightly_shortcut():
    """One touch deleted and another added, stamped by a host whose clock is behind: the count and
    the latest `updated_at` stay, the newest id moves."""
    small_program(partners=2)
    t.recompute()
    oldest = Touch.objects.order_by("updated_at", "id").first()
    stamp = oldest.updated_at
    replaced = Touch.objects.exclude(pk=oldest.pk).order_by("id").first()
    deal, partner, kind = replaced.deal, replaced.partner, replaced.kind
    replaced.delete()
    added = Touch.objects.create(
        deal=deal, partner=partner, kind=kind, touched_at=timezone.now().replace(year=2026, month=7, day=1)
    )
    Touch.objects.filter(pk=added.pk).update(updated_at=stamp)
    run = incremental()
    assert run.periods_recomputed > 0
    assert full_recompute_set() == published()
