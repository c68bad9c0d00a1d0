"""What a locked-out login is told: our lockout page, or the API's error body, with when to retry.

django-axes counts failed password checks per (username, client address) and refuses the next
ones once AXES_FAILURE_LIMIT is reached, until AXES_COOLOFF_TIME has passed since the last counted
failure (failures while locked out are not counted, so the time shown stays true).
"""

import math
from datetime import datetime

from axes.conf import settings
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off, get_failure_limit
from axes.models import AccessAttempt
from django.db.models import Max
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

LOCKOUT_TEMPLATE = "registration/locked_out.html"
USERNAME_MAX_LENGTH = AccessAttempt._meta.get_field("username").max_length


def lockout_username(request: HttpRequest, credentials: dict | None = None) -> str | None:
    """AXES_USERNAME_CALLABLE: axes' own choice (the credentials, else the posted form), clipped to
    what its records hold. Django's login form does not enforce the username's length, and no
    account has a name that long, so clipping merges nothing real."""
    field = settings.AXES_USERNAME_FORM_FIELD
    submitted = credentials or getattr(request, "data", request.POST)  # DRF's request has .data
    username = submitted.get(field) if hasattr(submitted, "get") else None  # a JSON list has no fields
    if username is None:
        return None
    return str(username)[:USERNAME_MAX_LENGTH]


def lockout_retry_at(request: HttpRequest, credentials: dict | None = None) -> datetime | None:
    """When the locked (username, address) may try again; None when only an operator can unlock."""
    cool_off = get_cool_off(request)
    if cool_off is None:
        return None
    AxesProxyHandler.update_request(request)
    handler = AxesProxyHandler.get_implementation()
    last_failures = [
        attempts.aggregate(last=Max("attempt_time"))["last"]
        for attempts in handler.get_user_attempts(request, credentials)
    ]
    last_failure = max((moment for moment in last_failures if moment is not None), default=None)
    return (last_failure or timezone.now()) + cool_off


def seconds_until(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    return max(1, math.ceil((moment - timezone.now()).total_seconds()))


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE for the login forms (/login/, /admin/login/): our page, 429, Retry-After.

    The API's password check (HTTP Basic on the token endpoint) answers in the API's error shape
    instead: see api.authentication.LockoutAwareBasicAuthentication.
    """
    retry_at = lockout_retry_at(request, credentials)
    wait = seconds_until(retry_at)
    context = {
        "retry_at": retry_at,
        "wait_minutes": None if wait is None else math.ceil(wait / 60),
        "failure_limit": get_failure_limit(request, credentials),
    }
    response = render(request, LOCKOUT_TEMPLATE, context, status=429)
    if wait is not None:
        response["Retry-After"] = str(wait)
    return response
