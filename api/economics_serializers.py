"""The commission plans and ledger entries as the API shows and accepts them (api/views/economics.py)."""

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from api.fields import MoneyField, PlausibleDateField
from economics.models import Basis, CommissionEntry, CommissionPlan, CommissionRule
from partners.models import JoinSource, Partner


class CommissionRuleSerializer(serializers.ModelSerializer):
    class Meta:
        model = CommissionRule
        fields = ["id", "key", "kind", "rate", "amount", "cap"]


class CommissionPlanSerializer(serializers.ModelSerializer):
    rules = CommissionRuleSerializer(many=True, read_only=True)

    class Meta:
        model = CommissionPlan
        fields = [
            "id",
            "key",
            "name",
            "description",
            "priority",
            "effective_from",
            "effective_to",
            "is_active",
            "tiers",
            "partner_types",
            "join_sources",
            "partners",
            "rules",
            "created_at",
            "updated_at",
        ]


class CommissionRuleInputSerializer(serializers.Serializer):
    id = serializers.IntegerField(required=False, min_value=1, help_text="An existing rule of this plan.")
    kind = serializers.ChoiceField(choices=CommissionRule.Kind.choices)
    rate = serializers.DecimalField(
        max_digits=7,
        decimal_places=4,
        min_value=Decimal("0.0001"),
        max_value=Decimal("100"),
        required=False,
        allow_null=True,
        help_text="Percent (10 = 10 %), for the percentage kinds.",
    )
    amount = MoneyField(required=False, allow_null=True, help_text="For the fixed-amount kinds.")
    cap = MoneyField(required=False, allow_null=True, help_text="The most one entry of this rule earns.")


class CommissionPlanInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    priority = serializers.IntegerField(required=False, min_value=-1000, max_value=1000)
    effective_from = PlausibleDateField()
    effective_to = PlausibleDateField(required=False, allow_null=True)
    is_active = serializers.BooleanField(required=False)
    tiers = serializers.ListField(child=serializers.CharField(max_length=50), required=False, max_length=100)
    partner_types = serializers.ListField(
        child=serializers.ChoiceField(choices=Partner.Type.choices), required=False, max_length=20
    )
    join_sources = serializers.PrimaryKeyRelatedField(
        many=True, queryset=JoinSource.objects.all(), required=False
    )
    partners = serializers.PrimaryKeyRelatedField(many=True, queryset=Partner.objects.all(), required=False)
    rules = CommissionRuleInputSerializer(many=True, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("effective_from"), attrs.get("effective_to")
        if start and end and end < start:
            raise serializers.ValidationError({"effective_to": ["must be on or after effective_from"]})
        return attrs


class CommissionPlanUpdateSerializer(CommissionPlanInputSerializer):
    name = serializers.CharField(max_length=200, required=False)
    effective_from = PlausibleDateField(required=False)


class CommissionEntrySerializer(serializers.ModelSerializer):
    partner_name = serializers.CharField(source="partner.name", read_only=True)
    plan = serializers.IntegerField(source="rule.plan_id", read_only=True)
    rule_kind = serializers.CharField(source="rule.kind", read_only=True)

    class Meta:
        model = CommissionEntry
        fields = [
            "id",
            "partner",
            "partner_name",
            "plan",
            "rule",
            "rule_kind",
            "basis",
            "kind",
            "sequence",
            "deal",
            "registration",
            "amount",
            "base_amount",
            "rate",
            "fixed_amount",
            "cap",
            "earned_at",
            "hold_until",
            "status",
            "decided_at",
            "decided_by",
            "decline_reason",
            "paid_at",
            "created_at",
        ]


class CommissionEntryQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=CommissionEntry.Status.choices, required=False)
    kind = serializers.ChoiceField(choices=CommissionEntry.Kind.choices, required=False)
    basis = serializers.ChoiceField(choices=Basis.choices, required=False)
    partner = serializers.IntegerField(required=False, min_value=1, max_value=2**62)
    plan = serializers.IntegerField(required=False, min_value=1, max_value=2**62)
    earned_from = PlausibleDateField(required=False)
    earned_to = PlausibleDateField(required=False)
    hold = serializers.ChoiceField(
        choices=[("ready", "Pending and past its hold"), ("held", "Pending, still held")], required=False
    )


class ReviewInputSerializer(serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**62), min_length=1, max_length=5000
    )
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class ReviewResultSerializer(serializers.Serializer):
    decided = serializers.ListField(child=serializers.IntegerField())
    on_hold = serializers.ListField(child=serializers.IntegerField())
    not_pending = serializers.ListField(child=serializers.IntegerField())
    not_found = serializers.ListField(child=serializers.IntegerField())
