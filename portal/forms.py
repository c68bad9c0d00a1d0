from decimal import Decimal

from django import forms
from django.utils import timezone

from deals.rules import normalise_domain
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
