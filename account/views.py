"""The signed-in user's own pages: login, notification preferences and the in-app inbox.

Password reset and change are Django's views (prm/urls.py) with our templates and reset form.
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from account.forms import LoginForm, NotificationPreferencesForm
from notifications.selectors import email_preferences, has_inbox, inbox, kinds_for
from notifications.services import notification_preferences_set, notifications_mark_all_read

INBOX_PAGE_SIZE = 25


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    def get_context_data(self, **kwargs):
        return super().get_context_data(valid_hours=max(settings.PASSWORD_RESET_TIMEOUT // 3600, 1), **kwargs)


class LoginView(auth_views.LoginView):
    """Django's login (django-axes guards authenticate()); the session lasts SESSION_COOKIE_AGE when
    "remember me" is ticked, else until the browser closes."""

    form_class = LoginForm
    redirect_authenticated_user = True

    def form_valid(self, form: LoginForm) -> HttpResponse:
        response = super().form_valid(form)
        if form.cleaned_data.get("remember_me"):
            self.request.session.set_expiry(settings.SESSION_COOKIE_AGE)
        else:
            self.request.session.set_expiry(0)
        return response


@login_required
@require_http_methods(["GET", "POST"])
def notification_preferences(request: HttpRequest) -> HttpResponse:
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
def notification_inbox(request: HttpRequest) -> HttpResponse:
    """Staff and partner users receive in-app notifications; anyone signed in sees their own (if any)."""
    page = Paginator(inbox(request.user), INBOX_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "account/inbox.html", {"page": page, "notifications": page.object_list})


@login_required
@require_POST
def notification_inbox_mark_read(request: HttpRequest) -> HttpResponse:
    marked = notifications_mark_all_read(user=request.user)
    messages.success(request, f"Marked {marked} notification{'s' if marked != 1 else ''} as read.")
    return redirect("account:notification_inbox")
