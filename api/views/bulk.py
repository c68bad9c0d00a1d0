"""POST /api/v1/{accounts,deals,registrations,touches}/bulk/: idempotent upserts by external id.

Validated by the CSV import itself (interchange.rows), all or nothing: a refusal lists every bad
row as `rows.<index>.<field>`. Partner managers and sales ops (those who may import).
"""

from typing import Any

from django.db import transaction
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from api.permissions import Importer
from api.schema import errors
from api.throttling import ScopedThrottle
from audit.services import import_record
from deals.models import Account, Deal, DealRegistration
from interchange import rows as bulk_rows
from prm.acting import Channel, acting

KEYED = {"accounts": Account, "deals": Deal, "registrations": DealRegistration}
_TEXT: dict[str, Any] = {"required": False, "allow_blank": True, "allow_null": True}
ROW_FIELDS: dict[str, dict[str, serializers.Field]] = {
    "accounts": {
        "external_id": serializers.CharField(),
        "name": serializers.CharField(),
        "domain": serializers.CharField(**_TEXT),
    },
    "deals": {
        "external_id": serializers.CharField(),
        "account": serializers.CharField(help_text="The account's external id in this system."),
        "amount": serializers.CharField(),
        "created_at": serializers.CharField(),
        "status": serializers.ChoiceField(choices=["open", "won", "lost"]),
        "name": serializers.CharField(**_TEXT),
        "closed_at": serializers.CharField(**_TEXT),
        "sourcing_partner": serializers.CharField(help_text="The partner's key in the program.", **_TEXT),
    },
    "registrations": {
        "external_id": serializers.CharField(),
        "partner": serializers.CharField(help_text="The partner's key in the program."),
        "account": serializers.CharField(help_text="The account's external id in this system."),
        "amount": serializers.CharField(),
        "submitted_at": serializers.CharField(),
        "status": serializers.ChoiceField(choices=["submitted", "approved", "rejected", "expired"]),
        "decided_at": serializers.CharField(**_TEXT),
        "deal": serializers.CharField(help_text="The deal's external id in this system.", **_TEXT),
    },
    "touches": {
        "deal": serializers.CharField(help_text="The deal's external id in this system."),
        "partner": serializers.CharField(help_text="The partner's key in the program."),
        "kind": serializers.ChoiceField(choices=["sourced", "co_sell", "referral", "influence"]),
        "touched_at": serializers.CharField(),
    },
}
EXAMPLES = {
    "accounts": {"external_id": "0015g00000XyZ", "name": "Acme Corp", "domain": "acme.com"},
    "deals": {
        "external_id": "0065g00000AbC",
        "account": "0015g00000XyZ",
        "amount": "18000.00",
        "created_at": "2026-03-10T12:00:00Z",
        "status": "open",
        "sourcing_partner": "P-0012",
    },
    "registrations": {
        "external_id": "reg-88",
        "partner": "P-0012",
        "account": "0015g00000XyZ",
        "amount": "18000.00",
        "submitted_at": "2026-03-01T09:00:00Z",
        "status": "submitted",
    },
    "touches": {"deal": "0065g00000AbC", "partner": "P-0012", "kind": "co_sell", "touched_at": "2026-03-12"},
}


class BulkResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    ids = serializers.DictField(
        child=serializers.IntegerField(), help_text="External id -> id in the program (touches: empty)."
    )


def bulk_schema(resource: str):
    name = resource.capitalize()
    request = inline_serializer(
        f"Bulk{name}Request",
        fields={
            "system": serializers.CharField(help_text="Your system's name, e.g. `salesforce` ([a-z0-9_-])."),
            "rows": serializers.ListField(
                child=inline_serializer(f"Bulk{name}Row", fields=ROW_FIELDS[resource]),
                max_length=bulk_rows.MAX_ROWS,
            ),
        },
    )
    return extend_schema(
        summary=f"Upsert {resource} in bulk by external id",
        description=(
            "Creates or updates every row by its `external_id` in `system` (touches: by the whole row), "
            "with the CSV import's validation, all or nothing: a 400 lists every bad row as "
            "`rows.<index>.<field>`. Values are written as in the CSV files (docs/interchange.md). "
            "Partner managers and sales ops."
        ),
        request=request,
        responses={200: BulkResultSerializer, **errors(400, 403, 429)},
        examples=[
            OpenApiExample(
                "Rows", value={"system": "salesforce", "rows": [EXAMPLES[resource]]}, request_only=True
            ),
            OpenApiExample(
                "Upserted",
                value={"created": 1, "updated": 0, "unchanged": 0, "ids": {"0015g00000XyZ": 2045}},
                response_only=True,
            ),
        ],
    )


def bulk_action(resource: str):
    """The `bulk` action of a resource's viewset."""

    @bulk_schema(resource)
    @action(
        detail=False,
        methods=["post"],
        url_path="bulk",
        permission_classes=[Importer],
        throttle_classes=[ScopedThrottle],
        throttle_scope="write",
        filter_backends=[],
        pagination_class=None,
    )
    def bulk(self, request):  # the name the router maps POST .../bulk/ to
        body = self.body_object()
        system, rows = body.get("system"), body.get("rows")
        if not isinstance(system, str):
            raise ValidationError({"system": ["is required: a string"]})
        try:
            with transaction.atomic(), acting(channel=Channel.IMPORT):
                result = bulk_rows.bulk_upsert(resource=resource, system=system, rows=rows)
                file = bulk_rows.RESOURCES[resource].file
                import_record(
                    source=f"api bulk {resource} ({system})", files={file: vars(result.files[file])}
                )
        except bulk_rows.BulkRefused as exc:
            raise ValidationError(exc.errors) from exc
        summary = result.files[bulk_rows.RESOURCES[resource].file]
        ids = {}
        if resource in KEYED:
            keys = {
                bulk_rows.external_key(system, str(row["external_id"])): str(row["external_id"])
                for row in rows
            }
            found = KEYED[resource].objects.filter(key__in=keys).values_list("key", "id")
            ids = {keys[key]: pk for key, pk in found}
        body = {
            "created": summary.created,
            "updated": summary.updated,
            "unchanged": summary.unchanged,
            "ids": ids,
        }
        return Response(BulkResultSerializer(body).data)

    return bulk
