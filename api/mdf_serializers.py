"""Serializers of the MDF endpoints (api/views/mdf.py): budgets with what they have left, requests,
claims with their proof files, and the inputs of each write (docs/mdf.md)."""

from typing import Any

from django.urls import reverse
from rest_framework import serializers

from api.fields import MoneyField, PlausibleDateField
from mdf.models import MdfBudget, MdfClaim, MdfProofFile, MdfRequest
from mdf.selectors import BudgetFigures, figures_of
from partners.models import Partner

MONEY = {"max_digits": 14, "decimal_places": 2, "read_only": True}


class MdfBudgetSerializer(serializers.ModelSerializer):
    partner_name = serializers.CharField(source="partner.name", read_only=True, default=None, allow_null=True)
    pending = serializers.SerializerMethodField(help_text="Asked by requests awaiting a decision.")
    approved_open = serializers.SerializerMethodField(
        help_text="Approved, not yet covered by an approved claim."
    )
    claims_approved = serializers.SerializerMethodField(help_text="Approved claims not yet reimbursed.")
    reimbursed = serializers.SerializerMethodField()
    expired = serializers.SerializerMethodField(help_text="Released by requests that expired unclaimed.")
    reserved = serializers.SerializerMethodField(
        help_text="pending + approved_open + claims_approved + reimbursed"
    )
    remaining = serializers.SerializerMethodField(help_text="amount - reserved")

    class Meta:
        model = MdfBudget
        fields = [
            "id",
            "quarter",
            "starts_on",
            "ends_on",
            "partner",
            "partner_name",
            "tier",
            "amount",
            "note",
            "pending",
            "approved_open",
            "claims_approved",
            "reimbursed",
            "expired",
            "reserved",
            "remaining",
            "updated_at",
        ]

    def _figures(self, budget: MdfBudget) -> BudgetFigures:
        known = self.context.get("figures", {})
        return known.get(budget.pk) or figures_of(budget)

    def _amount(self, budget: MdfBudget, name: str) -> str:
        return f"{getattr(self._figures(budget), name):.2f}"

    def get_pending(self, budget: MdfBudget) -> str:
        return self._amount(budget, "pending")

    def get_approved_open(self, budget: MdfBudget) -> str:
        return self._amount(budget, "approved_open")

    def get_claims_approved(self, budget: MdfBudget) -> str:
        return self._amount(budget, "claims_approved")

    def get_reimbursed(self, budget: MdfBudget) -> str:
        return self._amount(budget, "reimbursed")

    def get_expired(self, budget: MdfBudget) -> str:
        return self._amount(budget, "expired")

    def get_reserved(self, budget: MdfBudget) -> str:
        return self._amount(budget, "reserved")

    def get_remaining(self, budget: MdfBudget) -> str:
        return self._amount(budget, "remaining")


class MdfBudgetInputSerializer(serializers.Serializer):
    quarter = serializers.RegexField(
        r"^\d{4}-Q[1-4]$", max_length=7, help_text="2026-Q3 (a calendar quarter)"
    )
    partner = serializers.PrimaryKeyRelatedField(
        queryset=Partner.objects.all(), required=False, allow_null=True, default=None
    )
    tier = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    amount = MoneyField()
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class MdfRequestSerializer(serializers.ModelSerializer):
    partner_name = serializers.CharField(source="partner.name", read_only=True)
    quarter = serializers.CharField(source="budget.quarter", read_only=True)

    class Meta:
        model = MdfRequest
        fields = [
            "id",
            "partner",
            "partner_name",
            "budget",
            "quarter",
            "activity_type",
            "title",
            "description",
            "starts_on",
            "ends_on",
            "amount_requested",
            "expected_leads",
            "status",
            "submitted_at",
            "amount_approved",
            "decided_at",
            "decision_comment",
            "claim_deadline",
            "expired_at",
        ]
        read_only_fields = fields


class MdfRequestInputSerializer(serializers.Serializer):
    activity_type = serializers.ChoiceField(choices=MdfRequest.ActivityType.choices)
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=4000, required=False, allow_blank=True, default="")
    starts_on = PlausibleDateField()
    ends_on = PlausibleDateField()
    amount_requested = MoneyField(help_text="The planned cost asked for.")
    expected_leads = serializers.IntegerField(min_value=0, max_value=1_000_000, required=False, default=0)


class MdfRequestApproveSerializer(serializers.Serializer):
    amount_approved = MoneyField(
        required=False, allow_null=True, default=None, help_text="Default: all requested."
    )
    claim_deadline = PlausibleDateField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Default: MDF_CLAIM_DAYS after the activity ends.",
    )
    comment = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class MdfCommentSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=2000, help_text="Required: the partner reads it.")


class MdfDeadlineSerializer(serializers.Serializer):
    claim_deadline = PlausibleDateField()


class MdfProofFileSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(
        help_text="Download it signed in (staff or the partner's admins)."
    )

    class Meta:
        model = MdfProofFile
        fields = ["id", "claim", "name", "content_type", "size", "uploaded_at", "url"]
        read_only_fields = fields

    def get_url(self, proof: MdfProofFile) -> str:
        return reverse("mdf_proof_file", args=[proof.pk])


class MdfClaimSerializer(serializers.ModelSerializer):
    partner = serializers.IntegerField(source="request.partner_id", read_only=True)
    files = MdfProofFileSerializer(many=True, read_only=True)

    class Meta:
        model = MdfClaim
        fields = [
            "id",
            "request",
            "partner",
            "amount_claimed",
            "leads",
            "summary",
            "registrations",
            "deals",
            "status",
            "submitted_at",
            "amount_approved",
            "decided_at",
            "decision_comment",
            "reimbursed_on",
            "cost_entry",
            "files",
        ]
        read_only_fields = fields


class MdfClaimInputSerializer(serializers.Serializer):
    request = serializers.IntegerField(
        min_value=1, max_value=2**63 - 1, help_text="The approved request claimed."
    )
    amount_claimed = MoneyField(help_text="At most the request's approved amount.")
    leads = serializers.IntegerField(min_value=0, max_value=1_000_000, required=False, default=0)
    summary = serializers.CharField(max_length=4000, required=False, allow_blank=True, default="")
    registrations = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        default=list,
        max_length=500,
    )
    deals = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        default=list,
        max_length=500,
    )


class MdfClaimApproveSerializer(serializers.Serializer):
    amount_approved = MoneyField(
        required=False, allow_null=True, default=None, help_text="Less than claimed for a partial approval."
    )
    comment = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class MdfProofUploadSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="PDF, PNG, JPEG or WebP, checked by its content; MDF_PROOF_MAX_BYTES at most."
    )

    def to_representation(self, instance: Any) -> Any:  # pragma: no cover - input only
        return {}
