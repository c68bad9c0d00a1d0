from decimal import Decimal
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib.auth.forms import UsernameField
from django.contrib.auth.password_validation import password_validators_help_text_html
from django.utils import timezone

from deals.rules import normalise_domain
from partners.applications import offered_join_sources
from partners.models import JoinSource, Partner, PartnerUser
from partners.profile import PROFILE_FIELDS
from program.fields import PlainDecimalFormField
from program.validation import validate_amount, validate_plausible_date


class DealRegistrationForm(forms.Form):
    """What a partner types to register a deal; the domain service makes the final checks."""

    account_name = forms.CharField(label="Customer name", max_length=200)
    domain = forms.CharField(
        label="Customer web domain",
        max_length=253,
        help_text="For example acme.com; used to find other claims on the same customer.",
    )
    amount = PlainDecimalFormField(
        label="Expected amount",
        max_digits=14,
        decimal_places=2,
        min_value=Decimal("0.01"),
        help_text="In the program currency, greater than 0.",
        error_messages={"min_value": "Enter an amount greater than 0."},
        validators=[validate_amount],
    )
    expected_close_date = forms.DateField(
        label="Expected close date",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Optional; not in the past.",
        validators=[validate_plausible_date],
    )
    notes = forms.CharField(label="Notes", required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def clean_domain(self) -> str:
        domain = normalise_domain(self.cleaned_data["domain"])
        if "." not in domain or " " in domain:
            raise forms.ValidationError("Enter the customer's web domain, like acme.com.")
        return domain

    def clean_expected_close_date(self):
        value = self.cleaned_data.get("expected_close_date")
        if value and value < timezone.localdate():
            raise forms.ValidationError("The expected close date cannot be in the past.")
        return value


class ApplicationForm(forms.Form):
    """The public application; the join source comes from the link unless the applicant picks one."""

    company = forms.CharField(label="Company name", max_length=200)
    partner_type = forms.ChoiceField(
        label="Partner type", choices=[("", "Choose a type")] + list(Partner.Type.choices)
    )
    contact_name = forms.CharField(label="Your name", max_length=200)
    contact_email = forms.EmailField(
        label="Your work email", help_text="We send the decision and your invitation here."
    )
    website = forms.URLField(
        label="Company website", max_length=300, required=False, assume_scheme="https", help_text="Optional."
    )
    pitch = forms.CharField(
        label="How will you sell us?",
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="Your customers, your market and how our product fits what you offer.",
    )
    join_source = forms.ModelChoiceField(
        label="How did you hear about us?",
        queryset=JoinSource.objects.none(),
        required=False,
        empty_label="Choose one (optional)",
    )
    # The honeypot: hidden from people (and from screen readers); bots that fill every field fill it.
    fax_number = forms.CharField(label="Leave this field empty", required=False)

    def __init__(self, *args, offer_sources: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if offer_sources and offered_join_sources().exists():
            join_source = cast("forms.ModelChoiceField[JoinSource]", self.fields["join_source"])
            join_source.queryset = offered_join_sources().order_by("name")
        else:
            del self.fields["join_source"]
        self.fields["fax_number"].widget.attrs.update({"tabindex": "-1", "autocomplete": "off"})

    @property
    def is_bot(self) -> bool:
        return bool((self.data.get(self.add_prefix("fax_number")) or "").strip())


class InvitationAcceptForm(forms.Form):
    username = UsernameField(
        label="Username", max_length=150, help_text="Letters, digits and @ . + - _ only; you log in with it."
    )
    password = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validators_help_text_html(),
    )
    password_confirmation = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("password") and data.get("password_confirmation") not in (None, data["password"]):
            self.add_error("password_confirmation", "The two passwords differ.")
        return data


class InviteForm(forms.Form):
    email = forms.EmailField(label="Email address")
    role = forms.ChoiceField(
        label="Role",
        choices=PartnerUser.Role.choices,
        initial=PartnerUser.Role.MEMBER,
        widget=forms.RadioSelect,
        help_text="Members register deals and see your figures; admins also manage users and the profile.",
    )


class ProfileForm(forms.Form):
    website = forms.URLField(label="Website", max_length=300, required=False, assume_scheme="https")
    description = forms.CharField(
        label="About the company", max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 4})
    )
    address = forms.CharField(
        label="Address", max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    phone = forms.CharField(label="Phone", max_length=40, required=False)
    contact_name = forms.CharField(label="Contact name", max_length=200, required=False)
    contact_email = forms.EmailField(label="Contact email", required=False)
    logo = forms.FileField(
        label="Logo",
        required=False,
        # A plain file input: removing the logo is a checkbox of its own.
        widget=forms.FileInput(attrs={"accept": "image/png,image/jpeg,image/webp"}),
    )
    remove_logo = forms.BooleanField(label="Remove the current logo", required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        side = settings.LOGO_MAX_DIMENSION
        megabytes = settings.LOGO_MAX_BYTES / (1024 * 1024)
        self.fields[
            "logo"
        ].help_text = f"PNG, JPEG or WebP, at most {megabytes:g} MB and {side}×{side} pixels."

    def details(self) -> dict[str, str]:
        return {name: self.cleaned_data.get(name) or "" for name in PROFILE_FIELDS}
