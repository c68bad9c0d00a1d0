from django.http import HttpRequest

from notifications.selectors import unread_count


def notifications(request: HttpRequest) -> dict:
    """`notifications_unread`: the signed-in user's unread count, counted (one query) only if a
    template shows it."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"notifications_unread": lambda: unread_count(user)}
