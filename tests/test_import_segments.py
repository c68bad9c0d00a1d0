"""Deal.segment after an import: the bulk path (PostgreSQL, staging.bulk_write: the segment triggers
off, the segments set by the import with their rule, interchange.segments) leaves every deal with the
segment the triggers give, on a first import, on deals a re-import updates and on deals it adds
touches to; so does the trigger path (small files, and SQLite)."""

import shutil
from pathlib import Path

import pytest
from django.db import connection, transaction

from deals.models import Deal
from interchange import segments, staging
from interchange.importer import ImportResult, import_program
from tests.test_deal_segment import engine_segments
from tests.test_import_program import VALID

pytestmark = pytest.mark.django_db

# The second import: d-1 loses its sourcing partner and gains a touch before its close (sourced ->
# influenced), d-2 gains a touch (direct -> influenced), d-3 closes before its touch (influenced ->
# direct), d-4 gets a sourcing partner (influenced -> sourced); d-5 is new with a touch after its
# close (direct), d-6 new and open with a touch (influenced).
DEALS = """key,account,name,amount,created_at,closed_at,status,sourcing_partner
d-1,a-acme,"Acme, platform",12500.00,2025-02-01T09:00:00+00:00,2025-03-15T16:00:00+00:00,won,
d-2,a-globex,Globex expansion,4800.5,2025-02-20T10:00:00+01:00,,open,
d-3,a-initech,Initech pilot,900,2025-03-01T00:00:00Z,2025-03-01T06:00:00Z,lost,
d-4,a-acme,Acme add-on,300.00,2025-04-01,2025-04-20T12:00:00+00:00,won,p-north
d-5,a-globex,Globex late touch,700.00,2025-05-01T09:00:00+00:00,2025-05-10T09:00:00+00:00,won,
d-6,a-initech,Initech open,800.00,2025-05-02T09:00:00+00:00,,open,
"""
NEW_TOUCHES = """d-1,p-blue,co_sell,2025-03-01T10:00:00+00:00
d-2,p-gamma,introduction,2025-03-01T10:00:00+00:00
d-5,p-blue,technical,2025-05-11T09:00:00+00:00
d-6,p-blue,introduction,2025-05-03T09:00:00+00:00
"""
FIRST = {"d-1": "sourced", "d-2": "direct", "d-3": "influenced", "d-4": "influenced"}
SECOND = {
    "d-1": "influenced",
    "d-2": "influenced",
    "d-3": "direct",
    "d-4": "sourced",
    "d-5": "direct",
    "d-6": "influenced",
}


def _second_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "second"
    shutil.copytree(VALID, folder)
    (folder / "deals.csv").write_text(DEALS, encoding="utf-8")
    with (folder / "touches.csv").open("a", encoding="utf-8") as stream:
        stream.write(NEW_TOUCHES)
    return folder


def _segments() -> dict[str, str]:
    """Each deal's stored segment by key, after checking it against the rule (recomputed from the
    rows) and the KPI engine's classification of the same deals."""
    by_key = dict(Deal.objects.values_list("key", "segment"))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, {segments.segment_of('deals_deal')} FROM deals_deal")
        assert dict(cursor.fetchall()) == by_key
    keys = dict(Deal.objects.values_list("id", "key"))
    assert {keys[pk]: segment for pk, segment in engine_segments().items()} == by_key
    return by_key


def _import_both(tmp_path: Path) -> tuple[dict[str, str], dict[str, str], ImportResult]:
    """Import the valid folder, then the second one; the segments after each, and the second result."""
    import_program(VALID)
    after_first = _segments()
    result = import_program(_second_folder(tmp_path))
    return after_first, _segments(), result


def test_every_deal_has_the_segment_of_the_rule_after_a_first_import_and_a_re_import(tmp_path):
    after_first, after_second, second = _import_both(tmp_path)
    assert after_first == FIRST
    assert after_second == SECOND
    assert second.files["deals.csv"].counts() == {"rows": 6, "created": 2, "updated": 3, "unchanged": 1}
    assert second.files["touches.csv"].counts() == {"rows": 9, "created": 4, "updated": 0, "unchanged": 5}


@pytest.mark.postgres
def test_a_bulk_import_sets_the_segments_the_triggers_would(monkeypatch, tmp_path):
    # The trigger path first (files far below BULK_ROWS), rolled back: what the triggers give.
    with transaction.atomic():
        by_triggers = _import_both(tmp_path / "triggers")[:2]
        transaction.set_rollback(True)
    assert by_triggers == (FIRST, SECOND)

    statements: list[str] = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    monkeypatch.setattr(staging, "BULK_ROWS", 1)
    with connection.execute_wrapper(record):
        by_import = _import_both(tmp_path / "bulk")[:2]
    assert by_import == by_triggers
    # The bulk path was taken: the segment triggers were off for the deals' and the touches' writes,
    # and are back on.
    for trigger in ("deals_deal_segment", "deals_touch_segment_ins"):
        assert f'DISABLE TRIGGER "{trigger}"' in " ".join(statements)
    with connection.cursor() as cursor:
        names = [name for triggers in segments.TRIGGERS.values() for name in triggers]
        cursor.execute("SELECT tgname FROM pg_trigger WHERE tgname = ANY(%s) AND tgenabled = 'D'", [names])
        assert cursor.fetchall() == []
