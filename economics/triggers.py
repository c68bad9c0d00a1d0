"""The ledger follows the domain's events: a deal won or lost, a registration approved."""

from __future__ import annotations

from django.db import transaction

from events.models import Event
from events.types import EventType

_DEAL_EVENTS = (EventType.DEAL_WON.value, EventType.DEAL_LOST.value)


def on_event(event: Event) -> None:
    """Inside the event's transaction: queue a ledger build for its row, after commit."""
    if event.type in _DEAL_EVENTS:
        kwargs = {"deal_ids": [int(event.object_id)], "registration_ids": []}
    elif event.type == EventType.REGISTRATION_APPROVED.value:
        kwargs = {"deal_ids": [], "registration_ids": [int(event.object_id)]}
    else:
        return
    from economics.tasks import build_commission_ledger

    transaction.on_commit(lambda: build_commission_ledger.apply_async(kwargs=kwargs), robust=True)
