"""Reads for the inbox, the unread badge and the preferences page."""

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet

from notifications.kinds import KINDS, Audience, Kind
from notifications.models import Notification, NotificationPreference
from partners.access import is_staff_reader, partner_of


def unread_count(user: User | AnonymousUser) -> int:
    if not user.is_authenticated:
        return 0
    return Notification.objects.filter(user_id=user.pk, read_at__isnull=True).count()


def inbox(user: User) -> QuerySet[Notification]:
    """The user's notifications, unread first, newest first within each group."""
    unread = ExpressionWrapper(Q(read_at__isnull=True), output_field=BooleanField())
    return Notification.objects.filter(user_id=user.pk).order_by(unread.desc(), "-created_at", "-id")


def audiences_of(user: User | AnonymousUser) -> set[Audience]:
    if not user.is_authenticated:
        return set()
    audiences = {Audience.ANY_USER}
    if is_staff_reader(user):
        audiences.add(Audience.STAFF)
    if partner_of(user) is not None:
        audiences.add(Audience.PARTNER)
    return audiences


def has_inbox(user: User | AnonymousUser) -> bool:
    """Staff readers and partner users receive in-app notifications."""
    return bool(audiences_of(user) & {Audience.STAFF, Audience.PARTNER})


def kinds_for(user: User) -> list[Kind]:
    """The kinds this user may receive, in declaration order."""
    audiences = audiences_of(user)
    return [kind for kind in KINDS.values() if kind.audience in audiences]


def email_preferences(user: User) -> dict[str, bool]:
    """kind -> email on, for every kind the user may receive (on unless the user turned it off)."""
    stored = dict(NotificationPreference.objects.filter(user_id=user.pk).values_list("kind", "email_enabled"))
    return {kind.name: stored.get(kind.name, True) or not kind.optional for kind in kinds_for(user)}
