from typing import Any

from django import forms

from kpis.metrics import Grain
from partners.models import Partner
from partners.selectors import partner_by_reference

GRAIN_CHOICES = [(Grain.MONTH.value, "Month"), (Grain.QUARTER.value, "Quarter"), (Grain.YEAR.value, "Year")]


_OBJECT_ID = forms.IntegerField(min_value=1, max_value=2**63 - 1)


def object_id(value: str | None) -> int | None:
    """A row id posted by a form (`registration=42`), or None when it is not one."""
    try:
        return _OBJECT_ID.clean(value)
    except forms.ValidationError:
        return None


class PeriodForm(forms.Form):
    """The period picker every dashboard shares (GET parameters `grain` and `period`)."""

    grain = forms.ChoiceField(choices=GRAIN_CHOICES, initial=Grain.MONTH.value, required=False)
    period = forms.CharField(
        required=False,
        max_length=7,
        help_text="2026-03, 2026-Q1 or 2026; empty for the latest published period.",
    )

    def grain_value(self) -> str:
        if self.is_valid() and self.cleaned_data.get("grain"):
            return self.cleaned_data["grain"]
        return Grain.MONTH.value

    def period_value(self) -> str:
        return self.cleaned_data.get("period", "") if self.is_valid() else ""


class RegistrationDecisionForm(forms.Form):
    """Approve, reject or override one pending registration; the domain service validates the rest."""

    DECISIONS = [("approve", "Approve"), ("reject", "Reject"), ("override", "Approve despite conflict")]

    decision = forms.ChoiceField(choices=DECISIONS, widget=forms.RadioSelect)
    reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required to reject; kept on the registration either way.",
    )
    override_reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Override reason",
        help_text="Required to approve a registration that conflicts with another partner's claim.",
    )

    def __init__(self, *args, registration_id: int, **kwargs) -> None:
        # Each queue row has its own form; prefixing keeps field ids unique on the page.
        kwargs.setdefault("prefix", f"r{registration_id}")
        super().__init__(*args, **kwargs)

    def clean(self):
        data = super().clean()
        if data.get("decision") == "override" and not (data.get("override_reason") or "").strip():
            self.add_error("override_reason", "Say why the conflict is overridden.")
        if data.get("decision") == "reject" and not (data.get("reason") or "").strip():
            self.add_error("reason", "Say why the registration is rejected.")
        return data


class ApplicationDecisionForm(forms.Form):
    """Approve or reject one application; a rejection needs the reason the applicant will read."""

    DECISIONS = [("approve", "Approve and invite the contact"), ("reject", "Reject")]

    decision = forms.ChoiceField(choices=DECISIONS, widget=forms.RadioSelect)
    reason = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Reason for a rejection",
        help_text="Required to reject; the applicant reads it.",
    )

    def __init__(self, *args, application_id: int, **kwargs) -> None:
        kwargs.setdefault("prefix", f"a{application_id}")
        super().__init__(*args, **kwargs)

    def clean(self):
        data = super().clean()
        if data.get("decision") == "reject" and not (data.get("reason") or "").strip():
            self.add_error("reason", "Say why the application is rejected; the applicant reads it.")
        return data


class StaffInviteForm(forms.Form):
    """A partner manager invites a partner admin (who then invites the partner's members)."""

    email = forms.EmailField(label="Email of the new partner admin")


class PartnerReferenceField(forms.CharField):
    """A partner filter typed as its key, name or id (a program has thousands of partners: a list
    of them all is too long to render or to pick from); cleans to the Partner, or None when empty."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", 200)
        kwargs.setdefault("help_text", "Its key, name or id")
        super().__init__(**kwargs)

    def clean(self, value: Any) -> Partner | None:
        text = (super().clean(value) or "").strip()
        if not text:
            return None
        found = partner_by_reference(text)
        if found is None:
            raise forms.ValidationError("No partner has this key, name or id.")
        return found
