"""Small builders for KPI tests and benchmarks: rows written straight through the ORM."""

from datetime import date, datetime
from decimal import Decimal
from itertools import count
from zoneinfo import ZoneInfo

from deals.models import Account, Deal, DealRegistration, Touch
from kpis.models import KpiValue
from partners.models import JoinSource, Partner
from program.models import ProgramSettings

_seq = count(1)
UTC = ZoneInfo("UTC")


def at(text: str, tz: str = "UTC") -> datetime:
    """`2026-03-31 17:05` in the given zone -> aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz))


def program(**fields) -> ProgramSettings:
    settings = ProgramSettings.load()
    for name, value in fields.items():
        setattr(settings, name, value)
    settings.save()
    return settings


def join_source(key: str, kind: str = "website") -> JoinSource:
    return JoinSource.objects.create(key=key, name=key.title(), kind=kind)


def partner(
    key: str, source: JoinSource, *, joined: str | None = "2026-01-01", applied: str | None = None
) -> Partner:
    joined_at = date.fromisoformat(joined) if joined else None
    applied_at = date.fromisoformat(applied) if applied else (joined_at or date(2026, 1, 1))
    return Partner.objects.create(
        key=key,
        name=key.title(),
        type="reseller",
        join_source=source,
        applied_at=applied_at,
        joined_at=joined_at,
        status="active" if joined_at else "applied",
    )


def account(key: str | None = None) -> Account:
    key = key or f"acct-{next(_seq)}"
    return Account.objects.create(key=key, name=key, domain=f"{key}.example")


def deal(
    amount: str,
    *,
    created: str,
    closed: str | None = None,
    status: str | None = None,
    sourced_by: Partner | None = None,
    acct: Account | None = None,
    key: str | None = None,
    tz: str = "UTC",
) -> Deal:
    return Deal.objects.create(
        key=key or f"deal-{next(_seq):05d}",
        account=acct or account(),
        amount=Decimal(amount),
        created_at=at(created, tz),
        closed_at=at(closed, tz) if closed else None,
        status=status or ("won" if closed else "open"),
        sourcing_partner=sourced_by,
    )


def touch(d: Deal, p: Partner, when: str, kind: str = "co_sell", tz: str = "UTC") -> Touch:
    return Touch.objects.create(deal=d, partner=p, kind=kind, touched_at=at(when, tz))


def registration(
    p: Partner,
    *,
    submitted: str,
    status: str = "submitted",
    decided: str | None = None,
    acct: Account | None = None,
) -> DealRegistration:
    return DealRegistration.objects.create(
        partner=p,
        account=acct or account(),
        amount=Decimal("1000"),
        status=status,
        submitted_at=at(submitted),
        decided_at=at(decided) if decided else None,
    )


def values(
    *, grain: str = "month", scope: str = "program", scope_key: str = "", metric: str | None = None
) -> dict:
    """Published values as {(metric, period): Decimal|None} (or {period: value} for one metric)."""
    qs = KpiValue.objects.filter(grain=grain, scope=scope, scope_key=scope_key, target_metric="")
    if metric:
        return {v.period: v.value for v in qs.filter(metric=metric)}
    return {(v.metric, v.period): v.value for v in qs}


def recompute(as_of: str = "2026-12-31", mode: str = "full"):
    """Run a KPI recompute synchronously, in-process, and return the finished run."""
    from kpis.services import kpi_run_create, kpi_run_execute

    run, created = kpi_run_create(trigger="command", mode=mode, as_of=date.fromisoformat(as_of))
    assert created, f"run #{run.pk} was still {run.status}"
    return kpi_run_execute(run_id=run.pk)


def value(metric: str, period: str, *, scope: str = "program", key: str = "", grain: str | None = None):
    """One published value (None when the row is absent or undefined)."""
    if grain is None:
        grain = "year" if len(period) == 4 else "quarter" if "Q" in period else "month"
    row = KpiValue.objects.filter(
        grain=grain, scope=scope, scope_key=key, period=period, metric=metric, target_metric=""
    ).first()
    return None if row is None else row.value


def explorer_rows(model: str, period_from: date, period_to: date) -> list[dict]:
    """The attribution explorer's rows of the range (kpis.explorer.explorer_table, what the pages
    and the API read), by partner id, as kpis.services.attribution_by_partner gives them: partner
    id, key and name, sourced, influenced, and attributed under `model`."""
    from kpis.explorer import explorer_table

    table = explorer_table(period_from=period_from, period_to=period_to)
    return [r.attributed_under(model) for r in table.ordered("id", descending=False)]
