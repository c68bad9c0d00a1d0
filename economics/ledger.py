"""Building the commission ledger: what each partner should have earned, against what it has.

`build_ledger()` is idempotent and safe to run on two workers at once (docs/economics.md, "The
ledger build"). In outline, set-based in the database:

1. candidates (ec_cand): one row per active rule and matching source row (won deal, approved
   registration, first sale) and partner, with the amount the rule gives in cents;
2. winners (ec_win): per source row, partner and basis the rule of highest plan priority (ties:
   the oldest rule);
3. terms already decided (ec_frozen): a source row whose last earning was approved, paid or
   declined keeps that earning's rate, fixed amount and cap: plan changes never alter it, only
   the source row's current state (lost, amount lowered) does;
4. targets (ec_tgt) against the entries there are (ec_have): the pending entry each key should
   have (ec_diff). Only differing keys reach Python, which inserts (ON CONFLICT DO NOTHING on
   the unique key), adjusts or deletes *pending* entries; decided ones are never edited.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from deals.models import Deal, DealRegistration
from economics.models import CommissionEntry, CommissionPlan, CommissionRule, CommissionSettings
from kpis.shares import build_attributed_shares
from partners.models import Partner
from program.models import ProgramSettings

ENTRY = CommissionEntry._meta.db_table
RULE = CommissionRule._meta.db_table
DEAL = Deal._meta.db_table
REG = DealRegistration._meta.db_table
TABLES = ("ec_share", "ec_cand", "ec_win", "ec_have", "ec_frozen", "ec_tgt", "ec_diff")
CENTS = Decimal("0.01")


@dataclass
class LedgerResult:
    keys_changed: int = 0
    created: int = 0
    adjusted: int = 0
    removed: int = 0


@dataclass(frozen=True)
class Scope:
    """The source rows a build looks at: everything (None) or some deals and registrations."""

    deal_ids: tuple[int, ...] | None = None
    registration_ids: tuple[int, ...] | None = None

    @property
    def whole(self) -> bool:
        return self.deal_ids is None and self.registration_ids is None

    def deals(self, column: str) -> str:
        return _in(column, self.deal_ids, self.whole)

    def registrations(self, column: str) -> str:
        return _in(column, self.registration_ids, self.whole)


def _in(column: str, ids: tuple[int, ...] | None, whole: bool) -> str:
    if whole:
        return "1 = 1"
    if not ids:
        return "1 = 0"
    return f"{column} IN ({', '.join(str(int(i)) for i in ids)})"


def scope_for(*, deal_ids: Iterable[int] | None, registration_ids: Iterable[int] | None) -> Scope:
    """The scope of a triggered build: the deals given and every deal of their accounts (which of
    an account's deals is its first sale may change), the registrations given and their deals."""
    if deal_ids is None and registration_ids is None:
        return Scope()
    regs = tuple(sorted({int(i) for i in registration_ids or ()}))
    deals = {int(i) for i in deal_ids or ()}
    deals |= set(
        DealRegistration.objects.filter(pk__in=regs, deal__isnull=False).values_list("deal_id", flat=True)
    )
    accounts = Deal.objects.filter(pk__in=deals).values("account_id")
    deals |= set(Deal.objects.filter(account_id__in=accounts).values_list("pk", flat=True))
    return Scope(deal_ids=tuple(sorted(deals)), registration_ids=regs)


def build_ledger(
    *,
    deal_ids: Iterable[int] | None = None,
    registration_ids: Iterable[int] | None = None,
    now: datetime | None = None,
) -> LedgerResult:
    """Bring the ledger's pending entries in line with the plans and the source rows: all of them,
    or those of some deals and registrations (`scope_for`). Never edits a decided entry."""
    scope = scope_for(deal_ids=deal_ids, registration_ids=registration_ids)
    now = now or timezone.now()
    with transaction.atomic():
        _drop()
        try:
            build_attributed_shares("ec_share", deal_ids=scope.deal_ids)
            _candidates(scope)
            _targets(scope)
            changed = _diff()
            return _apply(changed, now=now)
        finally:
            _drop()


def _exec(sql: str, params: Sequence[Any] = ()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _fetch(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def _analyze(*tables: str) -> None:
    """PostgreSQL never auto-analyzes temp tables; without sizes the planner nests loops."""
    if connection.vendor == "postgresql":
        _exec("ANALYZE " + ", ".join(tables))


def _drop() -> None:
    for table in TABLES:
        _exec(f"DROP TABLE IF EXISTS {table}")


def _cents(value: Decimal | None) -> int | None:
    return None if value is None else int((value * 100).to_integral_value())


def _plan_bounds(plan: CommissionPlan, tz: ZoneInfo) -> tuple[datetime, datetime | None]:
    """The plan's effective dates (program time zone, `to` inclusive) as [lo, hi) instants."""
    lo = datetime.combine(plan.effective_from, time.min, tzinfo=tz)
    hi = (
        None
        if plan.effective_to is None
        else datetime.combine(plan.effective_to + timedelta(days=1), time.min, tzinfo=tz)
    )
    return lo, hi


def _eligible_partners(plan: CommissionPlan) -> tuple[str, tuple[Any, ...]]:
    """SQL (and its parameters) of the ids of the partners the plan applies to."""
    q = Q()
    if plan.tiers:
        q &= Q(tier__in=list(plan.tiers))
    if plan.partner_types:
        q &= Q(type__in=list(plan.partner_types))
    if plan.join_sources.exists():
        q &= Q(join_source__in=plan.join_sources.all())
    if plan.partners.exists():
        q &= Q(pk__in=plan.partners.all())
    sql, params = Partner.objects.filter(q).order_by().values("id").query.sql_with_params()
    return sql, tuple(params)


def _amount_sql(base: str, rule: CommissionRule) -> str:
    """The rule's amount in cents of `base` cents (percent: floored to the cent), capped."""
    if rule.kind in CommissionRule.PERCENT_KINDS:
        assert rule.rate is not None
        amount = f"(({base}) * {_cents(rule.rate * 100)} / 1000000)"
    else:
        amount = str(_cents(rule.amount))
    cap = _cents(rule.cap)
    return amount if cap is None else f"(CASE WHEN {amount} > {cap} THEN {cap} ELSE {amount} END)"


def _source_select(rule: CommissionRule, scope: Scope, window: str) -> str:
    """partner_id, deal_id, registration_id, base_cents of the source rows `rule` pays for."""
    kind = CommissionRule.Kind
    won = f"d.status = 'won' AND {scope.deals('d.id')} AND {window.format(at='d.closed_at')}"
    if rule.kind == kind.PERCENT_SOURCED:
        return f"""SELECT d.sourcing_partner_id AS partner_id, d.id AS deal_id, 0 AS registration_id,
                   CAST(ROUND(d.amount * 100) AS BIGINT) AS base_cents
            FROM {DEAL} d WHERE {won} AND d.sourcing_partner_id IS NOT NULL"""
    if rule.kind == kind.PERCENT_ATTRIBUTED:
        return f"""SELECT s.partner_id, d.id AS deal_id, 0 AS registration_id, s.cents AS base_cents
            FROM ec_share s JOIN {DEAL} d ON d.id = s.deal_id WHERE {won}"""
    if rule.kind == kind.FIXED_REGISTRATION:
        return f"""SELECT r.partner_id, 0 AS deal_id, r.id AS registration_id, 0 AS base_cents FROM {REG} r
            WHERE r.status = 'approved' AND {scope.registrations("r.id")}
              AND {window.format(at="r.decided_at")}"""
    # A first sale: the account's first won deal (earliest close, ties to the lower id), sourced.
    # Numbered in one sort of the won deals: a NOT EXISTS probe per deal went quadratic on accounts
    # with many won deals (at 1M deals it ran for over 20 minutes).
    return f"""SELECT d.sourcing_partner_id AS partner_id, d.id AS deal_id, 0 AS registration_id,
               CAST(ROUND(d.amount * 100) AS BIGINT) AS base_cents
        FROM (SELECT w.*, ROW_NUMBER() OVER (PARTITION BY w.account_id ORDER BY w.closed_at, w.id) AS nth
              FROM {DEAL} w WHERE w.status = 'won') d
        WHERE {won} AND d.sourcing_partner_id IS NOT NULL AND d.nth = 1"""


def _candidates(scope: Scope) -> None:
    """ec_cand, then ec_win: the winning rule per (partner, deal, registration, basis)."""
    _exec(
        """CREATE TEMP TABLE ec_cand (partner_id BIGINT, deal_id BIGINT, registration_id BIGINT,
           basis VARCHAR(20), rule_id BIGINT, priority INTEGER, base_cents BIGINT, amount_cents BIGINT)"""
    )
    tz = ZoneInfo(ProgramSettings.load().time_zone)
    rules = CommissionRule.objects.filter(plan__is_active=True).select_related("plan").order_by("id")
    for rule in rules:
        lo, hi = _plan_bounds(rule.plan, tz)
        window = "{at} >= %s" + ("" if hi is None else " AND {at} < %s")
        partners, partner_params = _eligible_partners(rule.plan)
        adapt = connection.ops.adapt_datetimefield_value
        dates: tuple[Any, ...] = (adapt(lo),) if hi is None else (adapt(lo), adapt(hi))
        _exec(
            f"""INSERT INTO ec_cand
            SELECT partner_id, deal_id, registration_id, '{rule.basis}', {int(rule.pk)},
                   {int(rule.plan.priority)}, base_cents, {_amount_sql("base_cents", rule)}
            FROM ({_source_select(rule, scope, window)}) src
            WHERE partner_id IN ({partners})""",
            dates + partner_params,
        )
    _exec(
        """CREATE TEMP TABLE ec_win AS SELECT * FROM (
            SELECT c.*, ROW_NUMBER() OVER (PARTITION BY partner_id, deal_id, registration_id, basis
                                           ORDER BY priority DESC, rule_id) AS rn
            FROM ec_cand c) x WHERE rn = 1"""
    )
    _analyze("ec_share", "ec_win")


def _targets(scope: Scope) -> None:
    """ec_have (the entries there are, per key), ec_frozen and ec_tgt (what each key should total)."""
    in_scope = f"({scope.deals('e.deal_id')} OR {scope.registrations('e.registration_id')})"
    cents = "CAST(ROUND(e.amount * 100) AS BIGINT)"
    _exec(
        f"""CREATE TEMP TABLE ec_have AS
        SELECT e.partner_id, COALESCE(e.deal_id, 0) AS deal_id,
               COALESCE(e.registration_id, 0) AS registration_id, e.basis,
               SUM(CASE WHEN e.status <> 'pending' THEN {cents} ELSE 0 END) AS handled,
               SUM(CASE WHEN e.status IN ('approved', 'paid') THEN {cents} ELSE 0 END) AS approved,
               SUM(CASE WHEN e.status = 'pending' THEN {cents} ELSE 0 END) AS pending,
               SUM(CASE WHEN e.status = 'pending' THEN 1 ELSE 0 END) AS n_pending,
               MAX(CASE WHEN e.status = 'pending' THEN e.rule_id END) AS pending_rule,
               MAX(CASE WHEN e.status = 'pending' THEN CAST(ROUND(e.base_amount * 100) AS BIGINT) END)
                   AS pending_base,
               MAX(CASE WHEN e.kind = 'earning' THEN e.sequence END) AS max_earning,
               MAX(CASE WHEN e.kind = 'clawback' THEN e.sequence END) AS max_clawback
        FROM {ENTRY} e WHERE {in_scope}
        GROUP BY e.partner_id, COALESCE(e.deal_id, 0), COALESCE(e.registration_id, 0), e.basis"""
    )
    # The terms of each key's last decided earning, and what they give on the source row today.
    base = f"""CASE r.kind
        WHEN 'percent_sourced' THEN (SELECT CAST(ROUND(d.amount * 100) AS BIGINT) FROM {DEAL} d
             WHERE d.id = f.deal_id AND d.status = 'won' AND d.sourcing_partner_id = f.partner_id)
        WHEN 'percent_attributed' THEN (SELECT s.cents FROM ec_share s
             WHERE s.deal_id = f.deal_id AND s.partner_id = f.partner_id)
        WHEN 'fixed_registration' THEN (SELECT 0 FROM {REG} g
             WHERE g.id = f.registration_id AND g.status = 'approved')
        ELSE (SELECT CAST(ROUND(d.amount * 100) AS BIGINT) FROM {DEAL} d
             WHERE d.id = f.deal_id AND d.status = 'won' AND d.sourcing_partner_id = f.partner_id) END"""
    _exec(
        f"""CREATE TEMP TABLE ec_frozen AS
        SELECT f.partner_id, f.deal_id, f.registration_id, f.basis, f.rule_id, f.rate, f.fixed_amount, f.cap,
               {base} AS base_cents
        FROM (SELECT e.partner_id, COALESCE(e.deal_id, 0) AS deal_id,
                     COALESCE(e.registration_id, 0) AS registration_id, e.basis, e.rule_id,
                     e.rate, e.fixed_amount, e.cap,
                     ROW_NUMBER() OVER (PARTITION BY e.partner_id, e.deal_id, e.registration_id, e.basis
                                        ORDER BY e.sequence DESC) AS rn
              FROM {ENTRY} e WHERE {in_scope} AND e.kind = 'earning' AND e.status <> 'pending') f
        JOIN {RULE} r ON r.id = f.rule_id WHERE f.rn = 1"""
    )
    _analyze("ec_have", "ec_frozen")
    rate = "CAST(ROUND(f.rate * 10000) AS BIGINT)"
    amount = f"""CASE WHEN f.base_cents IS NULL THEN 0
                      WHEN f.rate IS NULL THEN CAST(ROUND(f.fixed_amount * 100) AS BIGINT)
                      ELSE f.base_cents * {rate} / 1000000 END"""
    cap = "CAST(ROUND(f.cap * 100) AS BIGINT)"
    _exec(
        f"""CREATE TEMP TABLE ec_tgt AS
        SELECT f.partner_id, f.deal_id, f.registration_id, f.basis, f.rule_id,
               CASE WHEN f.rate IS NULL THEN NULL ELSE f.base_cents END AS base_cents,
               CASE WHEN f.cap IS NOT NULL AND {amount} > {cap} THEN {cap} ELSE {amount} END AS target,
               f.rate, f.fixed_amount, f.cap
        FROM ec_frozen f
        UNION ALL
        SELECT w.partner_id, w.deal_id, w.registration_id, w.basis, w.rule_id,
               CASE WHEN r.rate IS NULL THEN NULL ELSE w.base_cents END, w.amount_cents,
               r.rate, r.amount, r.cap
        FROM ec_win w JOIN {RULE} r ON r.id = w.rule_id WHERE NOT EXISTS (
            SELECT 1 FROM ec_frozen f WHERE f.partner_id = w.partner_id AND f.deal_id = w.deal_id
              AND f.registration_id = w.registration_id AND f.basis = w.basis)"""
    )


def _diff() -> int:
    """ec_diff: the keys whose pending entries differ from what they should be, with the wanted
    amount; returns how many."""
    _analyze("ec_tgt")
    handled, approved, target = "COALESCE(h.handled, 0)", "COALESCE(h.approved, 0)", "COALESCE(t.target, 0)"
    want = f"""CASE WHEN {target} > {handled} THEN {target} - {handled}
                    WHEN {target} < {handled} AND {approved} > 0 THEN
                         -(CASE WHEN {handled} - {target} < {approved} THEN {handled} - {target}
                                ELSE {approved} END)
                    ELSE 0 END"""
    _exec(
        f"""CREATE TEMP TABLE ec_diff AS
        SELECT k.partner_id, k.deal_id, k.registration_id, k.basis, {want} AS want,
               t.rule_id, t.base_cents, t.rate, t.fixed_amount, t.cap, h.max_earning, h.max_clawback,
               COALESCE(h.n_pending, 0) AS n_pending
        FROM (SELECT partner_id, deal_id, registration_id, basis FROM ec_tgt
              UNION SELECT partner_id, deal_id, registration_id, basis FROM ec_have) k
        LEFT JOIN ec_tgt t ON t.partner_id = k.partner_id AND t.deal_id = k.deal_id
             AND t.registration_id = k.registration_id AND t.basis = k.basis
        LEFT JOIN ec_have h ON h.partner_id = k.partner_id AND h.deal_id = k.deal_id
             AND h.registration_id = k.registration_id AND h.basis = k.basis
        WHERE {want} <> COALESCE(h.pending, 0) OR COALESCE(h.n_pending, 0) > 1
           OR ({want} <> 0 AND (h.pending_rule <> t.rule_id
                                OR COALESCE(h.pending_base, -1) <> COALESCE(t.base_cents, -1)))"""
    )
    _analyze("ec_diff")
    return int(_fetch("SELECT COUNT(*) FROM ec_diff")[0][0])


DIFF_ROWS = f"""SELECT x.partner_id, x.deal_id, x.registration_id, x.basis, x.want, x.rule_id, x.base_cents,
           x.rate, x.fixed_amount, x.cap, x.max_earning, x.max_clawback, d.closed_at, g.decided_at
    FROM ec_diff x LEFT JOIN {DEAL} d ON d.id = x.deal_id
    LEFT JOIN {REG} g ON g.id = x.registration_id
    WHERE x.n_pending > 0"""
CHUNK = 5000


Key = tuple[int, int, int, str]


def _pending_by_key() -> dict[Key, list[CommissionEntry]]:
    pending: dict[Key, list[CommissionEntry]] = {}
    rows = CommissionEntry.objects.raw(
        f"""SELECT e.* FROM {ENTRY} e JOIN ec_diff x ON x.partner_id = e.partner_id
            AND x.deal_id = COALESCE(e.deal_id, 0) AND x.registration_id = COALESCE(e.registration_id, 0)
            AND x.basis = e.basis WHERE x.n_pending > 0 AND e.status = 'pending' ORDER BY e.id"""
    )
    for entry in rows:
        key = (entry.partner_id, entry.deal_id or 0, entry.registration_id or 0, entry.basis)
        pending.setdefault(key, []).append(entry)
    return pending


def _apply(changed: int, *, now: datetime) -> LedgerResult:
    """Write ec_diff. Keys without a pending entry (a first build: all of them) get theirs in one
    INSERT ... SELECT; keys with pending entries (one review period's, few) are adjusted from
    Python, read in chunks (a server-side cursor on PostgreSQL) so memory stays flat."""
    result = LedgerResult(keys_changed=changed)
    if not changed:
        return result
    hold_days = CommissionSettings.load().hold_days
    result.created = _insert_new(hold_days=hold_days, now=now)
    pending = _pending_by_key()
    with connection.chunked_cursor() as cursor:
        cursor.execute(DIFF_ROWS)
        while rows := cursor.fetchmany(CHUNK):
            _apply_chunk(rows, pending, result, hold=timedelta(days=hold_days), now=now)
    return result


def _insert_new(*, hold_days: int, now: datetime) -> int:
    """The entries of the keys that have no pending one, set-based. The unique key makes a
    concurrent build's identical insert a no-op (ON CONFLICT DO NOTHING / INSERT OR IGNORE)."""
    pg = connection.vendor == "postgresql"
    earned = "COALESCE(d.closed_at, g.decided_at)"
    held = (
        f"{earned} + INTERVAL '{int(hold_days)} days'"
        if pg
        else f"datetime({earned}, '+{int(hold_days)} days')"
    )
    at = connection.ops.adapt_datetimefield_value(now)
    money = "CAST(x.{0} AS NUMERIC) / 100" if pg else "x.{0} / 100.0"
    columns = (
        "partner_id, rule_id, basis, kind, sequence, deal_id, registration_id, amount, base_amount, rate, "
        "fixed_amount, cap, earned_at, hold_until, status, decline_reason, created_at, updated_at"
    )
    select = f"""SELECT x.partner_id, x.rule_id, x.basis,
               CASE WHEN x.want > 0 THEN 'earning' ELSE 'clawback' END,
               CASE WHEN x.want > 0 THEN COALESCE(x.max_earning + 1, 0)
                    ELSE COALESCE(x.max_clawback + 1, 0) END,
               NULLIF(x.deal_id, 0), NULLIF(x.registration_id, 0), {money.format("want")},
               {money.format("base_cents")}, x.rate, x.fixed_amount, x.cap,
               CASE WHEN x.want > 0 THEN {earned} ELSE %s END,
               CASE WHEN x.want > 0 THEN {held} ELSE %s END,
               'pending', '', %s, %s
        FROM ec_diff x LEFT JOIN {DEAL} d ON d.id = x.deal_id LEFT JOIN {REG} g ON g.id = x.registration_id
        WHERE x.n_pending = 0 AND x.want <> 0 AND x.rule_id IS NOT NULL"""
    with connection.cursor() as cursor:
        if pg:
            cursor.execute(f"INSERT INTO {ENTRY} ({columns}) {select} ON CONFLICT DO NOTHING", [at] * 4)
        else:
            cursor.execute(f"INSERT OR IGNORE INTO {ENTRY} ({columns}) {select}", [at] * 4)
        return max(int(cursor.rowcount), 0)


def _apply_chunk(
    rows: list[tuple[Any, ...]],
    pending: dict[Key, list[CommissionEntry]],
    result: LedgerResult,
    *,
    hold: timedelta,
    now: datetime,
) -> None:
    remove: list[int] = []
    create: list[CommissionEntry] = []
    for row in rows:
        partner_id, deal_id, reg_id, basis, want, rule_id, base_cents, rate, fixed, cap = row[:10]
        max_e, max_c, closed, decided = row[10:]
        entries = pending.get((partner_id, deal_id, reg_id, basis), [])
        want = int(want)
        if want == 0 or rule_id is None:
            remove += [e.pk for e in entries]
            continue
        kind = CommissionEntry.Kind.EARNING if want > 0 else CommissionEntry.Kind.CLAWBACK
        earned = _aware(closed or decided) if want > 0 else now
        fields = {
            "rule_id": rule_id,
            "base_amount": None if base_cents is None else Decimal(int(base_cents)) * CENTS,
            "rate": _decimal(rate, "0.0001"),
            "fixed_amount": _decimal(fixed, "0.01"),
            "cap": _decimal(cap, "0.01"),
            "amount": Decimal(want) * CENTS,
            "earned_at": earned,
            "hold_until": earned + hold if want > 0 else now,
        }
        reuse = next((e for e in entries if e.kind == kind), None)
        remove += [e.pk for e in entries if e is not reuse]
        if reuse is not None:
            # Only while still pending: an entry approved meanwhile is left as decided.
            result.adjusted += CommissionEntry.objects.filter(pk=reuse.pk, status="pending").update(
                **fields, updated_at=now
            )
            continue
        last = max_e if kind == CommissionEntry.Kind.EARNING else max_c
        create.append(
            CommissionEntry(
                partner_id=partner_id,
                deal_id=deal_id or None,
                registration_id=reg_id or None,
                basis=basis,
                kind=kind,
                sequence=0 if last is None else int(last) + 1,
                **fields,
            )
        )
    if remove:
        result.removed += CommissionEntry.objects.filter(pk__in=remove, status="pending").delete()[0]
    # The unique key makes a concurrent build's identical insert a no-op.
    CommissionEntry.objects.bulk_create(create, batch_size=2000, ignore_conflicts=True)
    result.created += len(create)


def _aware(value: Any) -> datetime:
    """A datetime read back from SQL (naive UTC, or text, on SQLite) as an aware one."""
    moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


def _decimal(value: Any, places: str) -> Decimal | None:
    """A NUMERIC read back from SQL (a float on SQLite) as the exact Decimal it was stored as."""
    return None if value is None else Decimal(str(value)).quantize(Decimal(places))
