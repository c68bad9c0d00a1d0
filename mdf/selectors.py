"""Reads of MDF: what a budget has left, which budget a partner draws from, and who sees which rows.

The budget arithmetic (docs/mdf.md, "What a budget has left"), per budget:

    reserved  = pending + approved_open + claims_approved + reimbursed
    remaining = amount - reserved

- pending: the amount asked by requests still awaiting a decision (they hold funds, so two requests
  submitted together can never both fit where only one does);
- approved_open: the approved amount of approved requests whose claim is not approved yet (none, a
  submitted one, or only rejected ones);
- claims_approved, reimbursed: the approved amount of their approved (not yet paid) or reimbursed
  claim, which replaces the request's approved amount (a partial approval gives the rest back);
- rejected and expired requests hold nothing (`expired` is reported, as released funds).

Two grouped queries per set of budgets, whatever their number of requests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Q, QuerySet, Sum

from mdf.models import MdfBudget, MdfClaim, MdfProofFile, MdfRequest
from partners.access import is_partner_admin, is_staff_reader, membership_of, row_scope
from partners.models import Partner

AnyUser = User | AnonymousUser
ZERO = Decimal("0.00")


@dataclass(frozen=True)
class BudgetFigures:
    budget: MdfBudget
    pending: Decimal = ZERO
    approved_open: Decimal = ZERO
    claims_approved: Decimal = ZERO
    reimbursed: Decimal = ZERO
    expired: Decimal = ZERO

    @property
    def reserved(self) -> Decimal:
        return self.pending + self.approved_open + self.claims_approved + self.reimbursed

    @property
    def remaining(self) -> Decimal:
        return self.budget.amount - self.reserved

    @property
    def used_percent(self) -> int:
        return min(100, int(self.reserved * 100 / self.budget.amount)) if self.budget.amount else 0


def _money(value: Decimal | None) -> Decimal:
    return (value or ZERO).quantize(Decimal("0.01"))


def budget_figures(budgets: Iterable[MdfBudget]) -> list[BudgetFigures]:
    """Each budget with what its requests and claims hold, in the order given."""
    budgets = list(budgets)
    ids = [b.pk for b in budgets]
    requests: dict[int, dict[str, Any]] = {
        row["budget_id"]: dict(row)
        for row in MdfRequest.objects.filter(budget_id__in=ids)
        .order_by()
        .values("budget_id")
        .annotate(
            pending=Sum("amount_requested", filter=Q(status=MdfRequest.Status.SUBMITTED)),
            approved=Sum("amount_approved", filter=Q(status=MdfRequest.Status.APPROVED)),
            expired=Sum("amount_approved", filter=Q(status=MdfRequest.Status.EXPIRED)),
        )
    }
    settled = (MdfClaim.Status.APPROVED, MdfClaim.Status.REIMBURSED)
    claims: dict[int, dict[str, Any]] = {
        row["request__budget_id"]: dict(row)
        for row in MdfClaim.objects.filter(request__budget_id__in=ids, status__in=settled)
        .order_by()
        .values("request__budget_id")
        .annotate(
            settled_requests=Sum("request__amount_approved"),
            approved=Sum("amount_approved", filter=Q(status=MdfClaim.Status.APPROVED)),
            reimbursed=Sum("amount_approved", filter=Q(status=MdfClaim.Status.REIMBURSED)),
        )
    }
    figures = []
    for budget in budgets:
        r: dict[str, Any] = requests.get(budget.pk, {})
        c: dict[str, Any] = claims.get(budget.pk, {})
        figures.append(
            BudgetFigures(
                budget=budget,
                pending=_money(r.get("pending")),
                approved_open=_money(r.get("approved")) - _money(c.get("settled_requests")),
                claims_approved=_money(c.get("approved")),
                reimbursed=_money(c.get("reimbursed")),
                expired=_money(r.get("expired")),
            )
        )
    return figures


def figures_of(budget: MdfBudget) -> BudgetFigures:
    return budget_figures([budget])[0]


def budget_for(partner: Partner, quarter: str) -> MdfBudget | None:
    """The budget a partner's request in `quarter` draws from: its own, else its tier's pool."""
    own = MdfBudget.objects.filter(quarter=quarter, partner=partner).first()
    if own is not None or not partner.tier:
        return own
    return MdfBudget.objects.filter(quarter=quarter, tier=partner.tier).first()


def partner_budgets(partner: Partner) -> QuerySet[MdfBudget]:
    """The budgets a partner draws from: its own, and its tier's pools of the quarters it has none of
    its own for (every quarter)."""
    scope = Q(partner=partner)
    if partner.tier:
        own_quarters = MdfBudget.objects.filter(partner=partner).values("quarter")
        scope |= Q(tier=partner.tier) & ~Q(quarter__in=own_quarters)
    return MdfBudget.objects.filter(scope).select_related("partner")


# --- Who sees what ----------------------------------------------------------------------------------
def can_see_funds(user: AnyUser) -> bool:
    """Staff readers and partner admins; partner members never see MDF money (docs/mdf.md)."""
    return is_staff_reader(user) or is_partner_admin(user)


def _funds_partner(user: AnyUser) -> tuple[bool, Partner | None]:
    sees_all, partner = row_scope(user)
    if sees_all:
        return True, None
    membership = membership_of(user)
    return False, (partner if membership is not None and membership.is_admin else None)


def visible_budgets(user: AnyUser) -> QuerySet[MdfBudget]:
    sees_all, partner = _funds_partner(user)
    if sees_all:
        return MdfBudget.objects.all()
    return partner_budgets(partner) if partner is not None else MdfBudget.objects.none()


def visible_requests(user: AnyUser) -> QuerySet[MdfRequest]:
    sees_all, partner = _funds_partner(user)
    if sees_all:
        return MdfRequest.objects.all()
    return MdfRequest.objects.filter(partner=partner) if partner is not None else MdfRequest.objects.none()


def visible_claims(user: AnyUser) -> QuerySet[MdfClaim]:
    sees_all, partner = _funds_partner(user)
    if sees_all:
        return MdfClaim.objects.all()
    if partner is None:
        return MdfClaim.objects.none()
    return MdfClaim.objects.filter(request__partner=partner)


def visible_proofs(user: AnyUser) -> QuerySet[MdfProofFile]:
    sees_all, partner = _funds_partner(user)
    if sees_all:
        return MdfProofFile.objects.all()
    if partner is None:
        return MdfProofFile.objects.none()
    return MdfProofFile.objects.filter(claim__request__partner=partner)
