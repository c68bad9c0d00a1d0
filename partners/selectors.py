"""Reads of partners that the dashboards, the API and the admin share."""

from datetime import date

from django.db.models import Q, QuerySet

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


def tiers_in_order() -> list[str]:
    """The tiers partners hold, in tier order (partners.rules.tier_sort_key), not alphabetical."""
    from partners.rules import tier_sort_key

    tiers = Partner.objects.exclude(tier="").order_by().values_list("tier", flat=True).distinct()
    return sorted(tiers, key=tier_sort_key)


def partner_managers() -> QuerySet:
    """Users who manage at least one partner, by name (last, first, then login)."""
    from django.contrib.auth import get_user_model

    return (
        get_user_model()
        .objects.filter(managed_partners__isnull=False)
        .distinct()
        .order_by("last_name", "first_name", "username")
    )


def manager_label(user) -> str:
    """How pages name a manager: the full name, else the login."""
    return user.get_full_name() or user.get_username()


def partner_by_reference(text: str) -> Partner | None:
    """The partner a person typed into a filter: its key, its name (any case) or its id. A text
    field rather than a list: a program has thousands of partners (rendering them all as options
    cost the review queue half a second at 10,000 partners)."""
    text = text.strip()
    if not text:
        return None
    match = Q(key=text) | Q(name__iexact=text)
    if text.isdigit() and len(text) < 19:
        match |= Q(pk=int(text))
    return Partner.objects.filter(match).order_by("pk").first()
