"""Who may see and change what: the one permission scoping shared by the API and the dashboards.

Staff readers (partner managers, sales ops, superusers) see every row. A portal user acts for
exactly one partner (`PartnerUser`) and sees only that partner's rows: its registrations, the deals
it sourced, touched or registered, its own touches, the accounts behind those deals and
registrations, and costs and targets tagged with it. Anyone else sees nothing.
"""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet

from deals.models import Account, Deal, DealRegistration, Touch
from kpis.models import CostEntry, Target
from partners.models import Partner, PartnerUser
from partners.roles import is_partner_manager, is_sales_ops

AnyUser = AbstractBaseUser | AnonymousUser


def partner_of(user: AnyUser) -> Partner | None:
    """The partner a portal user acts for; None for staff, anonymous users and users without one."""
    if not user.is_authenticated or user.is_superuser:
        return None
    membership = PartnerUser.objects.select_related("partner").filter(user_id=user.pk).first()
    return membership.partner if membership else None


def membership_of(user: AnyUser) -> PartnerUser | None:
    """The user's PartnerUser (with its partner); None for staff, anonymous users and users without one."""
    if not user.is_authenticated or user.is_superuser:
        return None
    return PartnerUser.objects.select_related("partner").filter(user_id=user.pk).first()


def is_partner_admin(user: AnyUser) -> bool:
    membership = membership_of(user)
    return membership is not None and membership.is_admin


def can_manage_partner_users(user: AnyUser, partner: Partner) -> bool:
    """Partner managers (any partner) and the partner's own admins invite and (de)activate its users.

    Members never do; an admin of another partner never does.
    """
    if can_write_all(user):
        return True
    membership = membership_of(user)
    return membership is not None and membership.is_admin and membership.partner_id == partner.pk


def can_see_partner_profile(user: AnyUser, partner: Partner) -> bool:
    """Staff readers, and the people of the partner (its logo is served to nobody else)."""
    if is_staff_reader(user):
        return True
    membership = membership_of(user)
    return membership is not None and membership.partner_id == partner.pk


def is_staff_reader(user: AnyUser) -> bool:
    """Partner managers, sales ops and superusers may read everything."""
    return is_partner_manager(user) or is_sales_ops(user)


def can_write_all(user: AnyUser) -> bool:
    """Partner managers and superusers may change any partner's data."""
    return is_partner_manager(user)


def can_trigger_recompute(user: AnyUser) -> bool:
    return is_staff_reader(user)


def can_import(user: AnyUser) -> bool:
    return is_staff_reader(user)


def _scope(user: AnyUser) -> tuple[bool, Partner | None]:
    """(sees everything, the partner whose rows it sees otherwise)."""
    if is_staff_reader(user):
        return True, None
    return False, partner_of(user)


def visible_partners(user: AnyUser) -> QuerySet[Partner]:
    sees_all, partner = _scope(user)
    if sees_all:
        return Partner.objects.all()
    if partner is None:
        return Partner.objects.none()
    return Partner.objects.filter(pk=partner.pk)


def visible_registrations(user: AnyUser) -> QuerySet[DealRegistration]:
    sees_all, partner = _scope(user)
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
    sees_all, partner = _scope(user)
    if sees_all:
        return Deal.objects.all()
    if partner is None:
        return Deal.objects.none()
    return Deal.objects.filter(_partner_deals_q(partner))


def visible_touches(user: AnyUser) -> QuerySet[Touch]:
    """A partner sees its own touches, never another partner's involvement in a shared deal."""
    sees_all, partner = _scope(user)
    if sees_all:
        return Touch.objects.all()
    if partner is None:
        return Touch.objects.none()
    return Touch.objects.filter(partner=partner)


def visible_accounts(user: AnyUser) -> QuerySet[Account]:
    sees_all, partner = _scope(user)
    if sees_all:
        return Account.objects.all()
    if partner is None:
        return Account.objects.none()
    deal_accounts = Deal.objects.filter(_partner_deals_q(partner)).values("account_id")
    registration_accounts = DealRegistration.objects.filter(partner=partner).values("account_id")
    return Account.objects.filter(Q(pk__in=deal_accounts) | Q(pk__in=registration_accounts))


def visible_costs(user: AnyUser) -> QuerySet[CostEntry]:
    sees_all, partner = _scope(user)
    if sees_all:
        return CostEntry.objects.all()
    if partner is None:
        return CostEntry.objects.none()
    return CostEntry.objects.filter(partner=partner)


def visible_targets(user: AnyUser) -> QuerySet[Target]:
    sees_all, partner = _scope(user)
    if sees_all:
        return Target.objects.all()
    if partner is None:
        return Target.objects.none()
    return Target.objects.filter(partner=partner)
