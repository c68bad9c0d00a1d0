"""Reads of registrations and deals that the services, the portal, the API and the admin share,
and the rows of each a user may see (`visible_*`, scoped by `partners.access.row_scope`)."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, overload
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from deals.models import Account, Deal, DealRegistration, Touch
from deals.rules import normalise_domain
from partners.access import AnyUser, row_scope
from partners.models import Partner
from program.models import ProgramSettings

# Statuses of a registration that still claims its account for its partner.
CLAIMING_STATUSES = (DealRegistration.Status.SUBMITTED, DealRegistration.Status.APPROVED)


def protected_at(at: datetime, *, protection_days: int | None = None) -> Q:
    """Registrations whose protection window contains `at` (submitted_at <= at < protection_expires_at).

    Rows without protection_expires_at (imported ones) are protected for the program's window from
    their submission, the same window the service sets on new registrations.
    """
    if protection_days is None:
        protection_days = ProgramSettings.load().registration_protection_days
    return Q(submitted_at__lte=at) & (
        Q(protection_expires_at__gt=at)
        | Q(protection_expires_at__isnull=True, submitted_at__gt=at - timedelta(days=protection_days))
    )


def registration_conflicts(
    *, partner: Partner | None, domain: str, at: datetime | None = None, account: Account | None = None
) -> QuerySet[DealRegistration]:
    """Other partners' claims on a customer that are protected at `at` (default: now), oldest first.

    A claim is a submitted or approved registration whose account has the same normalised domain
    (or is `account` itself, for accounts without a domain) and whose protection window contains `at`.
    """
    at = at or timezone.now()
    domain = normalise_domain(domain)
    same_customer = Q()
    if domain:
        same_customer |= Q(account__domain=domain)
    if account is not None and account.pk is not None:
        same_customer |= Q(account=account)
    if not same_customer:
        return DealRegistration.objects.none()
    claims = DealRegistration.objects.filter(same_customer, protected_at(at), status__in=CLAIMING_STATUSES)
    if partner is not None:
        claims = claims.exclude(partner=partner)
    return claims.select_related("partner", "account").order_by("submitted_at", "id")


def own_pending_claim(
    *, partner: Partner, domain: str, at: datetime | None = None, account: Account | None = None
) -> DealRegistration | None:
    """The partner's own registration of the customer still awaiting review (submitted, protected
    at `at`), oldest first: what a second registration of it by the same partner would duplicate."""
    at = at or timezone.now()
    domain = normalise_domain(domain)
    same_customer = Q(account__domain=domain) if domain else Q()
    if account is not None and account.pk is not None:
        same_customer |= Q(account=account)
    if not same_customer:
        return None
    return (
        DealRegistration.objects.filter(
            same_customer, protected_at(at), status=DealRegistration.Status.SUBMITTED
        )
        .filter(partner=partner)
        .order_by("submitted_at", "id")
        .first()
    )


def registration_blocking_claims(
    *, registration: DealRegistration, at: datetime | None = None
) -> QuerySet[DealRegistration]:
    """The claims that stop `registration` from being approved without an override at `at`.

    First come, first served: another partner's approved claim always blocks, a pending one blocks
    only when it was submitted earlier (ties broken by id).
    """
    earlier = Q(submitted_at__lt=registration.submitted_at) | Q(
        submitted_at=registration.submitted_at, id__lt=registration.pk
    )
    return registration_conflicts(
        partner=registration.partner, domain=registration.account.domain, at=at, account=registration.account
    ).filter(
        Q(status=DealRegistration.Status.APPROVED) | (Q(status=DealRegistration.Status.SUBMITTED) & earlier)
    )


def pending_registrations() -> QuerySet[DealRegistration]:
    """The review queue: submitted registrations, oldest first, with what they conflict with."""
    return (
        DealRegistration.objects.filter(status=DealRegistration.Status.SUBMITTED)
        .select_related(
            "partner",
            "account",
            "submitted_by",
            "conflict_with",
            "conflict_with__partner",
            "conflict_with__account",
        )
        .order_by("submitted_at", "id")
    )


def visible_registrations(user: AnyUser) -> QuerySet[DealRegistration]:
    sees_all, partner = row_scope(user)
    if sees_all:
        return DealRegistration.objects.all()
    if partner is None:
        return DealRegistration.objects.none()
    return DealRegistration.objects.filter(partner=partner)


def partner_deal_ids(partner: Partner | int) -> QuerySet:
    """The ids of a partner's deals: those it sourced, touched or registered (a deal reached by two
    paths once), as a subquery for `pk__in`.

    A UNION of three indexed id sets (deals by sourcing partner, touches by partner, registrations
    by partner), not `sourcing_partner = p OR id IN (...) OR id IN (...)`: an OR across subqueries
    cannot use the indexes, and PostgreSQL scanned all 1M deals for it (docs/benchmarks.md, "Pages").
    """
    partner_id = partner if isinstance(partner, int) else partner.pk
    sourced, touched = _sourced_and_touched_ids(partner_id)
    registered = (
        DealRegistration.objects.filter(partner_id=partner_id, deal__isnull=False)
        .order_by()
        .values("deal_id")
    )
    return sourced.union(touched, registered)


def _sourced_and_touched_ids(partner_id: int) -> tuple[QuerySet, QuerySet]:
    """The ids of the deals a partner sourced, and of those it touched: one indexed set each."""
    return (
        Deal.objects.filter(sourcing_partner_id=partner_id).order_by().values("id"),
        Touch.objects.filter(partner_id=partner_id).order_by().values("deal_id"),
    )


def partner_deals(partner: Partner | int) -> QuerySet[Deal]:
    """A partner's deals (sourced, touched or registered by it), each once: what the portal lists
    and counts, and what the staff partner page lists. Every page that lists or counts a partner's
    deals reads them here."""
    return Deal.objects.filter(pk__in=partner_deal_ids(partner))


def partner_deal_totals(partner: Partner | int) -> dict:
    """Counts over a partner's deals (`partner_deals`), in one query: `won_n` (all time), and the
    open pipeline, `sourced_n`/`sourced_amount` (open deals it sourced) and `touched_n`/
    `touched_amount` (open deals it touched or registered but did not source; amounts None when
    there are none).

    Each deal of the id set is looked up by id (a correlated subquery, its primary key index), not
    joined: PostgreSQL misestimates the UNION (the sum of its parts: a touched deal counts once per
    touch), so `status = 'won' AND id IN (...)` read all 271,419 won deals at 1M deals and a join
    hashed the whole deal table; the lookups cost one index probe per deal of the partner."""
    partner_id = partner if isinstance(partner, int) else partner.pk
    ids_sql, ids_params = partner_deal_ids(partner_id).query.sql_with_params()
    table = Deal._meta.db_table
    sql = f"""
        SELECT kind, COUNT(*), SUM(amount)
        FROM (SELECT (SELECT CASE WHEN d.status = %s THEN 'won'
                                  WHEN d.status = %s AND d.sourcing_partner_id = %s THEN 'sourced'
                                  WHEN d.status = %s THEN 'touched' END
                      FROM {table} d WHERE d.id = u.id) AS kind,
                     (SELECT d.amount FROM {table} d WHERE d.id = u.id) AS amount
              FROM ({ids_sql}) u) x
        GROUP BY kind"""
    params = [Deal.Status.WON, Deal.Status.OPEN, partner_id, Deal.Status.OPEN, *ids_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = {kind: (int(n), amount) for kind, n, amount in cursor.fetchall()}
    won_n = found.get("won", (0, None))[0]
    sourced_n, sourced_amount = found.get("sourced", (0, None))
    touched_n, touched_amount = found.get("touched", (0, None))
    return {
        "won_n": won_n,
        "sourced_n": sourced_n,
        "sourced_amount": _money(sourced_amount),
        "touched_n": touched_n,
        "touched_amount": _money(touched_amount),
    }


def _money(value: object) -> Decimal | None:
    """A raw SUM of amounts as money (SQLite returns a float)."""
    return None if value is None else Decimal(str(value)).quantize(Decimal("0.01"))


class PartnerDealList:
    """A partner's deals (`partner_deals`), newest first (created_at, then id), optionally of one
    status, for a `Paginator`: counted and paged on the partner's id set, each deal looked up by
    its primary key, so that the cost follows the partner's number of deals, not the program's
    (the same misestimate as in `partner_deal_totals` made PostgreSQL hash or walk the whole deal
    table). `base` gives the rows of the page (visibility, select_related); it must not narrow the
    partner's deals further, the count does not see it."""

    def __init__(
        self, partner: Partner | int, *, status: str | None = None, base: QuerySet[Deal] | None = None
    ) -> None:
        self.partner_id = partner if isinstance(partner, int) else partner.pk
        self.status = status
        self.base = Deal.objects.all() if base is None else base

    def _ids(self) -> tuple[str, list[Any]]:
        ids_sql, ids_params = partner_deal_ids(self.partner_id).query.sql_with_params()
        sql, params = f"SELECT u.id FROM ({ids_sql}) u", list(ids_params)
        if self.status:
            sql += f" WHERE (SELECT d.status FROM {Deal._meta.db_table} d WHERE d.id = u.id) = %s"
            params.append(self.status)
        return sql, params

    def count(self) -> int:
        sql, params = self._ids()
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM ({sql}) n", params)
            return int(cursor.fetchone()[0])

    def __len__(self) -> int:
        return self.count()

    def __iter__(self) -> Iterator[Deal]:
        return iter(self[0 : self.count()])

    @overload
    def __getitem__(self, index: int) -> Deal: ...
    @overload
    def __getitem__(self, index: slice) -> list[Deal]: ...
    def __getitem__(self, index: int | slice) -> Deal | list[Deal]:
        if isinstance(index, int):
            return self[index : index + 1][0]
        start = index.start or 0
        stop = self.count() if index.stop is None else index.stop
        sql, params = self._ids()
        sql += (
            f" ORDER BY (SELECT d.created_at FROM {Deal._meta.db_table} d WHERE d.id = u.id) DESC, u.id DESC"
            " LIMIT %s OFFSET %s"
        )
        page = RawSQL(sql, (*params, max(stop - start, 0), start))
        return list(self.base.filter(pk__in=page).order_by("-created_at", "-id"))


def visible_deals(user: AnyUser) -> QuerySet[Deal]:
    sees_all, partner = row_scope(user)
    if sees_all:
        return Deal.objects.all()
    if partner is None:
        return Deal.objects.none()
    return partner_deals(partner)


def visible_touches(user: AnyUser) -> QuerySet[Touch]:
    """A partner sees its own touches, never another partner's involvement in a shared deal."""
    sees_all, partner = row_scope(user)
    if sees_all:
        return Touch.objects.all()
    if partner is None:
        return Touch.objects.none()
    return Touch.objects.filter(partner=partner)


def visible_accounts(user: AnyUser) -> QuerySet[Account]:
    sees_all, partner = row_scope(user)
    if sees_all:
        return Account.objects.all()
    if partner is None:
        return Account.objects.none()
    deal_accounts = partner_deals(partner).values("account_id")
    registration_accounts = DealRegistration.objects.filter(partner=partner).values("account_id")
    return Account.objects.filter(Q(pk__in=deal_accounts) | Q(pk__in=registration_accounts))


# -- the staff deal list and the deal page -----------------------------------------------------
# Segments as KPIS.md defines them (docs/kpis.md, "Segments"): sourced when a partner sourced the
# deal, influenced when not and some touch counts (dated on or before the close), direct otherwise.
# The database keeps each deal's in Deal.segment (deals/migrations/0005_deal_segment.py).
SEGMENTS = ("sourced", "influenced", "direct")
DEAL_SORTS = {
    "created": "created_at",
    "closed": "closed_at",
    "amount": "amount",
    "name": "name",
    "account": "account__name",
}


def involved_deal_ids(partner_id: int) -> QuerySet:
    """Ids of the deals a partner sourced or touched (the staff deal list's partner filter).

    One indexed id set per kind, united: an OR of `sourcing_partner` and an IN (touches) cannot
    use the indexes, and PostgreSQL read every deal to test each (0.3-0.4 s at 1M deals)."""
    sourced, touched = _sourced_and_touched_ids(partner_id)
    return sourced.union(touched)


def _join_source_involved(join_source_id: int) -> Q:
    """Sourced by a partner of the join source, or touched by one: tested deal by deal (a hashed
    partner set and an EXISTS on the deal's touches) so that PostgreSQL walks the sort's index and
    stops after the page. A join source is involved in a large share of the deals (~17% at 1M), so
    the id UNION that `involved_deal_ids` builds for one partner cost 3 s here."""
    members = Partner.objects.filter(join_source_id=join_source_id).values("pk")
    touched = Touch.objects.filter(deal_id=OuterRef("pk"), partner__join_source_id=join_source_id)
    return Q(sourcing_partner_id__in=members) | Q(Exists(touched))


def local_moment(day: date, *, tz: str | None = None) -> datetime:
    """The first instant of a local calendar day in the program's time zone."""
    zone = ZoneInfo(tz or ProgramSettings.load().time_zone)
    return datetime.combine(day, time.min, tzinfo=zone)


@dataclass(frozen=True)
class DealListQuery:
    """What the staff deal list is filtered and sorted by; None means no filter."""

    status: str | None = None
    segment: str | None = None
    partner_id: int | None = None  # sourced or touched by the partner
    join_source_id: int | None = None  # sourced or touched by a partner of the join source
    date_from: date | None = None  # local dates, both included
    date_to: date | None = None
    date_basis: str = "closed"  # closed_at or created_at
    amount_min: Decimal | None = None
    amount_max: Decimal | None = None
    sort: str = "created"
    descending: bool = True


def deal_list(query: DealListQuery) -> QuerySet[Deal]:
    """Every deal matching `query`, with its segment, account and sourcing partner, sorted in the
    database (ties by id) so that it pages cheaply. Staff only: callers check the role."""
    deals = Deal.objects.select_related("account", "sourcing_partner")
    if query.status:
        deals = deals.filter(status=query.status)
    if query.segment:
        deals = deals.filter(segment=query.segment)
    if query.partner_id is not None:
        deals = deals.filter(pk__in=involved_deal_ids(query.partner_id))
    if query.join_source_id is not None:
        deals = deals.filter(_join_source_involved(query.join_source_id))
    field = "closed_at" if query.date_basis == "closed" else "created_at"
    if query.date_from is not None:
        deals = deals.filter(**{f"{field}__gte": local_moment(query.date_from)})
    if query.date_to is not None:
        deals = deals.filter(**{f"{field}__lt": local_moment(query.date_to + timedelta(days=1))})
    if query.amount_min is not None:
        deals = deals.filter(amount__gte=query.amount_min)
    if query.amount_max is not None:
        deals = deals.filter(amount__lte=query.amount_max)
    column = DEAL_SORTS.get(query.sort, "created_at")
    # NULLS LAST only where NULLs exist (closed_at): on a NOT NULL column it keeps PostgreSQL
    # from reading the column's index backwards, and the first page sorted all 1M deals (0.6 s).
    nulls_last = True if column == "closed_at" else None
    order = (
        F(column).desc(nulls_last=nulls_last) if query.descending else F(column).asc(nulls_last=nulls_last)
    )
    return deals.order_by(order, "-id" if query.descending else "id")


def deal_list_count(query: DealListQuery, cap: int) -> int:
    """How many deals `deal_list(query)` lists, counted up to `cap` + 1 (beyond, the count stops).

    With a join source, its sourced deals alone are counted first (a cheap hashed test on a
    column): when they reach the cap, so does the list, and the EXISTS on the touches of some
    50,000 deals (0.4 s at 1M) is skipped."""
    deals = deal_list(query).order_by()
    if query.join_source_id is not None:
        members = Partner.objects.filter(join_source_id=query.join_source_id).values("pk")
        sourced = deals.filter(sourcing_partner_id__in=members)[: cap + 1].count()
        if sourced > cap:
            return sourced
    return deals[: cap + 1].count()


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str  # created, registered, decided, touch, closed
    text: str
    partner: Partner | None = None
    counts: bool = True  # a touch dated after the close does not count


def deal_timeline(deal: Deal) -> list[TimelineEntry]:
    """The deal's story in time order: its registration (submitted, decided), its creation, every
    touch (marked when it is dated after the close and so does not count), and its close.
    Two queries."""
    entries = [TimelineEntry(at=deal.created_at, kind="created", text="Deal created")]
    registration = (
        DealRegistration.objects.filter(deal_id=deal.pk).select_related("partner", "decided_by").first()
    )
    if registration is not None:
        entries.append(
            TimelineEntry(
                at=registration.submitted_at,
                kind="registered",
                text=f"Registered by {registration.partner.name} for {registration.amount}",
                partner=registration.partner,
            )
        )
        if registration.decided_at is not None:
            entries.append(
                TimelineEntry(
                    at=registration.decided_at,
                    kind="decided",
                    text=f"Registration {registration.get_status_display().lower()}",
                    partner=registration.partner,
                )
            )
    for touch in Touch.objects.filter(deal_id=deal.pk).select_related("partner").order_by("touched_at", "id"):
        late = deal.closed_at is not None and touch.touched_at > deal.closed_at
        entries.append(
            TimelineEntry(
                at=touch.touched_at,
                kind="touch",
                text=f"{touch.get_kind_display()} by {touch.partner.name}",
                partner=touch.partner,
                counts=not late,
            )
        )
    if deal.closed_at is not None:
        entries.append(
            TimelineEntry(
                at=deal.closed_at, kind="closed", text=f"Closed {deal.get_status_display().lower()}"
            )
        )
    order = {"registered": 0, "decided": 1, "created": 2, "touch": 3, "closed": 4}
    return sorted(entries, key=lambda e: (e.at, order[e.kind]))
