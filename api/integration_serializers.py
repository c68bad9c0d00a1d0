"""Serializers of the integration endpoints: webhook endpoints, their delivery log, the change feed."""

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from events.types import SUBSCRIBABLE
from integrations.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

EVENT_TYPE_CHOICES = [t.value for t in SUBSCRIBABLE]


class WebhookEndpointSerializer(serializers.ModelSerializer):
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPE_CHOICES))
    owner: serializers.PrimaryKeyRelatedField[Any] = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "description",
            "event_types",
            "secret",
            "owner",
            "is_active",
            "disabled_at",
            "disabled_reason",
            "last_success_at",
            "consecutive_failures",
            "created_at",
        ]
        read_only_fields = fields


class WebhookEndpointInputSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=500, help_text="http(s) URL on a public address.")
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPE_CHOICES), min_length=1, max_length=50
    )


class WebhookEndpointUpdateSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=500, required=False)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPE_CHOICES), min_length=1, max_length=50, required=False
    )
    is_active = serializers.BooleanField(required=False, help_text="true re-enables a disabled endpoint.")


class WebhookAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = [
            "number",
            "started_at",
            "succeeded",
            "status_code",
            "latency_ms",
            "response_excerpt",
            "error",
        ]
        read_only_fields = fields


class WebhookDeliverySerializer(serializers.ModelSerializer):
    event_id = serializers.UUIDField(source="event.uuid", read_only=True)
    event_type = serializers.CharField(source="event.type", read_only=True)
    attempt_log = WebhookAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "status",
            "attempts",
            "created_at",
            "next_attempt_at",
            "delivered_at",
            "last_status_code",
            "last_error",
            "attempt_log",
        ]
        read_only_fields = fields


class ChangeSerializer(serializers.Serializer):
    resource = serializers.CharField(help_text="The API resource: deals, registrations, accounts, …")
    id = serializers.IntegerField(source="object_id")
    action = serializers.ChoiceField(choices=["created", "updated", "deleted"])
    changed_at = serializers.DateTimeField()
    url = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.STR)
    def get_url(self, change) -> str | None:
        if change.action == "deleted":
            return None
        return f"/api/v1/{change.resource}/{change.object_id}/"


class ChangePageSerializer(serializers.Serializer):
    results = ChangeSerializer(many=True)
    next_cursor = serializers.CharField(help_text="Pass as `after` to read on; the same when nothing is new.")
    has_more = serializers.BooleanField(help_text="More changes are ready now: read again at once.")


class ChangeQuerySerializer(serializers.Serializer):
    after = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=100)
