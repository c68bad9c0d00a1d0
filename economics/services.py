"""Writes of the economics app: plans and rules, and the monthly review of the ledger.

Every change records a domain event in its transaction (events/types.py); the ledger build itself
is economics.ledger.build_ledger.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from economics.models import CommissionEntry, CommissionPlan, CommissionRule, CommissionSettings
from events.services import record_event
from events.types import EventType
from partners.models import JoinSource, Partner

User = AbstractBaseUser | AnonymousUser


def plan_errors(plan: CommissionPlan) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if plan.effective_to is not None and plan.effective_from and plan.effective_to < plan.effective_from:
        errors["effective_to"] = ["must be on or after effective_from"]
    if not isinstance(plan.tiers, list) or not all(isinstance(t, str) and t for t in plan.tiers):
        errors["tiers"] = ["must be a list of tier names"]
    types = plan.partner_types
    if not isinstance(types, list) or not all(t in Partner.Type.values for t in types):
        errors["partner_types"] = [f"each must be one of {', '.join(Partner.Type.values)}"]
    return errors


def rule_errors(rule: CommissionRule) -> dict[str, list[str]]:
    """A percent rule has a rate and no amount; a fixed rule an amount and no rate."""
    errors: dict[str, list[str]] = {}
    if rule.kind in CommissionRule.PERCENT_KINDS:
        if rule.rate is None:
            errors["rate"] = ["a percentage rule needs its rate (percent, e.g. 10 for 10 %)"]
        if rule.amount is not None:
            errors["amount"] = ["a percentage rule has no fixed amount"]
    elif rule.kind in CommissionRule.Kind.values:
        if rule.amount is None:
            errors["amount"] = ["a fixed-amount rule needs its amount"]
        if rule.rate is not None:
            errors["rate"] = ["a fixed-amount rule has no rate"]
    if rule.pk is not None and rule.entries.exists():
        was = CommissionRule.objects.get(pk=rule.pk)
        if was.kind != rule.kind or was.plan_id != rule.plan_id:
            errors["kind"] = ["a rule with ledger entries keeps its kind and plan; add a new rule instead"]
    return errors


def _clean(obj: CommissionPlan | CommissionRule | CommissionSettings, errors: dict[str, list[str]]) -> None:
    try:
        obj.full_clean(validate_constraints=False)
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            errors.setdefault(name, []).extend(messages)
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def plan_save(
    *,
    plan: CommissionPlan,
    join_sources: Iterable[JoinSource] | None = None,
    partners: Iterable[Partner] | None = None,
    rules: list[dict[str, Any]] | None = None,
) -> CommissionPlan:
    """Create or change a plan and, when given, the join sources and partners it names and its
    rules (`rules`: the whole list; an item with an `id` changes that rule, one without adds a
    rule, a rule left out is deleted, which a rule with ledger entries refuses). Entries already
    approved, paid or declined keep their terms (docs/economics.md)."""
    before = {} if plan.pk is None else _plan_state(CommissionPlan.objects.get(pk=plan.pk))
    _clean(plan, plan_errors(plan))
    plan.save()
    if join_sources is not None:
        plan.join_sources.set(list(join_sources))
    if partners is not None:
        plan.partners.set(list(partners))
    if rules is not None:
        _replace_rules(plan, rules)
    record_event(type=EventType.COMMISSION_PLAN_SAVED, obj=plan, before=before, after=_plan_state(plan))
    return plan


def _replace_rules(plan: CommissionPlan, items: list[dict[str, Any]]) -> None:
    existing = {r.pk: r for r in plan.rules.all()}
    errors: list[str] = []
    keep: set[int] = set()
    for number, item in enumerate(items, start=1):
        rule_id = item.get("id")
        if rule_id is not None and rule_id not in existing:
            errors.append(f"rule {number}: no rule {rule_id} in this plan")
            continue
        rule = existing[rule_id] if rule_id is not None else CommissionRule(plan=plan)
        for name in ("kind", "rate", "amount", "cap"):
            setattr(rule, name, item.get(name))
        if item.get("key"):
            rule.key = item["key"]
        try:
            _clean(rule, rule_errors(rule))
        except ValidationError as exc:
            errors += [f"rule {number}: {name}: {m}" for name, ms in exc.message_dict.items() for m in ms]
            continue
        rule.save()
        keep.add(rule.pk)
    for rule_id, rule in existing.items():
        if rule_id not in keep and rule.entries.exists():
            errors.append(f"rule {rule_id} has ledger entries and cannot be removed; end the plan instead")
        elif rule_id not in keep:
            rule.delete()
    if errors:
        raise ValidationError({"rules": errors})


def _plan_state(plan: CommissionPlan) -> dict[str, Any]:
    from events.services import snapshot

    state = snapshot(plan)
    state["join_source_ids"] = sorted(plan.join_sources.values_list("pk", flat=True))
    state["partner_ids"] = sorted(plan.partners.values_list("pk", flat=True))
    state["rules"] = [
        {"id": r.pk, "kind": r.kind, "rate": str(r.rate), "amount": str(r.amount), "cap": str(r.cap)}
        for r in plan.rules.order_by("pk")
    ]
    return state


@transaction.atomic
def rule_save(*, rule: CommissionRule) -> CommissionRule:
    _clean(rule, rule_errors(rule))
    rule.save()
    record_event(type=EventType.COMMISSION_PLAN_SAVED, obj=rule.plan, after=_plan_state(rule.plan))
    return rule


@transaction.atomic
def rule_delete(*, rule: CommissionRule) -> None:
    if rule.entries.exists():
        raise ValidationError(
            {"rule": ["this rule has ledger entries: end the plan's dates or deactivate it instead"]}
        )
    plan = rule.plan
    rule.delete()
    record_event(type=EventType.COMMISSION_PLAN_SAVED, obj=plan, after=_plan_state(plan))


@transaction.atomic
def commission_settings_save(*, hold_days: int, minimum_payout: Decimal) -> CommissionSettings:
    """Change the hold period (new and adjusted pending entries use it; a hold already set stays)
    and the minimum payout."""
    row = CommissionSettings.load()
    before = {"hold_days": row.hold_days, "minimum_payout": str(row.minimum_payout)}
    row.hold_days, row.minimum_payout = hold_days, minimum_payout
    _clean(row, {})
    row.save()
    record_event(type=EventType.COMMISSION_SETTINGS_SAVED, obj=row, before=before)
    return row


@dataclass
class ReviewResult:
    decided: list[int] = field(default_factory=list)
    on_hold: list[int] = field(default_factory=list)
    not_pending: list[int] = field(default_factory=list)


def _review(
    entry_ids: Iterable[int], *, status: str, by: User | None, now: datetime | None, reason: str = ""
) -> ReviewResult:
    ids = sorted({int(i) for i in entry_ids})
    now = now or timezone.now()
    result = ReviewResult()
    user = by if by is not None and by.is_authenticated else None
    with transaction.atomic():
        # Locked: a concurrent review of the same entries waits, then finds them decided.
        rows = list(CommissionEntry.objects.select_for_update().filter(pk__in=ids).order_by("pk"))
        for entry in rows:
            if entry.status != CommissionEntry.Status.PENDING:
                result.not_pending.append(entry.pk)
            elif status == CommissionEntry.Status.APPROVED and entry.hold_until > now:
                result.on_hold.append(entry.pk)
            else:
                result.decided.append(entry.pk)
        CommissionEntry.objects.filter(pk__in=result.decided).update(
            status=status, decided_at=now, decided_by=user, decline_reason=reason, updated_at=now
        )
        event = (
            EventType.COMMISSION_ENTRY_APPROVED
            if status == CommissionEntry.Status.APPROVED
            else EventType.COMMISSION_ENTRY_DECLINED
        )
        for entry in CommissionEntry.objects.filter(pk__in=result.decided).order_by("pk"):
            record_event(type=event, obj=entry, partner_id=entry.partner_id, before={"status": "pending"})
    return result


def entries_approve(
    *, entry_ids: Iterable[int], by: User | None, now: datetime | None = None
) -> ReviewResult:
    """Approve the pending entries among `entry_ids` whose hold period has ended; the others are
    reported (on hold, or already decided) and left as they are."""
    return _review(entry_ids, status=CommissionEntry.Status.APPROVED, by=by, now=now)


def entries_decline(
    *, entry_ids: Iterable[int], reason: str, by: User | None, now: datetime | None = None
) -> ReviewResult:
    """Decline the pending entries among `entry_ids` (a hold does not stop a decline)."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": ["a declined entry needs its reason"]})
    if len(reason) > 2000:
        raise ValidationError({"reason": ["at most 2000 characters"]})
    return _review(entry_ids, status=CommissionEntry.Status.DECLINED, by=by, now=now, reason=reason)
