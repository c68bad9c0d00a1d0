"""Reads of the economics app: who sees which ledger entries, and the review queue's filters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db.models import QuerySet, Sum
from django.utils import timezone

from economics.models import CommissionEntry, CommissionPlan
from partners import access
from partners.access import AnyUser
from program.models import ProgramSettings


def visible_entries(user: AnyUser) -> QuerySet[CommissionEntry]:
    """Staff: every entry; a partner admin: its partner's; anyone else: none."""
    sees_all, partner = access.row_scope(user)
    if sees_all:
        return CommissionEntry.objects.all()
    if partner is None or not access.is_partner_admin(user):
        return CommissionEntry.objects.none()
    return CommissionEntry.objects.filter(partner=partner)


def visible_plans(user: AnyUser) -> QuerySet[CommissionPlan]:
    if not access.is_staff_reader(user):
        return CommissionPlan.objects.none()
    return CommissionPlan.objects.prefetch_related("rules", "join_sources", "partners")


@dataclass
class EntryFilter:
    status: str = ""
    kind: str = ""
    basis: str = ""
    partner_id: int | None = None
    plan_id: int | None = None
    earned_from: date | None = None
    earned_to: date | None = None
    # "ready": pending and past its hold; "held": pending, still held.
    hold: str = ""


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=ZoneInfo(ProgramSettings.load().time_zone))


def filter_entries(qs: QuerySet[CommissionEntry], f: EntryFilter) -> QuerySet[CommissionEntry]:
    if f.status:
        qs = qs.filter(status=f.status)
    if f.kind:
        qs = qs.filter(kind=f.kind)
    if f.basis:
        qs = qs.filter(basis=f.basis)
    if f.partner_id is not None:
        qs = qs.filter(partner_id=f.partner_id)
    if f.plan_id is not None:
        qs = qs.filter(rule__plan_id=f.plan_id)
    if f.earned_from is not None:
        qs = qs.filter(earned_at__gte=_start_of(f.earned_from))
    if f.earned_to is not None:
        qs = qs.filter(earned_at__lt=_start_of(f.earned_to + timedelta(days=1)))
    now = timezone.now()
    if f.hold == "ready":
        qs = qs.filter(status=CommissionEntry.Status.PENDING, hold_until__lte=now)
    elif f.hold == "held":
        qs = qs.filter(status=CommissionEntry.Status.PENDING, hold_until__gt=now)
    return qs


def entry_totals(qs: QuerySet[CommissionEntry]) -> dict[str, object]:
    """Sum of amounts per status of the filtered entries (for the review page's header)."""
    rows = qs.order_by().values("status").annotate(total=Sum("amount"))
    return {row["status"]: row["total"] for row in rows}
