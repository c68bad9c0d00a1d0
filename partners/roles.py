"""Staff roles are Django groups; partner roles live on PartnerUser."""

from enum import StrEnum

from django.contrib.auth.models import AnonymousUser, User


class StaffRole(StrEnum):
    PARTNER_MANAGER = "Partner managers"
    SALES_OPS = "Sales ops"


# Where a loader that already read the user's staff roles with the user (API token authentication
# does, in the same query) leaves them, so the role checks of that request need no query of their own.
STAFF_ROLES_ATTRIBUTE = "_prm_staff_roles"


def has_staff_role(user: User | AnonymousUser, role: StaffRole) -> bool:
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    known = getattr(user, STAFF_ROLES_ATTRIBUTE, None)
    if known is not None:
        return role.value in known
    return user.groups.filter(name=role.value).exists()


def is_partner_manager(user: User | AnonymousUser) -> bool:
    return has_staff_role(user, StaffRole.PARTNER_MANAGER)


def is_sales_ops(user: User | AnonymousUser) -> bool:
    return has_staff_role(user, StaffRole.SALES_OPS)
