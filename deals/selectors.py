"""Reads of registrations and deals that the services, the portal, the API and the admin share,
and the rows of each a user may see (`visible_*`, scoped by `partners.access.row_scope`)."""

from datetime import datetime, timedelta

from django.db.models import Q, QuerySet
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


def _partner_deals_q(partner: Partner) -> Q:
    # A subquery on ids keeps the result free of duplicate rows from the touch join.
    touched = Touch.objects.filter(partner=partner).values("deal_id")
    registered = DealRegistration.objects.filter(partner=partner, deal__isnull=False).values("deal_id")
    return Q(sourcing_partner=partner) | Q(pk__in=touched) | Q(pk__in=registered)


def visible_deals(user: AnyUser) -> QuerySet[Deal]:
    sees_all, partner = row_scope(user)
    if sees_all:
        return Deal.objects.all()
    if partner is None:
        return Deal.objects.none()
    return Deal.objects.filter(_partner_deals_q(partner))


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
    deal_accounts = Deal.objects.filter(_partner_deals_q(partner)).values("account_id")
    registration_accounts = DealRegistration.objects.filter(partner=partner).values("account_id")
    return Account.objects.filter(Q(pk__in=deal_accounts) | Q(pk__in=registration_accounts))
