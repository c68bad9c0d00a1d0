"""Forms of the account pages: login with "remember me", password reset by notification, preferences."""

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.urls import reverse

from notifications.kinds import Kind
from notifications.services import absolute_url, notify


class LoginForm(AuthenticationForm):
    remember_me = forms.BooleanField(
        required=False,
        initial=False,
        label="Remember me",
        help_text="Stay signed in on this device for two weeks. Leave it off on a shared computer.",
    )


class NotifyingPasswordResetForm(PasswordResetForm):
    """Django's reset form, whose mail is a `password_reset` notification queued after commit."""

    def send_mail(
        self,
        subject_template_name: str,
        email_template_name: str,
        context: dict[str, Any],
        from_email: str | None,
        to_email: str,
        html_email_template_name: str | None = None,
    ) -> None:
        path = reverse("password_reset_confirm", kwargs={"uidb64": context["uid"], "token": context["token"]})
        notify(
            kind="password_reset",
            emails=[to_email],
            context={
                "user": context["user"],
                "reset_url": absolute_url(path),
                "valid_hours": max(settings.PASSWORD_RESET_TIMEOUT // 3600, 1),
            },
        )


class NotificationPreferencesForm(forms.Form):
    """One "email me" checkbox per kind the user may turn off."""

    def __init__(self, *args: Any, kinds: list[Kind], initial_choices: dict[str, bool], **kwargs: Any):
        super().__init__(*args, **kwargs)
        for kind in kinds:
            if kind.optional:
                self.fields[kind.name] = forms.BooleanField(
                    required=False,
                    label=kind.label,
                    help_text=kind.description,
                    initial=initial_choices.get(kind.name, True),
                )

    def choices(self) -> dict[str, bool]:
        return {name: bool(self.cleaned_data.get(name)) for name in self.fields}
