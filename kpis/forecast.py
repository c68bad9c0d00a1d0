"""Pipeline forecast: next quarter's sourced and influenced revenue from the deals open now, with
a backtest over the last four closed quarters. The method is docs/kpis.md, "Forecast".

In short: a deal open at the start of a quarter is classed by its segment then (sourced: it has a
sourcing partner; influenced: no sourcing partner and a touch dated before that moment) and its
age bucket (days since it was created, in the program's time zone). The win rate of a class is
the share of the deals of that class open at the start of each of the four quarters before, that
were won during that quarter (counts pooled over the four quarters). The forecast of a scope is
the sum over its open deals of amount × the rate of the deal's class. Counting and summing is done
in the database (one grouped query per snapshot); only the few class sums are multiplied by their
rates here, in exact decimals.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection
from django.utils import timezone

from deals.models import Deal, Touch
from kpis.metrics import Grain
from kpis.periods import Period, period_of
from partners.models import JoinSource, Partner
from program.models import ProgramSettings, program_today

# Age buckets: the upper bound (days, included) of each; the last is open-ended.
AGE_BUCKETS: tuple[tuple[int, str], ...] = ((30, "0–30 days"), (90, "31–90 days"), (180, "91–180 days"))
LAST_BUCKET_LABEL = "over 180 days"
SEGMENTS = {"s": "sourced", "i": "influenced"}
HISTORY_QUARTERS = 4
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Rate:
    segment: str
    bucket: int
    won: int
    open: int

    @property
    def bucket_label(self) -> str:
        return AGE_BUCKETS[self.bucket][1] if self.bucket < len(AGE_BUCKETS) else LAST_BUCKET_LABEL

    @property
    def value(self) -> Decimal | None:
        return Decimal(self.won) / Decimal(self.open) if self.open else None


@dataclass
class ScopeForecast:
    scope: str  # program, join_source, partner
    scope_id: int
    name: str
    sourced: Decimal = Decimal("0.00")
    influenced: Decimal = Decimal("0.00")
    # Over the backtest quarters: the forecasts and actual revenue summed.
    backtest_sourced: Decimal = Decimal("0.00")
    backtest_influenced: Decimal = Decimal("0.00")
    actual_sourced: Decimal = Decimal("0.00")
    actual_influenced: Decimal = Decimal("0.00")

    @property
    def error_sourced(self) -> Decimal | None:
        return error_percent(self.backtest_sourced, self.actual_sourced)

    @property
    def error_influenced(self) -> Decimal | None:
        return error_percent(self.backtest_influenced, self.actual_influenced)


@dataclass(frozen=True)
class BacktestQuarter:
    quarter: str
    forecast_sourced: Decimal
    forecast_influenced: Decimal
    actual_sourced: Decimal
    actual_influenced: Decimal

    @property
    def error_sourced(self) -> Decimal | None:
        return error_percent(self.forecast_sourced, self.actual_sourced)

    @property
    def error_influenced(self) -> Decimal | None:
        return error_percent(self.forecast_influenced, self.actual_influenced)


@dataclass
class Forecast:
    quarter: str
    as_of: date
    rates: list[Rate]
    program: ScopeForecast
    join_sources: list[ScopeForecast]
    partners: list[ScopeForecast]
    backtest: list[BacktestQuarter] = field(default_factory=list)


def error_percent(forecast: Decimal, actual: Decimal) -> Decimal | None:
    """(forecast − actual) / actual in percent, one place; undefined when nothing was won."""
    if not actual:
        return None
    return ((forecast - actual) / actual * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def _moment(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone)


def _bucket_sql(zone: ZoneInfo, age_on: date) -> tuple[str, list[Any]]:
    """CASE of a deal's age bucket on the local date `age_on` (age = local days since created)."""
    whens = " ".join(f"WHEN d.created_at >= %s THEN {i}" for i in range(len(AGE_BUCKETS)))
    params = [_moment(age_on - timedelta(days=upper), zone) for upper, _ in AGE_BUCKETS]
    return f"CASE {whens} ELSE {len(AGE_BUCKETS)} END", params


def _open_at(moment: datetime) -> tuple[str, list[Any]]:
    return "d.created_at < %s AND (d.closed_at IS NULL OR d.closed_at >= %s)", [moment, moment]


def _segment_before(moment: datetime) -> tuple[str, list[Any]]:
    touch = Touch._meta.db_table
    return (
        f"""CASE WHEN d.sourcing_partner_id IS NOT NULL THEN 's'
             WHEN EXISTS (SELECT 1 FROM {touch} t WHERE t.deal_id = d.id AND t.touched_at < %s) THEN 'i'
             ELSE 'd' END""",
        [moment],
    )


def history_rates(quarters: list[Period], zone: ZoneInfo) -> list[Rate]:
    """Win rates by segment and age bucket over the quarters: of the deals open at each quarter's
    start (classed then), the share won during that quarter. One query."""
    parts, params = [], []
    for q in quarters:
        start, end = _moment(q.start, zone), _moment(q.end + timedelta(days=1), zone)
        seg, seg_params = _segment_before(start)
        bucket, bucket_params = _bucket_sql(zone, q.start)
        where, where_params = _open_at(start)
        parts.append(
            f"""SELECT {seg} AS seg, {bucket} AS bucket,
                CASE WHEN d.status = 'won' AND d.closed_at >= %s AND d.closed_at < %s THEN 1 ELSE 0 END AS won
            FROM {Deal._meta.db_table} d WHERE {where}"""
        )
        params += [*seg_params, *bucket_params, start, end, *where_params]
    if not parts:
        return []
    union = " UNION ALL ".join(parts)
    sql = f"SELECT seg, bucket, COUNT(*), SUM(won) FROM ({union}) x WHERE seg <> 'd' GROUP BY seg, bucket"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return sorted(
        (Rate(SEGMENTS[seg], int(bucket), int(won or 0), int(n)) for seg, bucket, n, won in rows),
        key=lambda r: (r.segment != "sourced", r.bucket),
    )


def _scope_sums(
    *, moment: datetime, age_on: date, zone: ZoneInfo, won_in: tuple[datetime, datetime] | None
) -> list[tuple[str, int, str, int, int]]:
    """(scope, id, segment, bucket, cents) of the deals open at `moment`: their segment and age
    then. With `won_in`, only the deals won in that span, classed as the KPIs class them at their
    close (a touch on or before the close), for the backtest's actual revenue. One query."""
    bucket, bucket_params = _bucket_sql(zone, age_on)
    where, where_params = _open_at(moment)
    touch, partner = Touch._meta.db_table, Partner._meta.db_table
    if won_in is None:
        seg, seg_params = _segment_before(moment)
        counts, count_params = "t.touched_at < %s", [moment]
    else:
        seg = f"""CASE WHEN d.sourcing_partner_id IS NOT NULL THEN 's'
             WHEN EXISTS (SELECT 1 FROM {touch} t WHERE t.deal_id = d.id AND t.touched_at <= d.closed_at)
             THEN 'i' ELSE 'd' END"""
        seg_params, count_params = [], []
        counts = "t.touched_at <= od.closed_at"
        where += " AND d.status = 'won' AND d.closed_at >= %s AND d.closed_at < %s"
        where_params += list(won_in)
    od = f"""SELECT d.id, d.sourcing_partner_id AS sp, d.closed_at,
                    CAST(ROUND(d.amount * 100) AS BIGINT) AS cents,
                    {seg} AS seg, {bucket} AS bucket
             FROM {Deal._meta.db_table} d WHERE {where}"""
    od_params = [*seg_params, *bucket_params, *where_params]
    sql = f"""WITH od AS ({od})
        SELECT 'program', 0, seg, bucket, SUM(cents) FROM od WHERE seg <> 'd' GROUP BY seg, bucket
        UNION ALL
        SELECT 'partner', sp, 's', bucket, SUM(cents) FROM od WHERE seg = 's' GROUP BY sp, bucket
        UNION ALL
        SELECT 'join_source', p.join_source_id, 's', bucket, SUM(cents)
        FROM od JOIN {partner} p ON p.id = od.sp WHERE seg = 's' GROUP BY p.join_source_id, bucket
        UNION ALL
        SELECT 'partner', tp.partner_id, 'i', bucket, SUM(cents)
        FROM od JOIN (SELECT DISTINCT od.id AS deal_id, t.partner_id
                      FROM od JOIN {touch} t ON t.deal_id = od.id
                      WHERE od.seg = 'i' AND {counts}) tp ON tp.deal_id = od.id
        GROUP BY tp.partner_id, bucket
        UNION ALL
        SELECT 'join_source', tj.js, 'i', bucket, SUM(cents)
        FROM od JOIN (SELECT DISTINCT od.id AS deal_id, p.join_source_id AS js
                      FROM od JOIN {touch} t ON t.deal_id = od.id JOIN {partner} p ON p.id = t.partner_id
                      WHERE od.seg = 'i' AND {counts}) tj ON tj.deal_id = od.id
        GROUP BY tj.js, bucket"""
    with connection.cursor() as cursor:
        cursor.execute(sql, [*od_params, *count_params, *count_params])
        return [(s, int(i), seg_, int(b), int(c)) for s, i, seg_, b, c in cursor.fetchall()]


def _rate_lookup(rates: list[Rate]) -> dict[tuple[str, int], Decimal]:
    """Rate per (segment letter, bucket); a class without history takes its segment's pooled
    rate, and a segment without history 0."""
    by_class = {(r.segment[0], r.bucket): r for r in rates}
    pooled: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rates:
        pooled[r.segment[0]][0] += r.won
        pooled[r.segment[0]][1] += r.open
    lookup = {}
    for seg in SEGMENTS:
        won, n = pooled[seg]
        fallback = Decimal(won) / Decimal(n) if n else Decimal(0)
        for b in range(len(AGE_BUCKETS) + 1):
            found = by_class.get((seg, b))
            lookup[(seg, b)] = Decimal(found.won) / Decimal(found.open) if found and found.open else fallback
    return lookup


def _apply(
    sums: list[tuple[str, int, str, int, int]], rates: dict[tuple[str, int], Decimal] | None
) -> dict[tuple[str, int], dict[str, Decimal]]:
    """Per scope: sourced and influenced money (× the class rate when `rates`, else as is)."""
    out: dict[tuple[str, int], dict[str, Decimal]] = defaultdict(lambda: {"s": Decimal(0), "i": Decimal(0)})
    for scope, sid, seg, bucket, cents in sums:
        if scope != "program" and sid is None:
            continue
        weight = rates[(seg, bucket)] if rates is not None else Decimal(1)
        out[(scope, sid)][seg] += Decimal(cents) * weight
    return {
        k: {seg: (v / 100).quantize(CENT, rounding=ROUND_HALF_UP) for seg, v in money.items()}
        for k, money in out.items()
    }


def pipeline_forecast(*, as_of: date | None = None, now: datetime | None = None) -> Forecast:
    """Next quarter's forecast from the deals open at `now`, and the backtest of the last four
    closed quarters, for the program, each join source and each partner with a forecast or history.
    A fixed number of queries (3 per backtest quarter, 2 for the forecast, 2 for names)."""
    program = ProgramSettings.load()
    zone = ZoneInfo(program.time_zone)
    as_of = as_of or program_today()
    now = now or timezone.now()
    current = period_of(as_of, Grain.QUARTER)
    target = current.shifted(1)
    closed = [current.shifted(-k) for k in range(HISTORY_QUARTERS, 0, -1)]
    rates = history_rates(closed, zone)
    live = _apply(_scope_sums(moment=now, age_on=target.start, zone=zone, won_in=None), _rate_lookup(rates))
    scopes: dict[tuple[str, int], ScopeForecast] = {}

    def row(key: tuple[str, int]) -> ScopeForecast:
        if key not in scopes:
            scopes[key] = ScopeForecast(scope=key[0], scope_id=key[1], name="")
        return scopes[key]

    for key, money in live.items():
        row(key).sourced, row(key).influenced = money["s"], money["i"]
    backtest = []
    for quarter in closed:
        start = _moment(quarter.start, zone)
        end = _moment(quarter.end + timedelta(days=1), zone)
        lookup = _rate_lookup(
            history_rates([quarter.shifted(-k) for k in range(HISTORY_QUARTERS, 0, -1)], zone)
        )
        predicted = _apply(_scope_sums(moment=start, age_on=quarter.start, zone=zone, won_in=None), lookup)
        actual = _apply(_scope_sums(moment=start, age_on=quarter.start, zone=zone, won_in=(start, end)), None)
        for key, money in predicted.items():
            row(key).backtest_sourced += money["s"]
            row(key).backtest_influenced += money["i"]
        for key, money in actual.items():
            row(key).actual_sourced += money["s"]
            row(key).actual_influenced += money["i"]
        zero = {"s": Decimal("0.00"), "i": Decimal("0.00")}
        p, a = predicted.get(("program", 0), zero), actual.get(("program", 0), zero)
        backtest.append(BacktestQuarter(quarter.label, p["s"], p["i"], a["s"], a["i"]))
    _name(scopes)
    ordered = sorted(scopes.values(), key=lambda r: (-(r.sourced + r.influenced), r.name, r.scope_id))
    return Forecast(
        quarter=target.label,
        as_of=as_of,
        rates=rates,
        program=scopes.get(("program", 0)) or ScopeForecast("program", 0, "Program"),
        join_sources=[r for r in ordered if r.scope == "join_source"],
        partners=[r for r in ordered if r.scope == "partner"],
        backtest=backtest,
    )


def _name(scopes: dict[tuple[str, int], ScopeForecast]) -> None:
    partners = [sid for scope, sid in scopes if scope == "partner"]
    sources = [sid for scope, sid in scopes if scope == "join_source"]
    names = {
        ("partner", pk): n for pk, n in Partner.objects.filter(pk__in=partners).values_list("pk", "name")
    }
    names |= {
        ("join_source", pk): n
        for pk, n in JoinSource.objects.filter(pk__in=sources).values_list("pk", "name")
    }
    for key, forecast in scopes.items():
        forecast.name = "Program" if key[0] == "program" else names.get(key, str(key[1]))
