"""The import's bulk paths: cells screened on PostgreSQL (interchange.screen) read exactly as the
parser reads them, bad ones refused with its messages; large writes (interchange.staging.bulk_write)
leave the tables as they found them and the next KPI run right."""

import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from deals.models import Deal, Touch
from deals.rules import CLOSED_BEFORE_CREATED, CLOSED_STATUS_WITHOUT_CLOSED_AT, OPEN_WITH_CLOSED_AT
from interchange import staging
from interchange.importer import ImportFailed, import_program
from kpis.engine.incremental import delta_facts
from kpis.models import FactChange
from program.models import ProgramSettings
from program.validation import latest_date
from tests.support import kpis as t
from tests.test_import_program import VALID, _dump
from tests.test_kpi_incremental import full_recompute_set, incremental
from tests.test_kpi_runs import published

pytestmark = pytest.mark.django_db

DEALS_HEADER = "key,account,name,amount,created_at,closed_at,status,sourcing_partner\n"


def _folder(tmp_path: Path, deals: str = "", touches: str = "") -> Path:
    """The valid folder with deals.csv (and touches.csv, when given) replaced."""
    folder = tmp_path / "program"
    shutil.copytree(VALID, folder)
    if deals:
        (folder / "deals.csv").write_text(DEALS_HEADER + deals, encoding="utf-8")
        # They name the valid folder's deals.
        (folder / "registrations.csv").unlink()
        (folder / "touches.csv").unlink()
    if touches:
        (folder / "touches.csv").write_text("deal,partner,kind,touched_at\n" + touches, encoding="utf-8")
    return folder


def test_cells_the_screen_passes_and_cells_only_the_parser_reads_are_stored_alike(tmp_path):
    tz = ZoneInfo(ProgramSettings.load().time_zone)
    deals = (
        "d-plain,a-acme,Plain,1250.50,2026-03-01T10:00:00+00:00,2026-03-05T12:30:00+02:00,won,\n"
        "d-zeros,a-acme,Zeros,007.1,2026-03-01 10:00Z,,open,\n"
        "d-fraction,a-acme,,12,2026-03-03T10:00:00.25-01:30,,open,\n"
        # Only the parser reads these: a bare date, an offset without colon, a sign, a leap day.
        "d-date,a-globex,Bare date,+12.5,2026-03-02,,open,\n"
        "d-offset,a-globex,Offset,99.99,2026-03-04T10:00:00+0530,,open,\n"
        "d-leap,a-initech,Leap day,1,2024-02-29T08:00:00Z,2024-03-01T00:00:00Z,lost,\n"
    )
    import_program(_folder(tmp_path, deals=deals))
    stored = {d.key: (d.amount, d.created_at, d.closed_at, d.name) for d in Deal.objects.all()}
    assert stored == {
        "d-plain": (
            Decimal("1250.50"),
            datetime(2026, 3, 1, 10, tzinfo=UTC),
            datetime(2026, 3, 5, 10, 30, tzinfo=UTC),
            "Plain",
        ),
        "d-zeros": (Decimal("7.10"), datetime(2026, 3, 1, 10, tzinfo=UTC), None, "Zeros"),
        "d-fraction": (Decimal("12.00"), datetime(2026, 3, 3, 11, 30, 0, 250000, tzinfo=UTC), None, ""),
        "d-date": (Decimal("12.50"), datetime(2026, 3, 2, tzinfo=tz), None, "Bare date"),
        "d-offset": (Decimal("99.99"), datetime(2026, 3, 4, 4, 30, tzinfo=UTC), None, "Offset"),
        "d-leap": (
            Decimal("1.00"),
            datetime(2024, 2, 29, 8, tzinfo=UTC),
            datetime(2024, 3, 1, tzinfo=UTC),
            "Leap day",
        ),
    }


def test_bad_cells_at_the_edges_of_the_screen_are_refused_with_the_parsers_messages(tmp_path):
    last = latest_date()
    after_last = (last + timedelta(days=1)).isoformat()
    created = "2026-03-01T09:00:00+00:00"
    rows = [
        (f"d-1,a-acme,,0.00,{created},,open,", "amount: must be greater than 0"),
        (f"d-2,a-acme,,10000000000.00,{created},,open,", "amount: '10000000000.00' is too large"),
        (f"d-3,a-acme,,1.005,{created},,open,", "amount: '1.005' has more than 2 decimal places"),
        (
            "d-4,a-acme,,5,1999-12-31T23:59:59+00:00,,open,",
            f"created_at: 1999-12-31 is outside the accepted range 2000-01-01 to {last.isoformat()}",
        ),
        (
            f"d-5,a-acme,,5,{after_last}T00:00:00+00:00,,open,",
            f"created_at: {after_last} is outside the accepted range 2000-01-01 to {last.isoformat()}",
        ),
        (
            "d-6,a-acme,,5,2026-02-30T10:00:00+00:00,,open,",
            "created_at: '2026-02-30T10:00:00+00:00' is not a valid datetime",
        ),
        (
            "d-7,a-acme,,5,2025-02-29T10:00:00+00:00,,open,",
            "created_at: '2025-02-29T10:00:00+00:00' is not a valid datetime",
        ),
        (
            "d-8,a-acme,,5,2026-03-01T24:00:00+00:00,,open,",
            "created_at: '2026-03-01T24:00:00+00:00' is not a valid datetime",
        ),
        # Later as written, earlier as an instant: the rule compares instants.
        (f"d-9,a-acme,,5,{created},2026-03-01T10:00:00+02:00,won,", f"closed_at: {CLOSED_BEFORE_CREATED}"),
        (
            f"d-10,a-acme,,5,{created},,won,",
            f"closed_at: {CLOSED_STATUS_WITHOUT_CLOSED_AT.format(status='won')}",
        ),
        (f"d-11,a-acme,,5,{created},2026-03-02T10:00:00+00:00,open,", f"closed_at: {OPEN_WITH_CLOSED_AT}"),
        (f"d-12,a-acme,{'n' * 201},5,{created},,open,", "name: is longer than 200 characters"),
        (f"d-13,a-acme,,5,{created},,Open,", "status: 'Open' is not one of: open, won, lost"),
        (f",a-acme,,5,{created},,open,", "key: is required"),
    ]
    deals = "".join(row + "\n" for row, _ in rows) + f"d-ok,a-acme,,5,{created},,open,\n"
    with pytest.raises(ImportFailed) as failed:
        import_program(_folder(tmp_path, deals=deals))
    assert failed.value.errors == [f"deals.csv:{line}: {error}" for line, (_, error) in enumerate(rows, 2)]
    assert not Deal.objects.exists()


# --- PostgreSQL: large writes ------------------------------------------------------------------
def _table_shape() -> dict[str, list]:
    """Indexes, constraints and enabled triggers of the tables an import writes."""
    shape = {}
    with connection.cursor() as cursor:
        for table in (
            "deals_deal",
            "deals_touch",
            "deals_account",
            "deals_dealregistration",
            "events_change",
        ):
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s ORDER BY indexdef", [table])
            shape[f"{table} indexes"] = [row[0] for row in cursor.fetchall()]
            cursor.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
                "ORDER BY conname",
                [table],
            )
            shape[f"{table} constraints"] = cursor.fetchall()
            cursor.execute(
                "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal "
                "ORDER BY tgname",
                [table],
            )
            shape[f"{table} triggers"] = cursor.fetchall()
    return shape


@pytest.mark.postgres
def test_a_bulk_write_puts_back_every_index_constraint_and_trigger_and_keeps_rows_unique(
    monkeypatch, tmp_path
):
    monkeypatch.setattr(staging, "BULK_ROWS", 1)
    shape = _table_shape()
    assert len(shape["deals_touch indexes"]) == 8 and shape["deals_touch triggers"]
    import_program(VALID)
    assert _table_shape() == shape
    first = _dump()
    # Again, with a touch repeated in the file and another already stored: one touch each.
    touches = (VALID / "touches.csv").read_text(encoding="utf-8").splitlines()[1:]
    extra = "d-1,p-north,co_sell,2025-03-01T10:00:00+00:00\n"
    result = import_program(
        _folder(tmp_path, touches="\n".join([*touches, touches[0]]) + "\n" + extra + extra)
    )
    assert _table_shape() == shape
    assert result.files["touches.csv"].counts() == {
        "rows": len(touches) + 3,
        "created": 1,
        "updated": 0,
        "unchanged": len(touches) + 2,
    }
    assert list(Touch.objects.order_by("id").values())[:-1] == first["Touch"]
    assert Touch.objects.order_by("id").last().deal.key == "d-1"


@pytest.mark.postgres
def test_a_write_too_large_to_patch_logs_one_row_and_the_next_run_builds_its_facts_in_full(
    monkeypatch, tmp_path
):
    import_program(VALID)
    assert t.recompute().status == "succeeded"
    assert not FactChange.objects.exists()
    monkeypatch.setattr(staging, "BULK_ROWS", 1)
    monkeypatch.setattr(delta_facts, "DELTA_MIN_ROWS", 0)
    monkeypatch.setattr(delta_facts, "DELTA_MAX_SHARE", 0)
    target = tmp_path / "program"
    shutil.copytree(VALID, target)
    deals = (VALID / "deals.csv").read_text(encoding="utf-8").replace("12500.00", "13500.00")
    (target / "deals.csv").write_text(deals, encoding="utf-8")
    import_program(target)
    # One row for the deals written (the one changed), none for the unchanged touches.
    assert list(FactChange.objects.values_list("source", "row_id", "related_id")) == [("truncate", 0, None)]
    monkeypatch.undo()
    run = incremental()
    assert run.changed_rows is None  # built in full, as the log said
    assert t.value("sourced_revenue", "2025-03", scope="partner", key="p-north") == Decimal("13500.00")
    after = published()
    assert full_recompute_set() == after


@pytest.mark.postgres
def test_a_bulk_write_the_next_run_can_patch_keeps_logging_each_row(monkeypatch, tmp_path):
    import_program(VALID)
    assert t.recompute().status == "succeeded"
    monkeypatch.setattr(staging, "BULK_ROWS", 1)
    deals = (VALID / "deals.csv").read_text(encoding="utf-8").replace("12500.00", "13500.00")
    folder = tmp_path / "program"
    shutil.copytree(VALID, folder)
    (folder / "deals.csv").write_text(deals, encoding="utf-8")
    import_program(folder)
    d1 = Deal.objects.get(key="d-1")
    assert list(FactChange.objects.values_list("source", "row_id", "related_id")) == [("deal", d1.pk, None)]
    monkeypatch.undo()
    run = incremental()
    assert run.changed_rows == 1
    assert t.value("sourced_revenue", "2025-03", scope="partner", key="p-north") == Decimal("13500.00")
    after = published()
    assert full_recompute_set() == after
