"""Celery tasks of the commission ledger: thin wrappers around economics.ledger."""

from celery import shared_task

from economics.ledger import build_ledger
from kpis.tasks import PRODUCTION_SAFE


@shared_task(bind=False, **PRODUCTION_SAFE)
def build_commission_ledger(
    deal_ids: list[int] | None = None, registration_ids: list[int] | None = None
) -> int:
    """Nightly (beat) for everything, or after a deal is won/lost or a registration approved for
    its rows; returns the number of keys changed."""
    return build_ledger(deal_ids=deal_ids, registration_ids=registration_ids).keys_changed
