"""Costs and targets: the costs a user records (`cost_entry_create`), the target of a metric for
a period and scope (`target_set`), and the costs the program books itself when money leaves it:
paid commission payouts (economics/) and reimbursed MDF claims (mdf/). Booked costs become cost
entries of their category and partner, so CAC and ROI include them; `source` tells them from
recorded and imported costs (docs/kpis.md, "Commissions and MDF in the KPIs").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from kpis.metrics import TARGETABLE_METRICS
from kpis.models import BOOKED_SOURCES, CostEntry, CostEntryLink, Target
from kpis.periods import parse_period
from partners.models import JoinSource, Partner
from program.validation import amount_errors, date_errors, decimal_from_input, target_value_errors


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


def _decimal(
    value: object, field: str, errors: dict[str, list[str]], check: Callable[[Decimal], list[str]]
) -> Decimal | None:
    try:
        number = decimal_from_input(value)
    except ValueError as exc:
        errors[field] = [str(exc)]
        return None
    if messages := check(number):
        errors[field] = messages
    return number


def cost_entry_create(
    *,
    date: date,
    amount: Decimal | str,
    category: str,
    partner: Partner | None = None,
    join_source: JoinSource | None = None,
    note: str = "",
) -> CostEntry:
    errors: dict[str, list[str]] = {}
    value = _decimal(amount, "amount", errors, amount_errors)
    if category not in CostEntry.Category.values:
        errors["category"] = [f"must be one of {', '.join(CostEntry.Category.values)}"]
    if date is None:
        errors["date"] = ["is required"]
    elif messages := date_errors(date):
        errors["date"] = messages
    if errors or value is None:  # no value: its error is listed
        raise ValidationError(errors)
    with transaction.atomic():
        return CostEntry.objects.create(
            date=date, amount=value, category=category, partner=partner, join_source=join_source, note=note
        )


def target_set(
    *,
    metric: str,
    period: str,
    value: Decimal | str,
    partner: Partner | None = None,
    join_source: JoinSource | None = None,
) -> Target:
    """Create or replace the target of a metric for a period (`2026-03`, `2026-Q1`, `2026`) and scope."""
    errors: dict[str, list[str]] = {}
    if metric not in TARGETABLE_METRICS:
        errors["metric"] = ["unknown metric"]
    try:
        parsed = parse_period(period)
    except ValueError as exc:
        errors["period"] = [str(exc)]
        parsed = None
    amount = _decimal(value, "value", errors, target_value_errors)
    if partner is not None and join_source is not None:
        errors["join_source"] = ["a target names a partner or a join source, not both"]
    if errors or parsed is None or amount is None:  # neither: its error is listed
        raise ValidationError(errors)
    with transaction.atomic():
        target, _ = Target.objects.update_or_create(
            metric=metric,
            period=parsed.label,
            partner=partner,
            join_source=join_source,
            defaults={"grain": parsed.grain.value, "period_start": parsed.start, "value": amount},
        )
        return target
