"""The JSON body of a webhook: {"id", "type", "time", "data"}; the same bytes on every attempt."""

import json

from events.models import Event

# The object's type as receivers read it (the model's label is an implementation detail).
OBJECT_TYPES = {
    "partners.partner": "partner",
    "deals.dealregistration": "registration",
    "deals.deal": "deal",
    "kpis.kpirun": "kpi_run",
    "mdf.mdfrequest": "mdf_request",
    "mdf.mdfclaim": "mdf_claim",
    "integrations.webhookendpoint": "webhook_endpoint",
}


def event_body(event: Event) -> dict:
    return {
        "id": str(event.uuid),
        "type": event.type,
        "time": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "data": {
            "object": {
                "type": OBJECT_TYPES.get(event.object_type, event.object_type),
                "id": int(event.object_id) if event.object_id.isdigit() else event.object_id,
            },
            "before": event.before,
            "after": event.after,
            "actor": event.actor_label,
            "channel": event.channel,
        },
    }


def event_bytes(event: Event) -> bytes:
    return json.dumps(event_body(event), sort_keys=True, separators=(",", ":")).encode()
