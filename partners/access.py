"""Who may see and change what: the one permission scoping shared by the API and the dashboards.

Staff readers (partner managers, sales ops, superusers) see every row. A portal user acts for
exactly one partner (`PartnerUser`) and sees only that partner's rows: its registrations, the deals
it sourced, touched or registered, its own touches, the accounts behind those deals and
registrations, and costs and targets tagged with it. Anyone else sees nothing.

`row_scope` decides; each app's selectors apply it to their own models (`visible_*`), so this
module, at the bottom of the domain, imports no model above partners.
"""

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from partners.models import Partner, PartnerUser
from partners.roles import is_partner_manager, is_sales_ops

AnyUser = User | AnonymousUser


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


def sees_money(user: AnyUser) -> bool:
    """Commissions, payouts, MDF and costs: staff readers and partner admins; a partner member never."""
    return is_staff_reader(user) or is_partner_admin(user)


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


def row_scope(user: AnyUser) -> tuple[bool, Partner | None]:
    """(sees everything, the partner whose rows it sees otherwise): what every `visible_*` reads.

    The `visible_*` querysets live with their models: partners here, deals, registrations, touches
    and accounts in `deals.selectors`, costs and targets in `kpis.selectors`."""
    if is_staff_reader(user):
        return True, None
    return False, partner_of(user)


def visible_partners(user: AnyUser) -> QuerySet[Partner]:
    sees_all, partner = row_scope(user)
    if sees_all:
        return Partner.objects.all()
    if partner is None:
        return Partner.objects.none()
    return Partner.objects.filter(pk=partner.pk)
