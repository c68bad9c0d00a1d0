"""Attribution computed on request (before any run published facts) builds the facts of only the
deals won on the dates asked for, in the program time zone, and gives the figures the whole
program's facts give (issue 22)."""

from datetime import date
from decimal import Decimal

import pytest

from kpis.computed_attribution import attribution_by_partner
from kpis.engine import EngineSettings, KpiComputation
from kpis.engine.session import engine_transaction
from program.attribution import AttributionModel
from program.models import ProgramSettings
from tests.support import kpis as t

pytestmark = pytest.mark.django_db

D = Decimal
MARCH = (date(2026, 3, 1), date(2026, 3, 31))


@pytest.fixture(params=["America/Los_Angeles", "Pacific/Kiritimati", "Pacific/Pago_Pago"])
def program(request):
    """Deals around March 2026 in a program time zone far from UTC (-8/-7, +14, -11), every time
    below local. Inside: won on the first and on the last minute of March, and mid-month; outside:
    a minute before and at the first minute of April, a lost deal of March, an open deal."""
    tz = request.param
    t.program(time_zone=tz, attribution_model="linear")
    source = t.join_source("web")
    a, b, c = (t.partner(key, source) for key in "abc")
    first = t.deal("50.00", created="2026-02-01 00:00", closed="2026-03-01 00:00", tz=tz)
    t.touch(first, a, "2026-02-20 10:00", tz=tz)
    t.touch(first, b, "2026-03-01 00:01", tz=tz)  # after the close: counts for nothing
    last = t.deal("70.00", created="2026-03-01 00:00", closed="2026-03-31 23:59", sourced_by=b, tz=tz)
    t.touch(last, a, "2026-03-30 00:00", tz=tz)  # a sourced deal: all to its sourcing partner
    mid = t.deal("100.00", created="2026-03-01 00:00", closed="2026-03-15 12:00", tz=tz)
    t.touch(mid, a, "2026-03-10 00:00", tz=tz)
    t.touch(mid, c, "2026-03-11 00:00", tz=tz)
    t.touch(mid, c, "2026-03-12 00:00", tz=tz)
    before = t.deal("40.00", created="2026-02-01 00:00", closed="2026-02-28 23:59", tz=tz)
    t.touch(before, a, "2026-02-10 00:00", tz=tz)
    after = t.deal("30.00", created="2026-03-01 00:00", closed="2026-04-01 00:00", sourced_by=a, tz=tz)
    lost = t.deal("20.00", created="2026-03-01 00:00", closed="2026-03-20 00:00", status="lost", tz=tz)
    t.touch(lost, c, "2026-03-05 00:00", tz=tz)
    opened = t.deal("10.00", created="2026-03-01 00:00", tz=tz)
    t.touch(opened, c, "2026-03-05 00:00", tz=tz)
    return {"first": first.pk, "last": last.pk, "mid": mid.pk, "before": before.pk, "after": after.pk}


def figures(rows):
    return {r["partner_key"]: (r["sourced"], r["influenced"], r["attributed"]) for r in rows}


def test_only_the_deals_won_on_the_dates_asked_for_count(program):
    rows = attribution_by_partner(model="linear", period_from=MARCH[0], period_to=MARCH[1])
    # a: influenced 50 (first) + 100 (mid), attributed 50 + 100/3; b: sources the last deal;
    # c: two of mid's three touches, 200/3 with the odd cent (the larger remainder).
    assert figures(rows) == {
        "a": (D("0.00"), D("150.00"), D("83.33")),
        "b": (D("70.00"), D("0.00"), D("70.00")),
        "c": (D("0.00"), D("100.00"), D("66.67")),
    }
    # One day each side of the range: only the edge deal of that day.
    assert figures(
        attribution_by_partner(model="linear", period_from=date(2026, 2, 28), period_to=date(2026, 2, 28))
    ) == {"a": (D("0.00"), D("40.00"), D("40.00"))}
    assert figures(
        attribution_by_partner(model="linear", period_from=date(2026, 4, 1), period_to=date(2026, 4, 1))
    ) == {"a": (D("30.00"), D("0.00"), D("30.00"))}


def computed(model: str, period_from: date, period_to: date, *, whole_program: bool):
    """The engine's totals, and the deals and touches its facts held (read before they are dropped)."""
    computation = KpiComputation(EngineSettings.from_program(ProgramSettings.load(), model=model), MARCH[1])
    with engine_transaction():
        computation.drop()
        rows = computation.attribution_totals(period_from, period_to, whole_program=whole_program)
        deals = {row[0] for row in computation.ctx.fetch("SELECT id FROM kx_deal")}
        touched = {row[0] for row in computation.ctx.fetch("SELECT DISTINCT deal_id FROM kx_touch_all")}
        computation.drop()
    return rows, deals, touched


@pytest.mark.parametrize("model", [m.value for m in AttributionModel])
@pytest.mark.parametrize(
    "period_from, period_to, won",
    [
        (*MARCH, {"first", "last", "mid"}),
        (date(2026, 3, 1), date(2026, 3, 1), {"first"}),
        (date(2026, 3, 31), date(2026, 4, 1), {"last", "after"}),
        (date(2026, 2, 1), date(2026, 4, 30), {"first", "last", "mid", "before", "after"}),
    ],
)
def test_the_bounded_facts_give_what_the_whole_programs_facts_give(
    program, model, period_from, period_to, won
):
    bounded, deals, touched = computed(model, period_from, period_to, whole_program=False)
    whole, every_deal, _ = computed(model, period_from, period_to, whole_program=True)
    assert bounded == whole and bounded != []
    assert deals == {program[name] for name in won} and len(every_deal) == 7
    assert touched <= deals


def show(setting: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {setting}")
        return str(cursor.fetchone()[0])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("published", [False, True])
@pytest.mark.parametrize("used_temp_tables", [False, True])
def test_attribution_on_request_takes_a_kpi_runs_session_settings(published, used_temp_tables):
    """Both paths (computed before any publication, and from the published facts) set a run's
    transaction settings for their transaction only, and temp_buffers for the session, which
    PostgreSQL accepts only before the session's first temporary table."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from kpis.computed_attribution import attribution_by_partner as computed
    from kpis.engine.session import TEMP_BUFFERS, TRANSACTION_SETTINGS

    source = t.join_source("web")
    a = t.partner("a", source)
    deal = t.deal("100.00", created="2026-03-01 00:00", closed="2026-03-15 12:00")
    t.touch(deal, a, "2026-03-02 00:00")
    if published:
        t.recompute()
    connection.close()  # a new session
    if used_temp_tables:
        with connection.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE kx_earlier AS SELECT 1 AS one")
            cursor.execute("DROP TABLE kx_earlier")
    buffers_before = show("temp_buffers")
    with CaptureQueriesContext(connection) as queries:
        if published:
            rows = t.explorer_rows("linear", *MARCH)
        else:
            rows = computed(model="linear", period_from=MARCH[0], period_to=MARCH[1])
    assert figures(rows) == {"a": (D("0.00"), D("100.00"), D("100.00"))}
    statements = [q["sql"] for q in queries.captured_queries]
    # The first statement on the engine's temporary tables: dropping any left over.
    first_engine = next(i for i, sql in enumerate(statements) if sql.startswith("DROP") and "kx_" in sql)
    settings_set = " ".join(sql for sql in statements[:first_engine] if "set_config" in sql)
    for name, value in TRANSACTION_SETTINGS.items():
        assert f"'{name}', '{value}', true" in settings_set
    assert f"'temp_buffers', '{TEMP_BUFFERS}', false" in settings_set
    # The transaction's settings ended with it; temp_buffers is the session's, when it could be set.
    assert show("work_mem") != TRANSACTION_SETTINGS["work_mem"]
    assert show("synchronous_commit") == "on"
    assert show("temp_buffers") == (buffers_before if used_temp_tables else TEMP_BUFFERS)
    assert buffers_before == "8MB"
