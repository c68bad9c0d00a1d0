"""Costs and targets: the costs a user records (`cost_entry_create`), the target of a metric for
a period and scope (`target_set`), and the costs the program books itself when money leaves it:
paid commission payouts (economics/) and reimbursed MDF claims (mdf/). Booked costs become cost
entries of their category and partner, so CAC and ROI include them; `source` tells them from
recorded and imported costs (docs/kpis.md, "Commissions and MDF in the KPIs"). One cost is booked
with `book_program_cost` (an MDF claim), a batch of them with `book_program_costs` (a payout batch:
one statement per table, with the trail entries a per-row save would write).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from auditlog.cid import get_cid
from auditlog.context import auditlog_disabled
from auditlog.diff import model_instance_diff
from auditlog.models import LogEntry
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import IntegrityError, router, transaction
from django.db.models.signals import pre_save

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
    _check_booking(source, [reference], date, [amount])
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
            CostEntryLink.objects.bulk_create(_links(entry, deal_ids, registration_ids))
    except IntegrityError:
        # A concurrent booking of the same reference committed first (the unique reference).
        return CostEntry.objects.get(reference=reference)
    return entry


# Rows per INSERT of a bulk booking (SQLite's bound on parameters splits them further).
BOOKING_BATCH = 2000


@dataclass(frozen=True)
class ProgramCost:
    """One cost of a bulk booking (book_program_costs): what varies from one cost to the next."""

    reference: str
    partner_id: int
    amount: Decimal
    note: str = ""
    deal_ids: tuple[int, ...] = ()
    registration_ids: tuple[int, ...] = ()


def book_program_costs(
    *,
    source: CostEntry.Source,
    category: CostEntry.Category,
    date: date,
    costs: Sequence[ProgramCost],
) -> list[CostEntry]:
    """Book many costs of one source, category and date as book_program_cost books one, with a
    statement per table however many there are: the costs, their links, their trail entries.

    Returns the entries this call booked, in the order given; a reference already booked is left
    as it is (not returned). Call it inside the transaction that pays, under a lock that keeps a
    second booking of the same references out (payout_batch_mark_paid holds the batch's row): a
    concurrent one would fail the unique reference and roll the whole payment back.
    """
    _check_booking(source, [cost.reference for cost in costs], date, [cost.amount for cost in costs])
    booked = set(
        CostEntry.objects.filter(reference__in=[cost.reference for cost in costs]).values_list(
            "reference", flat=True
        )
    )
    fresh = [cost for cost in costs if cost.reference not in booked]
    entries = [
        CostEntry(
            source=source,
            reference=cost.reference,
            date=date,
            amount=cost.amount,
            category=category,
            partner_id=cost.partner_id,
            note=cost.note,
        )
        for cost in fresh
    ]
    with transaction.atomic():
        CostEntry.objects.bulk_create(entries, batch_size=BOOKING_BATCH)
        CostEntryLink.objects.bulk_create(
            (
                link
                for cost, entry in zip(fresh, entries, strict=True)
                for link in _links(entry, cost.deal_ids, cost.registration_ids)
            ),
            batch_size=BOOKING_BATCH,
        )
        _log_created(entries)
    return entries


def _check_booking(source: CostEntry.Source, references: list[str], on: date, amounts: list[Decimal]) -> None:
    """Refuse a source the program does not book, a missing reference, an implausible date or
    amount (ValidationError with the first amount's messages: one bad payout refuses them all)."""
    if source not in BOOKED_SOURCES:
        raise ValueError(f"{source!r} is not a source the program books")
    if not all(references):
        raise ValueError("a booked cost needs its reference")
    errors: dict[str, list[str]] = {}
    if messages := next((found for amount in amounts if (found := amount_errors(amount))), None):
        errors["amount"] = messages
    if messages := date_errors(on):
        errors["date"] = messages
    if errors:
        raise ValidationError(errors)


def _links(entry: CostEntry, deal_ids: Iterable[int], registration_ids: Iterable[int]) -> list[CostEntryLink]:
    return [CostEntryLink(cost_entry=entry, deal_id=deal_id) for deal_id in sorted(set(deal_ids))] + [
        CostEntryLink(cost_entry=entry, registration_id=registration_id)
        for registration_id in sorted(set(registration_ids))
    ]


def _log_created(entries: list[CostEntry]) -> None:
    """The trail's "created" entry of each cost, as auditlog's post_save receiver writes it for a
    saved one (bulk_create sends no signals; docs/audit.md, "Writes that fire no signals")."""
    if not entries or auditlog_disabled.get():
        return
    content_type = ContentType.objects.get_for_model(CostEntry)
    using = router.db_for_write(LogEntry)
    cid = get_cid()
    log = []
    for entry in entries:
        log_entry = LogEntry(
            content_type=content_type,
            object_pk=entry.pk,
            object_id=entry.pk,
            object_repr=str(entry),
            action=LogEntry.Action.CREATE,
            changes=model_instance_diff(
                None, entry, use_json_for_changes=settings.AUDITLOG_STORE_JSON_CHANGES
            ),
            cid=cid,
        )
        # What a saved entry's pre_save receivers add: who acted and through what (audit.receivers).
        pre_save.send(sender=LogEntry, instance=log_entry, raw=False, using=using, update_fields=None)
        log.append(log_entry)
    LogEntry.objects.bulk_create(log, batch_size=BOOKING_BATCH)


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
