"""Serializers of the payout endpoints (api/views/payouts.py)."""

from __future__ import annotations

from datetime import date
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from economics.models import CommissionEntry
from economics.payout_models import Payout, PayoutBatch, PayoutLine
from program.validation import date_errors


class PayoutBatchSerializer(serializers.ModelSerializer):
    month = serializers.CharField(source="period", read_only=True, help_text="YYYY-MM")
    amount = serializers.DecimalField(
        max_digits=14, decimal_places=2, read_only=True, help_text="Paid (or payable) in the batch."
    )
    carried_out = serializers.DecimalField(
        max_digits=14, decimal_places=2, read_only=True, help_text="Carried to the next month."
    )
    payouts = serializers.IntegerField(
        source="payout_count", read_only=True, help_text="Partners in the batch."
    )

    class Meta:
        model = PayoutBatch
        fields = [
            "id",
            "month",
            "status",
            "currency",
            "minimum_payout",
            "amount",
            "carried_out",
            "payouts",
            "created_at",
            "paid_on",
            "paid_at",
        ]


class PayoutBatchCreateSerializer(serializers.Serializer):
    month = serializers.RegexField(
        r"^[0-9]{4}-(0[1-9]|1[0-2])$", max_length=7, help_text="The month to settle, YYYY-MM."
    )

    def validate_month(self, value: str) -> date:
        year, month = value.split("-")
        if int(year) < 1:
            raise serializers.ValidationError("not a month")
        first = date(int(year), int(month), 1)
        if messages := date_errors(first):
            raise serializers.ValidationError(messages)
        return first


class MarkPaidSerializer(serializers.Serializer):
    paid_on = serializers.DateField(help_text="The payment date; each payout is booked as a cost on it.")


class PayoutSerializer(serializers.ModelSerializer):
    month = serializers.CharField(source="batch.period", read_only=True, help_text="YYYY-MM")
    currency = serializers.CharField(source="batch.currency", read_only=True)
    partner_name = serializers.CharField(source="partner.name", read_only=True)
    reference = serializers.CharField(read_only=True, help_text="The payment reference for accounts payable.")

    class Meta:
        model = Payout
        fields = [
            "id",
            "batch",
            "month",
            "partner",
            "partner_name",
            "currency",
            "carried_in",
            "entries_total",
            "balance",
            "amount",
            "carried_out",
            "status",
            "reference",
            "paid_at",
        ]


class StatementLineSerializer(serializers.ModelSerializer):
    entry = serializers.IntegerField(source="entry_id", read_only=True)
    kind = serializers.ChoiceField(source="entry.kind", choices=CommissionEntry.Kind.choices, read_only=True)
    basis = serializers.CharField(source="entry.basis", read_only=True)
    earned_at = serializers.DateTimeField(source="entry.earned_at", read_only=True)
    deal = serializers.IntegerField(source="entry.deal_id", read_only=True, allow_null=True)
    registration = serializers.IntegerField(source="entry.registration_id", read_only=True, allow_null=True)
    status = serializers.ChoiceField(
        source="entry.status", choices=CommissionEntry.Status.choices, read_only=True
    )
    amount = serializers.DecimalField(source="entry.amount", max_digits=14, decimal_places=2, read_only=True)

    class Meta:
        model = PayoutLine
        fields = ["entry", "kind", "basis", "earned_at", "deal", "registration", "status", "amount"]


class StatementSerializer(PayoutSerializer):
    lines = serializers.SerializerMethodField()

    class Meta(PayoutSerializer.Meta):
        fields = [*PayoutSerializer.Meta.fields, "lines"]

    @extend_schema_field(StatementLineSerializer(many=True))
    def get_lines(self, payout: Payout) -> list[dict[str, Any]]:
        lines = payout.lines.select_related("entry").order_by("entry__earned_at", "entry_id")
        return list(StatementLineSerializer(lines, many=True).data)
