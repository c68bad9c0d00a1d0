"""Costs the program books itself when money leaves it: paid commission payouts (economics/) and
reimbursed MDF claims (mdf/). They become cost entries of their category and partner, so CAC and
ROI include them; `source` tells them from recorded and imported costs (docs/kpis.md,
"Commissions and MDF in the KPIs").
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from kpis.models import BOOKED_SOURCES, CostEntry, CostEntryLink
from partners.models import Partner
from program.validation import amount_errors, date_errors


def book_program_cost(
    *,
    source: CostEntry.Source,
    reference: str,
    date: date,
    amount: Decimal,
    category: CostEntry.Category,
    partner: Partner,
    note: str = "",
    deal_ids: Iterable[int] = (),
    registration_ids: Iterable[int] = (),
) -> CostEntry:
    """Book one cost for `reference` (`payout:<id>`, `mdf-claim:<id>`), with the deals and
    registrations it produced. Idempotent: booking the same reference again, in this transaction
    or a concurrent one, returns the entry already booked and changes nothing.

    Call it inside the transaction that pays or reimburses, so the cost exists exactly when the
    payment does.
    """
    if source not in BOOKED_SOURCES:
        raise ValueError(f"{source!r} is not a source the program books")
    if not reference:
        raise ValueError("a booked cost needs its reference")
    errors: dict[str, list[str]] = {}
    if messages := amount_errors(amount):
        errors["amount"] = messages
    if messages := date_errors(date):
        errors["date"] = messages
    if errors:
        raise ValidationError(errors)
    existing = CostEntry.objects.filter(reference=reference).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            entry = CostEntry.objects.create(
                source=source,
                reference=reference,
                date=date,
                amount=amount,
                category=category,
                partner=partner,
                note=note,
            )
            CostEntryLink.objects.bulk_create(
                [CostEntryLink(cost_entry=entry, deal_id=deal_id) for deal_id in sorted(set(deal_ids))]
                + [
                    CostEntryLink(cost_entry=entry, registration_id=registration_id)
                    for registration_id in sorted(set(registration_ids))
                ]
            )
    except IntegrityError:
        # A concurrent booking of the same reference committed first (the unique reference).
        return CostEntry.objects.get(reference=reference)
    return entry
