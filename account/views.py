"""The signed-in user's own pages: login, notification preferences and the in-app inbox.

Password reset and change are Django's views (prm/urls.py) with our templates and reset form; the
reset request is rate limited here.
"""

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST
from django_ratelimit.core import get_usage

from account.forms import LoginForm, NotificationPreferencesForm, NotifyingPasswordResetForm
from notifications.selectors import email_preferences, has_inbox, inbox, kinds_for
from notifications.services import notification_preferences_set, notifications_mark_all_read
from ops.client_ip import client_ip_address
from prm.http import AuthenticatedRequest

logger = logging.getLogger(__name__)

INBOX_PAGE_SIZE = 25
RESET_EMAIL_RATE_GROUP = "account.password_reset.email"
RESET_CLIENT_RATE_GROUP = "account.password_reset.client"


def password_reset_limited(request: HttpRequest, email: str) -> bool:
    """Count this reset request against the entered address's and the client's allowances (both,
    every time); True when either is used up."""
    entered = email.strip().lower()
    by_email = get_usage(
        request,
        group=RESET_EMAIL_RATE_GROUP,
        key=lambda group, request: entered,
        rate=settings.PASSWORD_RESET_RATE_LIMIT,
        method="POST",
        increment=True,
    )
    by_client = get_usage(
        request,
        group=RESET_CLIENT_RATE_GROUP,
        key=lambda group, request: client_ip_address(request) or "unknown",
        rate=settings.PASSWORD_RESET_CLIENT_RATE_LIMIT,
        method="POST",
        increment=True,
    )
    return any(usage is not None and usage["should_limit"] for usage in (by_email, by_client))


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset request, sending our notification. Over the limit it answers exactly as usual
    (the done page) but sends nothing, so the limit tells nobody whether an address has an account."""

    form_class = NotifyingPasswordResetForm

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        if password_reset_limited(self.request, form.cleaned_data["email"]):
            logger.warning(
                "Password reset not sent: rate limit reached for %r from %s",
                form.cleaned_data["email"],
                client_ip_address(self.request) or "unknown",
            )
            return HttpResponseRedirect(self.get_success_url())
        return super().form_valid(form)


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    def get_context_data(self, **kwargs):
        return super().get_context_data(valid_hours=max(settings.PASSWORD_RESET_TIMEOUT // 3600, 1), **kwargs)


class LoginView(auth_views.LoginView):
    """Django's login (django-axes guards authenticate()); the session lasts SESSION_COOKIE_AGE when
    "remember me" is ticked, else until the browser closes."""

    form_class = LoginForm
    redirect_authenticated_user = True

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_valid(form)
        if form.cleaned_data.get("remember_me"):
            self.request.session.set_expiry(settings.SESSION_COOKIE_AGE)
        else:
            self.request.session.set_expiry(0)
        return response


@login_required
@require_http_methods(["GET", "POST"])
def notification_preferences(request: AuthenticatedRequest) -> HttpResponse:
    kinds = kinds_for(request.user)
    form = NotificationPreferencesForm(
        request.POST or None, kinds=kinds, initial_choices=email_preferences(request.user)
    )
    if request.method == "POST" and form.is_valid():
        notification_preferences_set(user=request.user, email_enabled=form.choices())
        messages.success(request, "Your notification settings are saved.")
        return redirect("account:notification_preferences")
    always_sent = [kind for kind in kinds if not kind.optional]
    return render(
        request,
        "account/notification_preferences.html",
        {"form": form, "always_sent": always_sent, "has_inbox": has_inbox(request.user)},
    )


@login_required
def notification_inbox(request: AuthenticatedRequest) -> HttpResponse:
    """Staff and partner users receive in-app notifications; anyone signed in sees their own (if any)."""
    page = Paginator(inbox(request.user), INBOX_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "account/inbox.html", {"page": page, "notifications": page.object_list})


@login_required
@require_POST
def notification_inbox_mark_read(request: AuthenticatedRequest) -> HttpResponse:
    marked = notifications_mark_all_read(user=request.user)
    messages.success(request, f"Marked {marked} notification{'s' if marked != 1 else ''} as read.")
    return redirect("account:notification_inbox")
