"""record_event(): the one way a service records a domain event, in its own transaction.

Consumers register a handler (`register_consumer`) when their app is ready; each handler is called
with the new event inside the same transaction (integrations writes its webhook deliveries there,
as an outbox) and must push anything that leaves the process to `transaction.on_commit`.
"""

import json
from collections.abc import Callable, Iterable
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone

from events.models import Event
from events.types import EventType
from prm import acting

Consumer = Callable[[Event], None]
_consumers: list[Consumer] = []
# Fields never copied into an event: credentials and files.
_LEFT_OUT = frozenset({"password", "secret_hash", "token_hash", "secret"})


def register_consumer(consumer: Consumer) -> None:
    """Call `consumer(event)` inside the transaction of every event recorded from now on."""
    if consumer not in _consumers:
        _consumers.append(consumer)


def snapshot(obj: models.Model, fields: Iterable[str] | None = None) -> dict[str, Any]:
    """The object's own columns as JSON values (foreign keys as `<name>_id`, money as strings)."""
    values = {}
    for field in obj._meta.concrete_fields:
        if field.name in _LEFT_OUT or (fields is not None and field.name not in fields):
            continue
        if isinstance(field, models.FileField):
            values[field.name] = str(getattr(obj, field.attname) or "")
            continue
        values[field.attname] = field.value_from_object(obj)
    return json.loads(json.dumps(values, cls=DjangoJSONEncoder))


def record_event(
    *,
    type: EventType,  # noqa: A002 - an event's type is called type everywhere (payload, docs)
    obj: models.Model,
    partner_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> Event:
    """Record that `type` happened to `obj`, in the caller's transaction.

    `after` defaults to a snapshot of the object as it is now; `before` holds the fields that
    changed, as they were. Actor, channel and correlation id come from prm.acting.
    """
    context = acting.current()
    actor = context.resolved_actor()
    with transaction.atomic():
        event = Event.objects.create(
            type=EventType(type).value,
            occurred_at=timezone.now(),
            actor_label=actor.label[:200],
            actor=actor.user if actor.user is not None and actor.user.pk else None,
            channel=context.resolved_channel().value,
            correlation_id=context.correlation_id or "",
            object_type=obj._meta.label_lower,
            object_id=str(obj.pk),
            partner_id=partner_id,
            before=json.loads(json.dumps(before or {}, cls=DjangoJSONEncoder)),
            after=snapshot(obj) if after is None else json.loads(json.dumps(after, cls=DjangoJSONEncoder)),
        )
        for consumer in _consumers:
            consumer(event)
    return event
