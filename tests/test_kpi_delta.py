"""Delta facts: the change log the triggers keep, and incremental runs that patch the previous
run's facts with the rows changed since, publishing exactly what a full recompute publishes."""

import random
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import InterfaceError, OperationalError, connection

from deals.models import Deal, DealRegistration, Touch
from kpis import engine
from kpis.engine import state
from kpis.engine.incremental import delta_facts
from kpis.models import CostEntry, FactChange, KpiRun, KpiValue, ReconciliationItem, Target
from kpis.services import kpi_run_execute, target_set
from partners.models import JoinSource, Partner
from tests.kpi_hooks import on_statement, statements, terminate_backend
from tests.support import kpis as t
from tests.test_kpi_incremental import (
    _mutate,
    demo_program,  # noqa: F401 - fixture
    full_recompute_set,
    incremental,
    publish_after,
)
from tests.test_kpi_runs import published, small_program

D = Decimal


def logged() -> set[tuple]:
    """The change log as (source, row id, related id), emptied."""
    rows = set(FactChange.objects.values_list("source", "row_id", "related_id"))
    FactChange.objects.all().delete()
    return rows


@pytest.mark.django_db
def test_every_write_to_a_kpi_input_is_logged_whoever_makes_it():
    web = t.join_source("web")
    p = t.partner("p", web, joined="2026-01-05")
    d1 = t.deal("100.00", created="2026-01-10 10:00", closed="2026-02-10 10:00")
    d2 = t.deal("200.00", created="2026-01-10 10:00")
    assert logged() == {("partner", p.pk, None), ("deal", d1.pk, None), ("deal", d2.pk, None)}

    touch = t.touch(d1, p, "2026-01-20 10:00")
    assert logged() == {("touch", touch.pk, d1.pk)}
    # A touch moved to another deal: both deals' facts change.
    Touch.objects.filter(pk=touch.pk).update(deal=d2)
    assert logged() == {("touch", touch.pk, d1.pk), ("touch", touch.pk, d2.pk)}

    with connection.cursor() as cursor:
        cursor.execute("UPDATE deals_deal SET amount = 150 WHERE id = %s", [d1.pk])
    assert logged() == {("deal", d1.pk, None)}

    registration = t.registration(p, submitted="2026-01-11 10:00")
    cost = CostEntry.objects.create(date="2026-01-31", amount=D("10.00"), partner=p, category="mdf")
    Partner.objects.filter(pk=p.pk).update(name="P renamed")
    assert logged() == {
        ("registration", registration.pk, None),
        ("cost", cost.pk, None),
        ("partner", p.pk, None),
    }
    # A delete cascades to the deal's touches; each logs itself.
    Deal.objects.filter(pk=d2.pk).delete()
    assert logged() == {("deal", d2.pk, None), ("touch", touch.pk, d2.pk)}


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_truncate_is_logged():
    CostEntry.objects.create(date="2026-01-31", amount=D("10.00"), category="mdf")
    logged()
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's own inserts' deferred checks
        cursor.execute("TRUNCATE kpis_costentry CASCADE")
    assert logged() == {("truncate", 0, None)}


@pytest.mark.django_db
def test_an_incremental_run_patches_the_facts_with_the_changed_rows_only():
    deals = small_program(partners=3)
    full = t.recompute()
    assert full.changed_rows is None  # a full run builds its facts
    # The published state includes every change so far: the log is empty.
    assert not FactChange.objects.exists()
    march = next(d for d in deals if d.closed_at.month == 3)
    Deal.objects.filter(pk=march.pk).update(amount=D("555.55"))
    assert FactChange.objects.count() == 1
    run = incremental()
    assert run.changed_rows == 1 and run.periods_recomputed == 3
    assert t.value("sourced_revenue", "2026-03", scope="partner", key=march.sourcing_partner.key) == D(
        "555.55"
    )
    assert not FactChange.objects.exists()
    after = published()
    assert full_recompute_set() == after


@pytest.mark.django_db
def test_a_target_changed_by_a_queryset_update_is_not_skipped_as_unchanged():
    small_program(partners=2)
    target = target_set(metric="won_revenue", period="2026-03", value="10")
    t.recompute()
    assert not FactChange.objects.exists()
    # .update() leaves updated_at alone: the source fingerprint cannot see it, the change log does.
    Target.objects.filter(pk=target.pk).update(value=D("99"))
    assert set(FactChange.objects.values_list("source", "row_id")) == {("target", target.pk)}
    run = incremental()
    assert run.changed_rows == 1
    assert KpiValue.objects.get(scope="program", period="2026-03", metric="target").value == D("99")
    after = published()
    assert full_recompute_set() == after


def published_months() -> list[str]:
    return sorted(set(KpiValue.objects.filter(grain="month").values_list("period", flat=True)))


@pytest.mark.django_db
def test_the_period_range_follows_the_changed_rows_and_is_scanned_only_when_its_bound_row_moved():
    small_program(partners=2)
    t.recompute()
    assert published_months()[0] == "2026-01" and published_months()[-1] == "2026-12"
    # The run's statements that find the fact rows' first and last month: of the affected rows
    # before and after patching, and (only when a bound row moved inward) of every fact row.
    bounds = r"SELECT MIN\(lo\), MAX\(hi\)"

    def scanned_rows(statement: str) -> str | None:
        return next((when for when in ("before", "now") if f"kx_aff_deal_{when}" in statement), None)

    def step(edit, *, scanned: bool, months: tuple[str, str]) -> None:
        edit()
        with statements(bounds) as seen:
            assert incremental().changed_rows == 1
        assert [scanned_rows(statement) for statement in seen] == ["before", "now"] + (
            [None] if scanned else []
        )
        after = published()
        assert (published_months()[0], published_months()[-1]) == months
        assert full_recompute_set() == after

    early = t.deal("10.00", created="2025-11-20 10:00")
    # A row beyond a bound moves it; one at the bound that stays keeps it.
    step(lambda: None, scanned=False, months=("2025-11", "2026-12"))
    step(
        lambda: Deal.objects.filter(pk=early.pk).update(amount=D("11.00")),
        scanned=False,
        months=("2025-11", "2026-12"),
    )
    # The row holding a bound moved inward: only a scan tells where the bound is now.
    step(
        lambda: Deal.objects.filter(pk=early.pk).update(created_at=t.at("2026-02-01 10:00")),
        scanned=True,
        months=("2026-01", "2026-12"),
    )
    cost = CostEntry.objects.create(date="2027-02-03", amount=D("5.00"), category="mdf")
    step(lambda: None, scanned=False, months=("2026-01", "2027-02"))
    step(lambda: CostEntry.objects.filter(pk=cost.pk).delete(), scanned=True, months=("2026-01", "2026-12"))


@pytest.mark.django_db
def test_patched_cells_count_the_changed_periods_and_keep_targets_up_to_date():
    deals = small_program(partners=2)
    march = next(d for d in deals if d.closed_at.month == 3)
    key = march.sourcing_partner.key
    target_set(metric="sourced_revenue", period="2026-Q1", value="1000", partner=march.sourcing_partner)
    target_set(metric="won_revenue", period="2026-07", value="10")
    t.recompute()
    Deal.objects.filter(pk=march.pk).update(amount=D("250.00"))
    run = incremental()
    # March, Q1 and 2026: not the targets' July.
    assert run.changed_rows == 1 and run.periods_recomputed == 3
    q1 = {"scope": "partner", "key": key, "grain": "quarter"}
    sourced = t.value("sourced_revenue", "2026-Q1", **q1)
    progress = KpiValue.objects.get(
        scope="partner",
        scope_key=key,
        period="2026-Q1",
        metric="target_progress",
        target_metric="sourced_revenue",
    ).value
    assert progress == (sourced / D("1000")).quantize(D("0.0001"))
    after = published()
    assert full_recompute_set() == after


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_large_prune_empties_the_change_log_with_truncate(monkeypatch):
    deals = small_program(partners=2)
    t.recompute()
    Deal.objects.filter(pk__in=[d.pk for d in deals[:3]]).update(amount=D("123.00"))
    monkeypatch.setattr(state, "TRUNCATE_CHANGE_LOG_ROWS", 3)
    assert incremental().changed_rows == 3
    assert not FactChange.objects.exists()
    with connection.cursor() as cursor:
        # A DELETE leaves the table's pages behind until a vacuum; TRUNCATE gives it a new, empty file.
        cursor.execute("SELECT pg_relation_size(%s)", [FactChange._meta.db_table])
        assert cursor.fetchone()[0] == 0
    after = published()
    assert full_recompute_set() == after


@pytest.mark.django_db
@pytest.mark.parametrize("truncate_from", [state.TRUNCATE_CHANGE_LOG_ROWS, 1])
def test_a_change_made_while_a_run_computes_waits_for_the_next_run(monkeypatch, truncate_from):
    # With truncate_from 1 every prune would empty the log with TRUNCATE, but for the later row.
    monkeypatch.setattr(state, "TRUNCATE_CHANGE_LOG_ROWS", truncate_from)
    deals = small_program(partners=2)
    t.recompute()
    march = next(d for d in deals if d.closed_at.month == 3)
    key = march.sourcing_partner.key
    Deal.objects.filter(pk=march.pk).update(amount=D("300.00"))

    def write():
        Deal.objects.filter(pk=march.pk).update(amount=D("777.00"))

    publish_after(monkeypatch, write)
    run = incremental()
    # The run publishes what it read; the later change stays in the log for the next run.
    assert t.value("sourced_revenue", "2026-03", scope="partner", key=key) == D("300.00")
    assert run.changed_rows == 1
    assert set(FactChange.objects.values_list("source", "row_id")) == {("deal", march.pk)}
    monkeypatch.undo()
    assert incremental().changed_rows == 1
    assert t.value("sourced_revenue", "2026-03", scope="partner", key=key) == D("777.00")
    after = published()
    assert full_recompute_set() == after


@pytest.mark.django_db
def test_too_many_changed_rows_make_the_run_build_its_facts_in_full(monkeypatch):
    deals = small_program(partners=2)
    t.recompute()
    Deal.objects.filter(pk=deals[0].pk).update(amount=D("1.00"))
    monkeypatch.setattr(delta_facts, "DELTA_MAX_SHARE", 0)
    monkeypatch.setattr(delta_facts, "DELTA_MIN_ROWS", 0)
    run = incremental()
    assert run.changed_rows is None and run.periods_recomputed == 3
    after = published()
    assert full_recompute_set() == after


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_truncated_table_makes_the_run_build_its_facts_in_full():
    small_program(partners=2)
    CostEntry.objects.create(date="2026-02-14", amount=D("99.00"), category="mdf")
    t.recompute()
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's own inserts' deferred checks
        cursor.execute("TRUNCATE kpis_costentry CASCADE")
    run = incremental()
    assert run.changed_rows is None
    assert t.value("program_cost", "2026-02") == D("0")
    after = published()
    assert full_recompute_set() == after


def _mutate_more(rng: random.Random, round_no: int) -> None:
    """Edits _mutate does not make: touches moved and re-dated, registrations and deals moving to
    other partners and accounts, a partner without facts yet."""
    touches = list(Touch.objects.values_list("id", flat=True))
    deal_ids = list(Deal.objects.values_list("id", flat=True))
    partner_ids = list(Partner.objects.values_list("id", flat=True))
    for touch_id in rng.sample(touches, 3):
        Touch.objects.filter(pk=touch_id).update(deal_id=rng.choice(deal_ids))
    for touch in Touch.objects.filter(pk__in=rng.sample(touches, 3)):
        Touch.objects.filter(pk=touch.pk).update(
            touched_at=touch.touched_at + timedelta(days=rng.choice([-31, 17]))
        )
    registrations = list(DealRegistration.objects.values_list("id", flat=True))
    DealRegistration.objects.filter(pk__in=rng.sample(registrations, 2)).update(
        partner_id=rng.choice(partner_ids)
    )
    accounts = list(Deal.objects.values_list("account_id", flat=True).distinct())
    Deal.objects.filter(pk__in=rng.sample(deal_ids, 3)).update(account_id=rng.choice(accounts))
    # (Deleting a partner deletes its published rows too: that run recomputes every period.)
    t.partner(f"late-joiner-{round_no}", JoinSource.objects.first(), joined="2026-05-01")


def reconciliation_items() -> Counter:
    """The published reconciliation items, as a multiset (their ids and order aside)."""
    return Counter(
        ReconciliationItem.objects.values_list(
            "kind", "description", "deal_id", "partner_id", "touch_id", "account_id", "registration_ids"
        )
    )


def _assert_delta_runs_equal_full(rounds: int = 3, *, cells: bool = True) -> list[KpiRun]:
    """Rounds of every kind of edit, each followed by an incremental run on patched facts that must
    equal a full run from scratch. `cells`: those runs patch cells; else each round also adds a cost
    in a month after the last period, so the periods change and the runs recompute the periods
    that changed instead (cells are patched only while the periods stay the same)."""
    rng = random.Random(20261202)
    as_of = ["2026-08-20", "2026-09-02", "2026-09-02", "2026-11-30"]
    first = t.recompute(as_of=as_of[0])
    assert first.status == "succeeded", first.error
    runs = []
    for round_no in range(1, rounds + 1):
        _mutate(rng, round_no)
        _mutate_more(rng, round_no)
        if not cells:
            CostEntry.objects.create(date=date(2030, round_no, 15), amount=D("3.00"), category="mdf")
        # Patching cells starts by listing the cells whose medians changed (kx_dmed).
        with statements(r"^CREATE TEMP TABLE kx_dmed ") as patching:
            run = incremental(as_of=as_of[round_no])
        assert run.changed_rows, f"round {round_no}: the facts were built in full"
        assert len(patching) == (1 if cells else 0), f"round {round_no}: patched cells?"
        runs.append(run)
        after, items = published(), reconciliation_items()
        # The full run from scratch leaves its own state; the next round patches that one.
        assert full_recompute_set(as_of=as_of[round_no]) == after, f"round {round_no}"
        assert reconciliation_items() == items, f"round {round_no}: reconciliation items"
    return runs


@pytest.mark.django_db
@pytest.mark.parametrize("cells", [True, False], ids=["patched cells", "recomputed periods"])
def test_patched_facts_after_every_kind_of_change_equal_full_recomputes(
    demo_program,  # noqa: F811
    cells,
):
    _assert_delta_runs_equal_full(cells=cells)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("cells", [True, False], ids=["patched cells", "recomputed periods"])
def test_chunked_runs_on_patched_facts_equal_full_recomputes(
    settings,
    demo_program,  # noqa: F811
    cells,
):
    settings.KPI_CHUNKS = 2
    _assert_delta_runs_equal_full(rounds=2, cells=cells)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("failing", ["patching cells", "a chunk"])
def test_a_run_failing_on_patched_facts_leaves_the_next_run_to_build_them(
    settings,
    demo_program,  # noqa: F811
    monkeypatch,
    failing,
):
    settings.KPI_CHUNKS = 2
    assert t.recompute().status == "succeeded"
    Deal.objects.filter(pk=Deal.objects.filter(status="won").first().pk).update(amount=D("4321.00"))
    if failing == "a chunk":
        # A renamed key changes rows of cells no changed fact lands in: periods are recomputed, in chunks.
        Partner.objects.filter(pk=Partner.objects.order_by("pk").first().pk).update(key="renamed-key")
        original = engine.KpiComputation.run_chunk

        def run_chunk(self, number, chunk):
            if number == 1:
                raise RuntimeError("chunk 1 lost its disk")
            return original(self, number, chunk)

        monkeypatch.setattr(engine.KpiComputation, "run_chunk", run_chunk)
        with pytest.raises(RuntimeError):
            t.recompute(mode="incremental")
        failed = KpiRun.objects.order_by("-id").first()
        # A run failing before its facts are recorded leaves changed_rows empty.
        assert failed.status == "failed" and failed.changed_rows == 2
        monkeypatch.undo()
        # The failed run had taken the previous facts over (committed): the next one builds its own.
        assert incremental().changed_rows is None
    else:
        # The run's backend is terminated as it starts patching the cells, inside the transaction
        # that took the previous facts over: the run goes back to the queue (a database outage).
        terminated = on_statement(r"^CREATE TEMP TABLE kx_dmed ", lambda sql: terminate_backend())
        with terminated, pytest.raises((OperationalError, InterfaceError)):
            t.recompute(mode="incremental")
        failed = KpiRun.objects.order_by("-id").first()
        assert failed.status == "queued" and "database unavailable" in failed.error
        # Rolled back, the previous state is whole: the task's retry patches it again.
        retried = kpi_run_execute(run_id=failed.pk)
        assert retried.status == "succeeded" and retried.changed_rows == 1
    after = published()
    assert full_recompute_set() == after


@pytest.mark.django_db
@pytest.mark.parametrize("change", ["deleted", "moved"])
def test_a_registration_deleted_or_moved_takes_its_partners_activity_with_it(change):
    web = t.join_source("web")
    p = t.partner("p", web, joined="2026-01-05")
    # q joined after the registration's date: it is no activity of q's.
    q = t.partner("q", web, joined="2026-07-01")
    # p's only qualifying activity: active at the end of June, July and August (90 days), and Q2.
    registration = t.registration(p, submitted="2026-06-10 10:00")
    t.recompute()
    assert [t.value("active_partners", m) for m in ("2026-06", "2026-08", "2026-09", "2026-Q2")] == [
        D("1"),
        D("1"),
        D("0"),
        D("1"),
    ]
    if change == "deleted":
        DealRegistration.objects.filter(pk=registration.pk).delete()
    else:
        DealRegistration.objects.filter(pk=registration.pk).update(partner=q)
    run = incremental()
    assert run.changed_rows == 1
    assert [t.value("active_partners", m) for m in ("2026-06", "2026-08", "2026-Q2")] == [D("0")] * 3
    after = published()
    assert full_recompute_set() == after


def state_rows(run: KpiRun, table: str, columns: str) -> Counter:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {engine.state_table(run.pk, table)}")
        return Counter(tuple(str(value) for value in row) for row in cursor.fetchall())


@pytest.mark.django_db
def test_activities_and_first_sales_patched_by_their_extremes_equal_a_full_build():
    """Random edits around each partner's earliest and latest activities and earliest sale, the
    as-of date moving both ways: the patched kx_actm and kx_fs equal a full build's."""
    paths = Counter()

    def count_paths(sql: str) -> None:
        # After patching's last statement, in the run's session: the partners each path took.
        with connection.cursor() as cursor:
            for table in ("kx_act_adj", "kx_fs_adj", "kx_recalc_actm", "kx_recalc_fs"):
                cursor.execute(f"SELECT COUNT(*) FROM {table}")
                paths[table] += cursor.fetchone()[0]

    rng = random.Random(20261203)
    web = t.join_source("web")
    partners = [t.partner(f"p{i}", web, joined=f"2026-0{1 + i % 3}-05") for i in range(6)]

    def day(lo: int, hi: int) -> str:
        return str(date(2026, 1, 1) + timedelta(days=rng.randint(lo, hi))) + " 10:00"

    for _ in range(40):
        created = day(0, 150)
        closed = day(151, 240) if rng.random() < 0.6 else None
        deal = t.deal("100.00", created=created, closed=closed, sourced_by=rng.choice([None, *partners]))
        for _ in range(rng.randint(0, 3)):
            t.touch(deal, rng.choice(partners), day(0, 250))
    for _ in range(20):
        t.registration(rng.choice(partners), submitted=day(0, 240))
    as_ofs = [
        "2026-07-01",
        "2026-07-02",
        "2026-08-20",
        "2026-08-05",
        "2026-09-30",
        "2026-09-30",
        "2026-12-31",
    ]
    t.recompute(as_of=as_ofs[0])
    for as_of in as_ofs[1:]:
        deals = list(Deal.objects.all())
        open_deals = [d for d in deals if d.status == "open"]
        won = [d for d in deals if d.status == "won"]
        for deal in rng.sample(open_deals, min(3, len(open_deals))):
            deal.status, deal.closed_at = "won", t.at(f"{as_of} 09:00") - timedelta(days=1)
            deal.save()
        for deal in rng.sample(won, min(4, len(won))):
            change = rng.choice(["lost", "earlier", "later", "delete", "partner"])
            if change == "lost":
                deal.status = "lost"
            elif change in ("earlier", "later"):
                deal.closed_at += timedelta(days=-40 if change == "earlier" else 25)
            elif change == "partner":
                deal.sourcing_partner = rng.choice([None, *partners])
            if change == "delete" and not deal.commission_entries.exists():  # the ledger protects the rest
                deal.delete()
            else:
                deal.save()
        touches = list(Touch.objects.all())
        for touch in rng.sample(touches, min(3, len(touches))):
            touch.delete()
        for _ in range(3):
            t.touch(rng.choice(list(Deal.objects.all())), rng.choice(partners), day(0, 250))
        registrations = list(DealRegistration.objects.filter(commission_entries__isnull=True))
        for registration in rng.sample(registrations, min(2, len(registrations))):
            registration.delete()
        t.registration(rng.choice(partners), submitted=day(0, 240))
        if rng.random() < 0.4:
            partner = rng.choice(partners)
            Partner.objects.filter(pk=partner.pk).update(joined_at=date(2026, rng.randint(1, 5), 5))

        # The last statement of patching the activities and first sales adds the recomputed ones.
        with on_statement(r"^INSERT INTO kx_fs SELECT p\.id", count_paths, after=True):
            run = incremental(as_of=as_of)
        assert run.changed_rows, f"{as_of}: the facts were built in full"
        activities = state_rows(run, "kx_actm", "partner_id, js, mi, mind, maxd")
        sales = state_rows(run, "kx_fs", "partner_id, fs_d")
        after = published()
        assert full_recompute_set(as_of=as_of) == after, as_of
        full = KpiRun.objects.latest("id")
        assert state_rows(full, "kx_actm", "partner_id, js, mi, mind, maxd") == activities, as_of
        assert state_rows(full, "kx_fs", "partner_id, fs_d") == sales, as_of
    # Both ways were taken: extremes adjusted, and partners recomputed.
    assert all(paths[table] > 0 for table in ("kx_act_adj", "kx_fs_adj", "kx_recalc_actm", "kx_recalc_fs")), (
        paths
    )
