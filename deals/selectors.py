"""Reads of registrations and deals that the services, the portal, the API and the admin share."""

from datetime import datetime, timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from deals.models import Account, DealRegistration
from deals.rules import normalise_domain
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
