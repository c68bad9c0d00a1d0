"""Writes for accounts, deal registrations, deals and touches.

Every function validates first and raises `ValidationError({field: [messages]})` with nothing
written. The data-quality rules live in `deals.rules`; docs/domain.md describes the registration
workflow (conflicts, approval, expiry) these functions implement.
"""

import hashlib
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from auditlog.models import LogEntry
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from deals.models import Account, Deal, DealRegistration, Touch
from deals.rules import (
    ALREADY_REGISTERED,
    amount_errors,
    deal_errors,
    domain_errors,
    normalise_domain,
)
from deals.selectors import own_pending_claim, registration_blocking_claims, registration_conflicts
from events.changes import record_changes
from events.services import record_event
from events.types import EventType
from partners.models import Partner, PartnerUser
from partners.rules import acting_partner_errors
from program.models import ProgramSettings
from program.validation import datetime_errors, decimal_from_input, merge_errors

Errors = dict[str, list[str]]

# Namespace of our advisory locks, so they never collide with another application's on the server.
_CLAIM_LOCK_NAMESPACE = 0x50524D  # "PRM"
# Registrations expired per UPDATE statement (the id list stays well under SQLite's variable limit).
_EXPIRY_BATCH = 500
DEAL_FIELDS = frozenset(
    {"account", "name", "amount", "created_at", "closed_at", "status", "sourcing_partner", "key"}
)


def _raise_if(errors: Errors) -> None:
    if errors:
        raise ValidationError(errors)


def _full_clean(instance, errors: Errors) -> None:
    """Field checks (lengths, choices, decimal places, unique keys) and model.clean(), merged with ours.

    Check constraints are left to the rules in model.clean(): their messages are the ones users read.
    """
    try:
        instance.full_clean(exclude=set(errors), validate_constraints=False)
    except ValidationError as exc:
        errors = merge_errors(errors, exc.message_dict)
    _raise_if(errors)


def _as_money(value: Any, field: str, errors: Errors) -> Decimal | None:
    if value is None or value == "":
        errors[field] = ["is required"]
        return None
    try:
        amount = decimal_from_input(value)
    except ValueError as exc:
        errors[field] = [str(exc)]
        return None
    if amount_errors(amount):
        errors[field] = amount_errors(amount)
    return amount


def _check_moment(value: datetime | None, field: str, errors: Errors, *, required: bool = True) -> None:
    if value is None:
        if required:
            errors[field] = ["is required"]
    elif not isinstance(value, datetime):
        errors[field] = ["must be a date and time"]
    elif messages := datetime_errors(value):
        errors[field] = messages


def _serialise_claims_on(domain: str) -> None:
    """Hold, until the transaction ends, a lock that every claim on this customer domain takes.

    On PostgreSQL an advisory transaction lock per domain lets claims on different customers run in
    parallel. SQLite needs nothing: its write transactions (transaction_mode IMMEDIATE) already run
    one at a time.
    """
    if connection.vendor != "postgresql" or not domain:
        return
    digest = int.from_bytes(hashlib.blake2b(domain.encode(), digest_size=4).digest(), "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_CLAIM_LOCK_NAMESPACE, digest])


# --- Accounts -----------------------------------------------------------------------------------


def account_get_or_create(*, name: str, domain: str, key: str | None = None) -> Account:
    """The account with this key, else the oldest account with this normalised domain, else a new one.

    The name of an existing account is left as it is (the first recorded name wins).
    """
    domain = normalise_domain(domain)
    with transaction.atomic():
        _serialise_claims_on(domain)
        if key and (account := Account.objects.filter(key=key).first()):
            return account
        if domain and (account := Account.objects.filter(domain=domain).order_by("id").first()):
            return account
        errors: Errors = {}
        name = (name or "").strip()
        if not name:
            errors["name"] = ["is required for a new customer account"]
        account = Account(name=name, domain=domain, key=key or None)
        _full_clean(account, errors)
        account.save()
    return account


# --- Registrations ------------------------------------------------------------------------------


def _submitter_errors(submitted_by: User | None, partner: Partner) -> Errors:
    """A portal user may only register deals for the partner it acts for; staff may for any."""
    if submitted_by is None or partner is None:
        return {}
    membership = PartnerUser.objects.filter(user_id=submitted_by.pk).only("partner_id").first()
    if membership is not None and membership.partner_id != partner.pk:
        return {
            "submitted_by": [
                f"{submitted_by} acts for another partner and cannot register deals for {partner}"
            ]
        }
    return {}


def registration_submit(
    *,
    partner: Partner,
    account_name: str,
    domain: str,
    amount: Decimal | str | None,
    expected_close_date: date | None = None,
    notes: str = "",
    submitted_by: User | None = None,
    submitted_at: datetime | None = None,
    key: str | None = None,
) -> DealRegistration:
    """Register a deal for `partner`; flags a channel conflict instead of refusing one.

    `conflict_with` is set to the oldest claim another partner holds on the same customer (same
    normalised domain) that is submitted or approved and inside its protection window at
    `submitted_at`. Claims on one domain are serialised, so simultaneous submissions see each other.
    """
    errors: Errors = {}
    # Without an explicit time the submission is stamped once the lock is held, so the order of
    # submitted_at always matches the order in which claims saw each other.
    stamp_on_lock = submitted_at is None
    submitted_at = submitted_at or timezone.now()
    errors.update(acting_partner_errors(partner, allow_churned=False))
    amount = _as_money(amount, "amount", errors)
    _check_moment(submitted_at, "submitted_at", errors)
    domain = normalise_domain(domain)
    if domain_errors(domain):
        errors["domain"] = domain_errors(domain)
    account_name = (account_name or "").strip()
    if not account_name:
        errors["account_name"] = ["is required"]
    program = ProgramSettings.load()
    if expected_close_date is not None and "submitted_at" not in errors:
        submitted_on = timezone.localtime(submitted_at, ZoneInfo(program.time_zone)).date()
        if expected_close_date < submitted_on:
            errors["expected_close_date"] = ["is before the submission date"]
    errors = merge_errors(errors, _submitter_errors(submitted_by, partner))
    if key and DealRegistration.objects.filter(key=key).exists():
        errors["key"] = [f"a registration with key {key!r} already exists"]
    _raise_if(errors)
    assert amount is not None  # else _as_money recorded an error and _raise_if raised it

    protection_days = program.registration_protection_days
    with transaction.atomic():
        _serialise_claims_on(domain)
        if stamp_on_lock:
            submitted_at = timezone.now()
        own = own_pending_claim(partner=partner, domain=domain, at=submitted_at)
        if own is not None:
            raise ValidationError({"domain": [_already_registered(own)]})
        account = account_get_or_create(name=account_name, domain=domain)
        conflict = registration_conflicts(
            partner=partner, domain=domain, at=submitted_at, account=account
        ).first()
        registration = DealRegistration(
            partner=partner,
            account=account,
            amount=amount,
            expected_close_date=expected_close_date,
            notes=(notes or "").strip(),
            status=DealRegistration.Status.SUBMITTED,
            submitted_at=submitted_at,
            submitted_by=submitted_by,
            protection_expires_at=submitted_at + timedelta(days=protection_days),
            conflict_with=conflict,
            key=key or None,
        )
        _full_clean(registration, {})
        registration.save()
        record_event(type=EventType.REGISTRATION_SUBMITTED, obj=registration, partner_id=partner.pk)
    return registration


def _already_registered(claim: DealRegistration) -> str:
    protection_days = ProgramSettings.load().registration_protection_days
    until = claim.protection_expires_at or claim.submitted_at + timedelta(days=protection_days)
    return ALREADY_REGISTERED.format(
        pk=claim.pk,
        status=claim.status,
        submitted=f"{claim.submitted_at:%d %b %Y}",
        until=f"{until:%d %b %Y}",
    )


def _lock_registration(registration: DealRegistration) -> DealRegistration:
    """Re-read a registration for a decision, holding its customer's claim lock and then its row.

    Decisions and submissions on one customer take turns, so a decision sees every claim committed
    before it. The claim lock comes first, the order submissions use, so the two never deadlock;
    the row lock is FOR NO KEY UPDATE so new registrations can still reference this one.
    """
    if registration is None or registration.pk is None:
        raise ValidationError({"registration": ["unknown registration"]})
    domain = (
        DealRegistration.objects.filter(pk=registration.pk).values_list("account__domain", flat=True).first()
    )
    if domain is None:
        raise ValidationError({"registration": ["unknown registration"]})
    _serialise_claims_on(domain)
    return (
        DealRegistration.objects.select_for_update(of=("self",), no_key=True)
        .select_related("partner", "account")
        .get(pk=registration.pk)
    )


def _decision_errors(registration: DealRegistration, decided_at: datetime, action: str) -> Errors:
    if registration.status != DealRegistration.Status.SUBMITTED:
        return {
            "status": [f"only a submitted registration can be {action}; this one is {registration.status}"]
        }
    if decided_at < registration.submitted_at:
        return {"decided_at": ["the decision would come before the submission"]}
    return {}


def _describe_claim(claim: DealRegistration) -> str:
    protected_until = claim.protection_expires_at
    until = f", protected until {protected_until:%Y-%m-%d}" if protected_until else ""
    submitted = f"{claim.submitted_at:%Y-%m-%d}"
    return f"registration #{claim.pk} by {claim.partner} ({claim.status}, submitted {submitted}{until})"


def registration_approve(
    *,
    registration: DealRegistration,
    decided_by: User | None,
    reason: str = "",
    override_reason: str = "",
) -> DealRegistration:
    """Approve a submitted registration and open the partner-sourced deal it becomes.

    Refused while another partner holds a blocking claim on the customer (an approved claim, or a
    pending one submitted earlier, inside its protection window) unless `override_reason` says why.
    The deal: the registration's account and amount, status open, `created_at` = the decision time,
    sourced by the registering partner; `registration.deal` links to it.
    """
    override_reason = (override_reason or "").strip()
    with transaction.atomic():
        registration = _lock_registration(registration)
        decided_at = timezone.now()
        errors = _decision_errors(registration, decided_at, "approved")
        protection_ends = registration.protection_expires_at
        if not errors and protection_ends is not None and protection_ends <= decided_at:
            errors = {
                "status": [
                    f"its protection window ended on {protection_ends:%Y-%m-%d}: the registration has expired"
                ]
            }
        if not errors:
            errors = acting_partner_errors(registration.partner, allow_churned=False)
        _raise_if(errors)
        blocking = list(registration_blocking_claims(registration=registration, at=decided_at)[:3])
        if blocking and not override_reason:
            raise ValidationError(
                {
                    "override_reason": [
                        "channel conflict with "
                        + "; ".join(_describe_claim(claim) for claim in blocking)
                        + ". Give an override reason to approve it anyway."
                    ]
                }
            )
        deal = deal_create(
            account=registration.account,
            amount=registration.amount,
            created_at=decided_at,
            name=registration.account.name,
            sourcing_partner=registration.partner,
        )
        registration.status = DealRegistration.Status.APPROVED
        registration.decided_at = decided_at
        registration.decided_by = decided_by
        registration.decision_reason = (reason or "").strip()
        if blocking:
            registration.conflict_with = registration.conflict_with or blocking[0]
            registration.conflict_override_reason = override_reason
        registration.deal = deal
        registration.save()
        record_event(
            type=EventType.REGISTRATION_APPROVED,
            obj=registration,
            partner_id=registration.partner_id,
            before={"status": DealRegistration.Status.SUBMITTED},
        )
    return registration


def registration_reject(
    *, registration: DealRegistration, decided_by: User | None, reason: str
) -> DealRegistration:
    reason = (reason or "").strip()
    with transaction.atomic():
        registration = _lock_registration(registration)
        decided_at = timezone.now()
        errors = _decision_errors(registration, decided_at, "rejected")
        if not reason:
            errors = merge_errors(errors, {"reason": ["is required: tell the partner why it was rejected"]})
        _raise_if(errors)
        registration.status = DealRegistration.Status.REJECTED
        registration.decided_at = decided_at
        registration.decided_by = decided_by
        registration.decision_reason = reason
        registration.save(
            update_fields=["status", "decided_at", "decided_by", "decision_reason", "updated_at"]
        )
        record_event(
            type=EventType.REGISTRATION_REJECTED,
            obj=registration,
            partner_id=registration.partner_id,
            before={"status": DealRegistration.Status.SUBMITTED},
        )
    return registration


def registrations_expire(*, now: datetime | None = None) -> int:
    """Mark submitted registrations whose protection window has ended (at `now`) as expired.

    Only undecided (submitted) registrations expire. Approved ones keep their status: approval is a
    recorded decision the pipeline KPIs count; their protection simply stops blocking others once the
    window ends. Returns how many registrations expired. Safe to run any number of times; the
    partner's users are told of each one (registration_expired).
    """
    now = now or timezone.now()
    protection_days = ProgramSettings.load().registration_protection_days
    lapsed = Q(protection_expires_at__lte=now) | Q(
        protection_expires_at__isnull=True, submitted_at__lte=now - timedelta(days=protection_days)
    )
    with transaction.atomic():
        lapsing = list(
            DealRegistration.objects.select_for_update(of=("self",), no_key=True)
            .select_related("partner", "account")
            .filter(lapsed, status=DealRegistration.Status.SUBMITTED)
            .order_by("pk")
        )
        expired_at = timezone.now()
        for start in range(0, len(lapsing), _EXPIRY_BATCH):
            batch = lapsing[start : start + _EXPIRY_BATCH]
            DealRegistration.objects.filter(pk__in=[r.pk for r in batch]).update(
                status=DealRegistration.Status.EXPIRED, updated_at=expired_at
            )
        # A queryset update sends no signals, so each expiry is written to the audit trail here.
        change = {"status": [DealRegistration.Status.SUBMITTED.value, DealRegistration.Status.EXPIRED.value]}
        # ... and to the change feed (record_changes), with one domain event each.
        record_changes(DealRegistration, lapsing, "updated")
        for registration in lapsing:
            registration.status = DealRegistration.Status.EXPIRED
            registration.updated_at = expired_at
            LogEntry.objects.log_create(registration, action=LogEntry.Action.UPDATE, changes=change)
            record_event(
                type=EventType.REGISTRATION_EXPIRED,
                obj=registration,
                partner_id=registration.partner_id,
                before={"status": DealRegistration.Status.SUBMITTED},
            )
        return len(lapsing)


def registrations_warn_expiring(*, now: datetime | None = None, within: timedelta | None = None) -> int:
    """Tell each partner once that a submitted or approved registration's protection ends soon.

    "Soon" is within REGISTRATION_EXPIRY_WARNING_DAYS of `now`; `expiry_warning_sent_at` records the
    warning so no registration is warned twice. Returns how many were warned.
    """
    now = now or timezone.now()
    within = within if within is not None else timedelta(days=settings.REGISTRATION_EXPIRY_WARNING_DAYS)
    with transaction.atomic():
        ending = list(
            DealRegistration.objects.select_for_update(of=("self",), skip_locked=True, no_key=True)
            .select_related("partner", "account")
            .filter(
                status__in=[DealRegistration.Status.SUBMITTED, DealRegistration.Status.APPROVED],
                protection_expires_at__gt=now,
                protection_expires_at__lte=now + within,
                expiry_warning_sent_at__isnull=True,
            )
            .order_by("protection_expires_at", "pk")
        )
        DealRegistration.objects.filter(pk__in=[r.pk for r in ending]).update(expiry_warning_sent_at=now)
        for registration in ending:
            registration.expiry_warning_sent_at = now
            record_event(
                type=EventType.REGISTRATION_EXPIRING, obj=registration, partner_id=registration.partner_id
            )
    return len(ending)


# --- Deals --------------------------------------------------------------------------------------


def _deal_errors(deal: Deal, errors: Errors) -> Errors:
    if deal.account_id is None and "account" not in errors:
        errors["account"] = ["unknown account"]
    if deal.sourcing_partner is not None:
        errors = merge_errors(errors, acting_partner_errors(deal.sourcing_partner, field="sourcing_partner"))
    if deal.status not in Deal.Status.values:
        errors["status"] = [f"must be one of {', '.join(Deal.Status.values)}"]
    rule_errors = deal_errors(
        amount=deal.amount if "amount" not in errors else None,
        created_at=deal.created_at if "created_at" not in errors else None,
        closed_at=deal.closed_at if "closed_at" not in errors else None,
        status=deal.status,
    )
    return merge_errors(errors, {f: m for f, m in rule_errors.items() if f not in errors})


_CLOSED_EVENTS: dict[str, EventType] = {
    Deal.Status.WON: EventType.DEAL_WON,
    Deal.Status.LOST: EventType.DEAL_LOST,
}


def _validate_and_save_deal(deal: Deal, errors: Errors, *, was: str | None = None) -> Deal:
    """Check and save the deal; `was` is its status before (None for a new deal): a deal that
    becomes won or lost records deal.won / deal.lost."""
    errors = _deal_errors(deal, errors)
    _raise_if(errors)
    # model.clean() repeats the rules we just applied; the full_clean call adds field and key checks.
    _full_clean(deal, {})
    deal.save()
    if deal.status in _CLOSED_EVENTS and deal.status != was:
        record_event(
            type=_CLOSED_EVENTS[deal.status],
            obj=deal,
            partner_id=deal.sourcing_partner_id,
            before={"status": was} if was else {},
        )
    return deal


def deal_create(
    *,
    account: Account,
    amount: Decimal | str | None,
    created_at: datetime,
    name: str = "",
    status: str = Deal.Status.OPEN,
    closed_at: datetime | None = None,
    sourcing_partner: Partner | None = None,
    key: str | None = None,
) -> Deal:
    errors: Errors = {}
    if account is None or account.pk is None:
        errors["account"] = ["unknown account"]
    amount = _as_money(amount, "amount", errors)
    _check_moment(created_at, "created_at", errors)
    _check_moment(closed_at, "closed_at", errors, required=False)
    if sourcing_partner is not None and sourcing_partner.pk is None:
        errors["sourcing_partner"] = ["unknown partner"]
    deal = Deal(
        account=account if "account" not in errors else None,
        amount=amount,  # type: ignore[misc]  # None when refused: the errors above already say so
        created_at=created_at,
        closed_at=closed_at,
        name=(name or "").strip(),
        status=status,
        sourcing_partner=sourcing_partner if "sourcing_partner" not in errors else None,
        key=key or None,
    )
    with transaction.atomic():
        return _validate_and_save_deal(deal, errors)


def deal_update(*, deal: Deal, **fields: Any) -> Deal:
    """Change any of the deal's fields (account, name, amount, created_at, closed_at, status,
    sourcing_partner, key); the whole resulting deal must pass the data-quality rules."""
    unknown = sorted(set(fields) - DEAL_FIELDS)
    _raise_if({field: ["cannot be changed through deal_update"] for field in unknown})
    with transaction.atomic():
        try:
            deal = Deal.objects.select_for_update(of=("self",), no_key=True).get(pk=deal.pk)
        except Deal.DoesNotExist:
            raise ValidationError({"deal": ["unknown deal"]}) from None
        was = deal.status
        errors: Errors = {}
        if "amount" in fields:
            fields["amount"] = _as_money(fields["amount"], "amount", errors)
        for moment in ("created_at", "closed_at"):
            if moment in fields:
                _check_moment(fields[moment], moment, errors, required=moment == "created_at")
        if "account" in fields and (fields["account"] is None or fields["account"].pk is None):
            errors["account"] = ["unknown account"]
        if "name" in fields:
            fields["name"] = (fields["name"] or "").strip()
        if "key" in fields:
            fields["key"] = fields["key"] or None
        for field, value in fields.items():
            if field not in errors:
                setattr(deal, field, value)
        return _validate_and_save_deal(deal, errors, was=was)


def deal_close(*, deal: Deal, status: str, closed_at: datetime) -> Deal:
    """Close an open deal as won or lost."""
    if status not in (Deal.Status.WON, Deal.Status.LOST):
        raise ValidationError({"status": ["must be won or lost"]})
    current = Deal.objects.filter(pk=deal.pk).values_list("status", flat=True).first()
    if current is not None and current != Deal.Status.OPEN:
        raise ValidationError({"status": [f"the deal is already {current}; correct it with deal_update"]})
    return deal_update(deal=deal, status=status, closed_at=closed_at)


# --- Touches ------------------------------------------------------------------------------------


def touch_add(*, deal: Deal, partner: Partner, kind: str, touched_at: datetime) -> Touch:
    """Record a partner's involvement in a deal. A touch after the deal closed is legal (it is listed
    in the reconciliation report and does not count for that deal)."""
    errors: Errors = {}
    if deal is None or deal.pk is None:
        errors["deal"] = ["unknown deal"]
    errors.update(acting_partner_errors(partner))
    if kind not in Touch.Kind.values:
        errors["kind"] = [f"must be one of {', '.join(Touch.Kind.values)}"]
    _check_moment(touched_at, "touched_at", errors)
    _raise_if(errors)
    duplicate = Touch.objects.filter(deal=deal, partner=partner, kind=kind, touched_at=touched_at).exists()
    if duplicate:
        raise ValidationError(
            {"touched_at": [f"{partner} already has a {kind} touch on this deal at {touched_at}"]}
        )
    touch = Touch(deal=deal, partner=partner, kind=kind, touched_at=touched_at)
    _full_clean(touch, {})
    try:
        with transaction.atomic():
            touch.save()
    except IntegrityError:
        # Lost a race with an identical touch; the existence check above explains the outcome.
        raise ValidationError(
            {"touched_at": [f"{partner} already has a {kind} touch on this deal at {touched_at}"]}
        ) from None
    return touch
