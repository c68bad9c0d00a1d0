"""Reads of partners that the dashboards, the API and the admin share."""

from datetime import date

from django.db.models import QuerySet

from partners.models import Partner


def pending_applications() -> QuerySet[Partner]:
    """Applications awaiting a decision, oldest first, with what the review screen shows."""
    return (
        Partner.objects.filter(status=Partner.Status.APPLIED)
        .select_related("join_source", "referred_by", "manager")
        .order_by("applied_at", "id")
    )


def joined_partners(*, as_of: date | None = None) -> QuerySet[Partner]:
    """Organisations approved into the program (by `as_of` when given), whatever their status now."""
    partners = Partner.objects.filter(joined_at__isnull=False)
    if as_of is not None:
        partners = partners.filter(joined_at__lte=as_of)
    return partners.select_related("join_source")


def partners_referred_by(partner: Partner) -> QuerySet[Partner]:
    """Every application `partner` referred, approved or not."""
    return (
        Partner.objects.filter(referred_by=partner).select_related("join_source").order_by("applied_at", "id")
    )
