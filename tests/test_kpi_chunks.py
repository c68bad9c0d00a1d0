"""Chunked KPI runs (PostgreSQL): the scopes split over several sessions publish exactly what one
session computing everything publishes, through threads and through real Celery workers."""

import uuid
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection
from django.db.models import Count, F
from django.test import override_settings

from deals.models import Deal, Touch
from interchange.demo import DemoSize
from interchange.seeding import seed_database
from kpis.engine import Chunk, KpiComputation
from kpis.models import KpiRun, KpiValue, ReconciliationItem, Target
from kpis.run_chunks import plan_chunks
from partners.models import JoinSource, Partner
from prm.celery import app as celery_app
from program.attribution import AttributionModel
from program.models import ProgramSettings, program_today
from tests.kpi_hooks import failing_kpi_writes, in_another_session, on_statement
from tests.support import kpis as t
from tests.test_celery_worker import celery_worker, wait_for
from tests.test_kpi_runs import published


def reconciliation() -> set[tuple]:
    return set(
        ReconciliationItem.objects.values_list(
            "kind", "deal_id", "partner_id", "touch_id", "account_id", "registration_ids"
        )
    )


def schemas_left() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'kpirun_%'")
        return [row[0] for row in cursor.fetchall()]


def test_chunks_hold_the_program_once_and_every_join_source_once():
    weights = [(1, 900), (2, 500), (3, 400), (4, 100), (5, 100)]
    chunks = plan_chunks(weights, 3)
    assert len(chunks) == 3
    assert sum(c.program for c in chunks) == 1
    assert sorted(j for c in chunks for j in c.join_sources) == [1, 2, 3, 4, 5]
    # Greedy, heaviest first into the lightest chunk: the program (0.5 x 2000 = 1000), 1 (900),
    # 2 (500), 3 (400) joins 2, 4 (100) joins 1 (a tie with 2 + 3 goes to the first), 5 (100) joins 2 + 3.
    assert Chunk(program=True, join_sources=()) in chunks
    assert Chunk(program=False, join_sources=(1, 4)) in chunks
    assert Chunk(program=False, join_sources=(2, 3, 5)) in chunks
    assert plan_chunks(weights, 1) == [Chunk(program=True, join_sources=(1, 2, 3, 4, 5))]
    # More chunks than items: no empty chunk.
    assert len(plan_chunks([(7, 10)], 4)) == 2


@pytest.fixture
def demo_program():
    seed_database(DemoSize(partners=40, deals=700, seed=11), progress=lambda _: None)
    t.join_source("no-partners-yet")  # its rows are dense too: some chunk must hold it


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("chunks", [2, 4])
def test_a_run_split_into_chunks_publishes_what_a_whole_run_publishes(settings, demo_program, chunks):
    whole = t.recompute()
    assert whole.status == "succeeded", whole.error
    expected, expected_items = published(), reconciliation()
    assert len(expected) > 1000 and len(expected_items) > 5
    KpiValue.objects.all().delete()

    settings.KPI_CHUNKS = chunks
    split = t.recompute()
    assert split.status == "succeeded", split.error
    assert published() == expected
    assert reconciliation() == expected_items
    assert split.rows_written == len(expected) and split.periods_recomputed == whole.periods_recomputed
    # Only the run's facts stay: the state the next incremental run diffs against.
    assert schemas_left() == [f"kpirun_{split.pk}"]
    # A rerun, chunked, on unchanged data writes nothing.
    again = t.recompute()
    assert again.status == "succeeded" and again.rows_written == again.rows_deleted == 0

    # Another attribution model: every chunk replaces its scopes' rows; nothing of the old stays.
    ProgramSettings.objects.filter(pk=1).update(attribution_model="first_touch")
    assert t.recompute().status == "succeeded"
    chunked_first_touch = published()
    assert {row[0] for row in chunked_first_touch} == {"first_touch"}
    settings.KPI_CHUNKS = 1
    KpiValue.objects.all().delete()
    assert t.recompute().status == "succeeded"
    assert published() == chunked_first_touch


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_failing_chunk_fails_the_run_and_leaves_the_published_set(settings, demo_program, monkeypatch):
    first = t.recompute()
    assert first.status == "succeeded"
    before = published()
    t.deal("999.00", created="2026-03-01 10:00", closed="2026-03-20 10:00")
    settings.KPI_CHUNKS = 3
    from kpis.engine import KpiComputation

    original = KpiComputation.run_chunk

    def run_chunk(self, number, chunk):
        if number == 1:
            raise RuntimeError("chunk 1 lost its disk")
        return original(self, number, chunk)

    monkeypatch.setattr(KpiComputation, "run_chunk", run_chunk)
    with pytest.raises(RuntimeError):
        t.recompute()
    run = KpiRun.objects.order_by("-id").first()
    assert run.status == "failed" and run.error == "chunk 1: RuntimeError: chunk 1 lost its disk"
    assert published() == before
    assert schemas_left() == [f"kpirun_{first.pk}"]  # the failed run's own schema is gone


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_chunks_read_the_targets_of_the_runs_snapshot(settings, demo_program, monkeypatch):
    """A target changed after the facts were read (while the chunks run) waits for the next run."""
    from kpis.engine import KpiComputation
    from kpis.services import target_set

    target_set(metric="sourced_revenue", period="2026-03", value="1000.00")
    settings.KPI_CHUNKS = 2
    original = KpiComputation.run_chunk

    def run_chunk(self, number, chunk):
        if number == 0:
            target_set(metric="sourced_revenue", period="2026-03", value="4000.00")
        return original(self, number, chunk)

    monkeypatch.setattr(KpiComputation, "run_chunk", run_chunk)
    t.recompute()
    monkeypatch.setattr(KpiComputation, "run_chunk", original)

    def published_target() -> Decimal:
        row = KpiValue.objects.get(
            scope="program", grain="month", period="2026-03", metric="target", target_metric="sourced_revenue"
        )
        return row.value

    assert published_target() == Decimal("1000.0000")
    t.recompute()
    assert published_target() == Decimal("4000.0000")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_chunks_compute_with_the_settings_their_facts_were_built_with(settings, demo_program, monkeypatch):
    """Settings committed after the shared facts were built (before the chunks load anything) wait
    for the next run: a run never labels one model's numbers with another's name."""
    from kpis import run_chunks

    settings.KPI_CHUNKS = 2
    model = ProgramSettings.load().attribution_model
    other = next(m for m in AttributionModel if m != model)
    t.recompute()
    before = published()
    assert {row[0] for row in before} == {model}
    original = run_chunks.plan_chunks

    def plan_after_a_settings_change(weights, count):
        ProgramSettings.objects.filter(pk=1).update(attribution_model=other, activation_window_days=7)
        return original(weights, count)

    monkeypatch.setattr(run_chunks, "plan_chunks", plan_after_a_settings_change)
    run = t.recompute()
    monkeypatch.setattr(run_chunks, "plan_chunks", original)
    assert run.status == KpiRun.Status.SUCCEEDED
    assert {row[0] for row in published()} == {model}
    assert not published() ^ before  # (not ==: pytest's diff of two large sets takes minutes)
    # The next run computes with the new settings.
    t.recompute()
    assert {row[0] for row in published()} == {other}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_chunk_plan_from_before_stored_settings_still_completes(settings, demo_program, monkeypatch):
    """A run in flight across the upgrade: its kx_chunks has no engine_settings column."""
    from kpis import run_chunks

    t.recompute()
    whole = published()
    settings.KPI_CHUNKS = 2
    original = run_chunks.kpi_chunk_execute

    def chunk_of_an_older_plan(*, run_id, number):
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE kpirun_{run_id}.kx_chunks DROP COLUMN IF EXISTS engine_settings")
        original(run_id=run_id, number=number)

    monkeypatch.setattr(run_chunks, "kpi_chunk_execute", chunk_of_an_older_plan)
    KpiValue.objects.all().delete()
    run = t.recompute()
    assert run.status == KpiRun.Status.SUCCEEDED
    assert not published() ^ whole


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_periods_of_a_chunked_run_come_from_its_snapshot_too(settings, demo_program):
    """A far-future target created after the facts were read neither stretches the run's periods
    nor is half published: the next run publishes both."""
    from kpis.services import target_set

    settings.KPI_CHUNKS = 2
    t.recompute()
    periods = set(KpiValue.objects.values_list("grain", "period").distinct())

    def new_target(sql: str) -> None:
        in_another_session(lambda: target_set(metric="sourced_revenue", period="2031-01", value="5.00"))

    # Committed as the run starts on its periods, after it read its facts.
    with on_statement(r"^CREATE UNLOGGED TABLE \w+\.kx_grain ", new_target):
        t.recompute()
    assert set(KpiValue.objects.values_list("grain", "period").distinct()) == periods
    t.recompute()
    assert KpiValue.objects.filter(period="2031-01", metric="target", value=Decimal("5.0000")).exists()


@pytest.mark.postgres
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_real_workers_share_the_chunks_of_a_run_and_the_last_one_publishes(tmp_path, broker, demo_program):
    whole = t.recompute(as_of=program_today().isoformat())  # what the worker's run will use
    expected = published()
    KpiValue.objects.all().delete()
    url, options, env_extra = broker
    queue = f"kpi-chunks-{uuid.uuid4().hex[:8]}"
    with celery_worker(tmp_path, queue, "--concurrency=2", KPI_CHUNKS="3", **env_extra) as worker:
        with celery_app.connection_for_write(url, transport_options=options) as conn:
            celery_app.send_task(
                "kpis.tasks.recompute_kpis",
                kwargs={"trigger": "manual", "mode": "full"},
                queue=queue,
                connection=conn,
            )
        run = wait_for(
            lambda: KpiRun.objects.exclude(pk=whole.pk).filter(status__in=["succeeded", "failed"]).first(),
            120,
            "the chunked KPI run",
            worker,
        )
        assert run.status == "succeeded", run.error
        assert published() == expected
        # The worker drops the previous run's facts just after its publication commits.
        wait_for(lambda: schemas_left() == [f"kpirun_{run.pk}"], 30, "the previous state dropped", worker)
    log = worker.stdout.read()
    assert log.count("kpis.tasks.compute_kpi_chunk") >= 3, log[-3000:]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_schema_a_dead_chunked_run_left_is_dropped_when_the_next_run_starts(settings):
    t.join_source("web")
    with connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA kpirun_999999")
        cursor.execute("CREATE TABLE kpirun_999999.kx_deal (id BIGINT)")
    settings.KPI_CHUNKS = 2
    run = t.recompute()
    assert run.status == "succeeded"
    assert schemas_left() == [f"kpirun_{run.pk}"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_chunked_run_is_published_once_even_if_two_last_chunks_try(settings, demo_program):
    """A chunk redelivered after its worker died can also find itself last: only one publishes."""
    from kpis.engine import run_schema
    from kpis.run_chunks import shared_computation
    from kpis.run_execution import claim
    from kpis.run_publication import finisher, publish
    from kpis.services import kpi_run_create

    settings.KPI_CHUNKS = 2
    created, _ = kpi_run_create(trigger="command", as_of=program_today())
    run = claim(created.pk)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {run_schema(run.pk)}")
    computation = shared_computation(run)
    computation.run_facts()
    for number, chunk in enumerate(plan_chunks(computation.chunk_weights(), 2)):
        computation.run_chunk(number, chunk)
    with computation.search_path():
        first = publish(run=run, on_published=finisher(run, periods=1), diffed=True)
        expected = published()
        second = publish(run=run, on_published=finisher(run, periods=1), diffed=True)
    run.refresh_from_db()
    assert run.status == "succeeded" and first["inserted"] == run.rows_written == len(expected) > 1000
    assert second == {"inserted": 0, "updated": 0, "deleted": 0, "changed_periods": 0}
    assert published() == expected
    with connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA {run_schema(run.pk)} CASCADE")


@pytest.mark.django_db
@pytest.mark.parametrize("fails_in", [None, "lock_runs", "a write"])
def test_a_chunked_publication_retried_after_its_transaction_failed_publishes_every_change(
    monkeypatch, fails_in
):
    """The chunks' shared differences (kx_del, kx_ins) stay whole when the publishing transaction
    fails, so the chunk task's retry publishes the updates paired in them too."""
    from django.db import OperationalError

    from kpis import run_publication
    from kpis.engine import PUBLISHED_COLUMNS, VANISHED_COLUMNS
    from tests.test_kpi_runs import small_program

    small_program()
    assert t.recompute().status == "succeeded"
    changed = KpiValue.objects.filter(scope="program", metric="won_revenue", grain="month").exclude(
        value=None
    )[0]
    run = KpiRun.objects.create(trigger="command", mode="full", status="running")
    with connection.cursor() as cursor:
        # What a chunk stages for one changed value: its published row to remove, its new row.
        for table in ("kx_del", "kx_ins", "kx_js", "kx_partner", "kx_recon"):
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
        one = f"FROM kpis_kpivalue WHERE id = {changed.pk}"
        cursor.execute(f"CREATE TEMP TABLE kx_del AS SELECT {VANISHED_COLUMNS}, 0 AS chunk {one}")
        cursor.execute(f"CREATE TEMP TABLE kx_ins AS SELECT {PUBLISHED_COLUMNS}, 0 AS chunk {one}")
        cursor.execute("UPDATE kx_ins SET value = 12345")
        cursor.execute("CREATE TEMP TABLE kx_js AS SELECT id FROM partners_joinsource")
        cursor.execute("CREATE TEMP TABLE kx_partner AS SELECT id FROM partners_partner")
        cursor.execute(
            "CREATE TEMP TABLE kx_recon AS SELECT kind, description AS detail, deal_id, partner_id, "
            "touch_id, account_id, registration_ids FROM kpis_reconciliationitem WHERE 1 = 0"
        )
    if fails_in == "lock_runs":
        failing = run_publication.lock_runs

        def fail_once() -> None:
            monkeypatch.setattr(run_publication, fails_in, failing)
            raise OperationalError("server closed the connection unexpectedly")

        monkeypatch.setattr(run_publication, fails_in, fail_once)
        with pytest.raises(OperationalError):
            run_publication.publish(run=run, diffed=True)
    elif fails_in == "a write":
        # The update paired from the differences fails in the database.
        with failing_kpi_writes("could not extend file"), pytest.raises(DatabaseError):
            run_publication.publish(run=run, diffed=True)
    changed.refresh_from_db()
    assert changed.value != Decimal("12345")
    stats = run_publication.publish(run=run, diffed=True)
    changed.refresh_from_db()
    assert changed.value == Decimal("12345") and changed.run_id == run.pk
    assert stats == {"inserted": 0, "updated": 1, "deleted": 0, "changed_periods": 1}


@pytest.fixture
def chunked_program(settings, demo_program):
    """The demo program published by a run in 2 chunks (its state the next full run's cell base)."""
    settings.KPI_CHUNKS = 2
    assert t.recompute().status == "succeeded"


def staged_by_chunks(monkeypatch) -> list[tuple[int | None, int]]:
    """(cell base, rows staged) of every chunk computed from now on."""
    staged = []
    original = KpiComputation.run_chunk

    def run_chunk(self, number, chunk):
        rows = original(self, number, chunk)
        staged.append((self.cell_base, rows))
        return rows

    monkeypatch.setattr(KpiComputation, "run_chunk", run_chunk)
    return staged


def whole_run_publishes() -> tuple[set[tuple], set[tuple]]:
    """What one session computing everything from scratch publishes now (it replaces the set)."""
    KpiValue.objects.all().delete()
    with override_settings(KPI_CHUNKS=1):
        run = t.recompute()
    assert run.status == "succeeded", run.error
    return published(), reconciliation()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_chunked_full_run_stages_only_the_cells_that_changed_and_publishes_a_whole_runs_set(
    chunked_program, monkeypatch
):
    total = KpiValue.objects.count()
    staged = staged_by_chunks(monkeypatch)

    unchanged = t.recompute()
    assert unchanged.status == "succeeded" and unchanged.rows_written == unchanged.rows_deleted == 0
    assert [base for base, _ in staged] == [unchanged.pk - 1] * 2
    # Only the cells holding a target are staged again (their rows: a few percent of the set).
    target_cells = Target.objects.count()
    assert target_cells > 0 and 0 < sum(rows for _, rows in staged) < total / 10

    # Targets alone, in cells otherwise unchanged: one edited, one dropped (the only target of its
    # cell), one new.
    cell = ("partner", "join_source", "grain", "period")
    alone = Target.objects.values(*cell).annotate(n=Count("pk")).filter(n=1).order_by(*cell)[0]
    dropped = Target.objects.get(**{field: alone[field] for field in cell})
    target = Target.objects.exclude(pk=dropped.pk).order_by("pk").first()
    Target.objects.filter(pk=target.pk).update(value=F("value") + 3)
    dropped.delete()
    # The new one in the month of the largest value of its metric that no target of it is for
    # (its progress reads the cell's components).
    targeted = set(Target.objects.filter(metric=target.metric).values_list("period", flat=True))
    month, start = next(
        (label, start)
        for label, start in KpiValue.objects.filter(
            scope="program", grain="month", metric=target.metric, value__gt=0
        )
        .order_by("-value", "period")
        .values_list("period", "period_start")
        if label not in targeted
    )
    Target.objects.create(metric=target.metric, grain="month", period=month, period_start=start, value=5)
    staged.clear()
    retargeted = t.recompute()
    assert retargeted.status == "succeeded" and retargeted.rows_written > 0
    assert [base for base, _ in staged] == [unchanged.pk] * 2
    assert (published(), reconciliation()) == whole_run_publishes()
    base = KpiRun.objects.latest("pk").pk  # the whole run's: its state describes the set now

    # Changes of every kind a cell shows: an amount, a partner moving to another join source (its
    # old source's cells lose it), a touch gone.
    staged.clear()
    won = Deal.objects.filter(status="won").order_by("pk")
    Deal.objects.filter(pk=won[0].pk).update(amount=F("amount") + 7)
    mover = Partner.objects.filter(sourced_deals__status="won").order_by("pk").first()
    other = JoinSource.objects.exclude(pk=mover.join_source_id).order_by("pk").first()
    Partner.objects.filter(pk=mover.pk).update(join_source=other)
    Touch.objects.filter(pk=Touch.objects.order_by("pk").values("pk")[:1]).delete()
    changed = t.recompute()
    assert changed.status == "succeeded", changed.error
    assert [chunk_base for chunk_base, _ in staged] == [base] * 2
    assert changed.rows_written > 0 and sum(rows for _, rows in staged) < total / 2
    chunked, chunked_items = published(), reconciliation()
    assert (chunked, chunked_items) == whole_run_publishes()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_chunked_full_run_compares_every_row_when_the_published_set_or_a_label_changed(
    chunked_program, monkeypatch
):
    expected = published()
    staged = staged_by_chunks(monkeypatch)

    # A published row written by hand: the set no longer is the state's, and the run repairs it.
    row = KpiValue.objects.filter(scope="partner").order_by("pk").first()
    KpiValue.objects.filter(pk=row.pk).update(value=row.value + 1)
    repaired = t.recompute()
    assert repaired.status == "succeeded" and repaired.rows_written == 1
    assert published() == expected
    assert [base for base, _ in staged] == [None, None]
    assert sum(rows for _, rows in staged) == len(expected)

    # A renamed partner key labels rows of cells whose components are all unchanged.
    staged.clear()
    partner_id = KpiValue.objects.filter(scope="partner").order_by("pk").values("partner_id")[:1]
    Partner.objects.filter(pk=partner_id).update(key=f"renamed-{uuid.uuid4().hex[:6]}")
    renamed = t.recompute()
    assert renamed.status == "succeeded" and renamed.rows_written > 0
    assert [base for base, _ in staged] == [None, None]
    assert published() == whole_run_publishes()[0]

    # A new partner is a new key (every row compared); its only deal gone in the next run leaves
    # cells that no component row lands in any more, on a comparable base: their rows must go.
    newcomer = t.partner("newcomer", JoinSource.objects.order_by("pk").first(), joined="2026-02-02")
    sale = t.deal("900", created="2026-03-02", closed="2026-03-20", sourced_by=newcomer)
    staged.clear()
    arrived = t.recompute()
    assert arrived.status == "succeeded" and [base for base, _ in staged] == [None, None]
    newcomer_rows = KpiValue.objects.filter(scope="partner", partner_id=newcomer.pk)
    assert newcomer_rows.filter(grain="month", period="2026-03", metric="sourced_revenue").exists()
    staged.clear()
    sale.delete()
    left = t.recompute()
    assert left.status == "succeeded" and [base for base, _ in staged] == [arrived.pk] * 2
    assert not newcomer_rows.filter(period="2026-03").exists()
    assert published() == whole_run_publishes()[0]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_key_renamed_while_a_chunked_run_computes_labels_with_the_runs_key_until_the_next_run(
    chunked_program, monkeypatch
):
    from kpis import run_chunks

    partner_id = KpiValue.objects.filter(scope="partner").order_by("pk").values("partner_id")[:1]
    partner = Partner.objects.get(pk=partner_id)
    rows = KpiValue.objects.filter(scope="partner", partner=partner)
    count, key = rows.count(), partner.key
    original = run_chunks.plan_chunks

    def plan_after_a_rename(weights, count):
        # After the facts step read the keys, before the chunks label rows.
        Partner.objects.filter(pk=partner.pk).update(key="renamed-meanwhile")
        return original(weights, count)

    monkeypatch.setattr(run_chunks, "plan_chunks", plan_after_a_rename)
    assert t.recompute().status == "succeeded"
    monkeypatch.setattr(run_chunks, "plan_chunks", original)
    # Every row keeps the key of the run's snapshot, which its state records...
    assert rows.count() == count and set(rows.values_list("scope_key", flat=True)) == {key}
    # ...so the next run sees the rename and relabels them all, and after a rename back the one
    # after it does too (its facts' key equals its base's, and so do the rows').
    staged = staged_by_chunks(monkeypatch)
    assert t.recompute().status == "succeeded"
    assert [base for base, _ in staged] == [None, None]
    assert set(rows.values_list("scope_key", flat=True)) == {"renamed-meanwhile"}
    Partner.objects.filter(pk=partner.pk).update(key=key)
    assert t.recompute().status == "succeeded"
    assert set(rows.values_list("scope_key", flat=True)) == {key}
    assert published() == whole_run_publishes()[0]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_key_renamed_inside_a_chunk_never_splits_its_scopes_labels(chunked_program, monkeypatch):
    deal = Deal.objects.filter(status="won", sourcing_partner__isnull=False).order_by("pk").first()
    partner = deal.sourcing_partner
    Deal.objects.filter(pk=deal.pk).update(amount=F("amount") + 7)  # some of its cells change
    original = KpiComputation.run_chunk

    def run_chunk(self, number, chunk):
        def rename(sql: str) -> None:
            in_another_session(lambda: Partner.objects.filter(pk=partner.pk).update(key="renamed-in-chunk"))

        if self.cell_base is None or partner.join_source_id not in (chunk.join_sources or ()):
            return original(self, number, chunk)
        # Between comparing the cells and labelling the changed ones (the metrics' values).
        with on_statement(r"^CREATE TEMP TABLE kx_metric ", rename):
            return original(self, number, chunk)

    monkeypatch.setattr(KpiComputation, "run_chunk", run_chunk)
    run = t.recompute()
    assert run.status == "succeeded", run.error
    labels = set(
        KpiValue.objects.filter(scope="partner", partner=partner).values_list("scope_key", flat=True)
    )
    assert labels == {partner.key}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_row_written_while_a_chunked_run_computes_is_repaired_by_the_next_full_run(
    chunked_program, monkeypatch
):
    original = KpiComputation.run_chunk
    written = []

    def run_chunk(self, number, chunk):
        rows = original(self, number, chunk)
        if not written and chunk.program:
            # After this chunk compared its scopes' rows, before the run publishes.
            row = KpiValue.objects.filter(scope="program", metric="won_revenue", value__gt=0).order_by("pk")[
                0
            ]
            in_another_session(lambda: KpiValue.objects.filter(pk=row.pk).update(value=row.value + 5))
            written.append(row.pk)
        return rows

    monkeypatch.setattr(KpiComputation, "run_chunk", run_chunk)
    # With a cell base the publication finds the set written and compares every row at once.
    staged = staged_by_chunks(monkeypatch)
    assert t.recompute().status == "succeeded"
    assert [base for base, _ in staged][:2] != [None, None] and len(staged) == 4
    assert published() == whole_run_publishes()[0]

    # Without a cell base (a row written by hand before the run), the run publishes as it always
    # did, but its state is not tied to the set it published: the next run compares every row.
    written.clear()
    first = KpiValue.objects.filter(scope="partner").order_by("pk")[0]
    KpiValue.objects.filter(pk=first.pk).update(value=first.value + 1)
    staged.clear()
    untied = t.recompute()
    assert untied.status == "succeeded" and [base for base, _ in staged] == [None, None]
    monkeypatch.setattr(KpiComputation, "run_chunk", original)
    staged = staged_by_chunks(monkeypatch)
    repairing = t.recompute()
    assert repairing.status == "succeeded" and [base for base, _ in staged] == [None, None]
    assert published() == whole_run_publishes()[0]
