"""Staff roles are Django groups; partner roles live on PartnerUser."""

from enum import StrEnum

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser


class StaffRole(StrEnum):
    PARTNER_MANAGER = "Partner managers"
    SALES_OPS = "Sales ops"


def has_staff_role(user: AbstractBaseUser | AnonymousUser, role: StaffRole) -> bool:
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    return user.groups.filter(name=role.value).exists()


def is_partner_manager(user: AbstractBaseUser | AnonymousUser) -> bool:
    return has_staff_role(user, StaffRole.PARTNER_MANAGER)


def is_sales_ops(user: AbstractBaseUser | AnonymousUser) -> bool:
    return has_staff_role(user, StaffRole.SALES_OPS)
