"""Role checks for API endpoints, cached per request so each role query runs at most once.

Row visibility is not decided here: every queryset comes from a `visible_*` selector (scoped by
`partners.access.row_scope`), so a
partner user asking for another partner's object gets 404 (it is simply not in the queryset).
These classes only decide which roles may call an endpoint or an unsafe method at all.
"""

from collections.abc import Callable

from django.contrib.auth.models import User
from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from partners import access


def _cached(request, name: str, check: Callable) -> bool:
    cache = request.__dict__.setdefault("_prm_roles", {})
    if name not in cache:
        cache[name] = check(request.user)
    return cache[name]


def can_write_all(request) -> bool:
    return _cached(request, "write_all", access.can_write_all)


def is_staff_reader(request) -> bool:
    return _cached(request, "staff_reader", access.is_staff_reader)


class MoneyReader(BasePermission):
    """Money (commissions, payouts, MDF, costs): staff readers and partner admins; a partner member
    (or a user without a role) is refused, whatever the method. Writes are decided by the view's
    other permission."""

    message = "Only partner admins and staff see money."

    def has_permission(self, request, view) -> bool:
        return request.user.is_authenticated and _cached(request, "money", access.sees_money)


def acting_user(request: Request) -> User:
    """The signed-in user a write is attributed to; anyone else is refused (401)."""
    user = request.user
    if not isinstance(user, User) or not user.is_authenticated:
        raise exceptions.NotAuthenticated()
    return user


def acting_partner(request):
    """The partner a portal user acts for (None for staff and users without a partner)."""
    cache = request.__dict__.setdefault("_prm_roles", {})
    if "partner" not in cache:
        cache["partner"] = access.partner_of(request.user)
    return cache["partner"]


class ReadScopedWriteManager(BasePermission):
    """Anyone signed in reads (rows scoped by partners.access); only partner managers write.

    A write on one object is decided after the object is looked up in the user's scope, so another
    partner's object answers 404 (as if missing) and only the user's own object answers 403.
    """

    message = "Only partner managers can change this resource."
    reads_may_be_refused = False  # for the schema: a read is scoped, never refused

    def has_permission(self, request, view) -> bool:
        if not request.user.is_authenticated:
            return False
        if request.method in SAFE_METHODS or getattr(view, "detail", False):
            return True
        return can_write_all(request)

    def has_object_permission(self, request, view, obj) -> bool:
        return request.method in SAFE_METHODS or can_write_all(request)


class StaffReader(BasePermission):
    """Partner managers and sales ops (and superusers)."""

    message = "Only partner managers and sales ops can use this endpoint."

    def has_permission(self, request, view) -> bool:
        return request.user.is_authenticated and is_staff_reader(request)


class RecomputeTrigger(BasePermission):
    """Staff read the run history; POST needs the right to trigger a recompute."""

    message = "Only partner managers and sales ops can see or trigger KPI recomputes."

    def has_permission(self, request, view) -> bool:
        if not request.user.is_authenticated:
            return False
        if request.method in SAFE_METHODS:
            return is_staff_reader(request)
        return _cached(request, "recompute", access.can_trigger_recompute)


class Importer(BasePermission):
    message = "Only partner managers and sales ops can import program data."

    def has_permission(self, request, view) -> bool:
        return request.user.is_authenticated and _cached(request, "import", access.can_import)


class RegistrationPermission(ReadScopedWriteManager):
    """Partner users (and managers) submit; only partner managers decide; everyone else reads."""

    message = "Only partner managers can decide registrations."
    SUBMIT_ACTIONS = ("create",)
    READ_ACTIONS = ("list", "retrieve", "conflicts")

    def has_permission(self, request, view) -> bool:
        if not request.user.is_authenticated:
            return False
        if view.action in self.READ_ACTIONS or request.method in SAFE_METHODS:
            return True
        if view.action in self.SUBMIT_ACTIONS:
            if can_write_all(request) or acting_partner(request) is not None:
                return True
            self.message = "Only partner users and partner managers can submit registrations."
            return False
        return super().has_permission(request, view)
