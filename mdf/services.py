"""Writes of MDF: budgets, requests, claims, proof files, reimbursement and expiry.

Every function validates first and raises `ValidationError({field: [messages]})` with nothing
written. Writes that change what a budget holds lock the budget row first (select_for_update; on
SQLite write transactions already run one at a time), then the request, then the claim, always in
that order, so a check of the remaining budget and the write it allows are one step
(docs/mdf.md). Each state change records its domain event in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from deals.models import Deal, DealRegistration
from events.services import record_event
from events.types import EventType
from kpis.costs import book_program_cost
from kpis.models import CostEntry
from mdf.models import MdfBudget, MdfClaim, MdfProofFile, MdfRequest
from mdf.proofs import CONTENT_TYPES, check_proof
from mdf.quarters import parse_quarter, quarter_of
from mdf.selectors import budget_for, figures_of
from partners.models import Partner
from partners.rules import acting_partner_errors
from program.models import program_today
from program.validation import amount_errors, date_errors, text_errors

Errors = dict[str, list[str]]


def _raise_if(errors: Errors) -> None:
    if errors:
        raise ValidationError(errors)


def _money(value: Decimal | None, field: str, errors: Errors, *, required: bool = True) -> None:
    if value is None:
        if required:
            errors[field] = ["is required"]
    elif messages := amount_errors(value):
        errors[field] = messages


def _day(value: date | None, field: str, errors: Errors) -> None:
    if value is None:
        errors[field] = ["is required"]
    elif messages := date_errors(value):
        errors[field] = messages


def _text(value: str, field: str, errors: Errors, *, max_length: int, required: bool = False) -> str:
    value = (value or "").strip()
    if required and not value:
        errors[field] = ["is required"]
    elif len(value) > max_length:
        errors[field] = [f"is longer than {max_length} characters"]
    elif messages := text_errors(value):
        errors[field] = messages
    return value


def _locked_budget(budget_id: int) -> MdfBudget:
    return MdfBudget.objects.select_for_update().get(pk=budget_id)


# --- Budgets --------------------------------------------------------------------------------------
def budget_set(
    *,
    quarter: str,
    amount: Decimal,
    partner: Partner | None = None,
    tier: str = "",
    note: str = "",
    changed_by: User | None = None,
) -> MdfBudget:
    """Create or change the budget of `quarter` for a partner or a tier's pool.

    A budget never goes below what its requests and claims already hold.
    """
    errors: Errors = {}
    tier = _text(tier, "tier", errors, max_length=50)
    note = _text(note, "note", errors, max_length=500)
    try:
        period = parse_quarter(quarter)
    except ValueError as exc:
        errors["quarter"] = [str(exc)]
    else:
        if messages := date_errors(period.starts_on) or date_errors(period.ends_on):
            errors["quarter"] = messages
    _money(amount, "amount", errors)
    if (partner is None) == (not tier):
        errors["tier" if tier else "partner"] = [
            "a budget is for one partner or for one tier's pool, not both"
        ]
    _raise_if(errors)
    with transaction.atomic():
        existing = (
            MdfBudget.objects.select_for_update(of=("self",))
            .filter(quarter=period.label, **({"partner": partner} if partner else {"tier": tier}))
            .first()
        )
        budget = existing or MdfBudget(quarter=period.label, partner=partner, tier=tier)
        if existing is not None:
            reserved = figures_of(existing).reserved
            if amount < reserved:
                raise ValidationError(
                    {"amount": [f"{amount} is below the {reserved} its requests and claims already hold"]}
                )
        budget.starts_on, budget.ends_on = period.starts_on, period.ends_on
        budget.amount, budget.note, budget.updated_by = amount, note, changed_by
        budget.save()
    return budget


# --- Requests -------------------------------------------------------------------------------------
def _request_errors(
    *,
    partner: Partner,
    activity_type: str,
    starts_on: date | None,
    ends_on: date | None,
    amount: Decimal | None,
) -> Errors:
    errors: Errors = dict(acting_partner_errors(partner, allow_churned=False))
    if activity_type not in MdfRequest.ActivityType.values:
        errors["activity_type"] = [
            f"'{activity_type}' is not one of: {', '.join(MdfRequest.ActivityType.values)}"
        ]
    _day(starts_on, "starts_on", errors)
    _day(ends_on, "ends_on", errors)
    if starts_on and ends_on and not errors.get("ends_on") and ends_on < starts_on:
        errors["ends_on"] = ["is before the activity starts"]
    _money(amount, "amount_requested", errors)
    return errors


def request_submit(
    *,
    partner: Partner,
    submitted_by: User | None,
    activity_type: str,
    title: str,
    description: str = "",
    starts_on: date,
    ends_on: date,
    amount_requested: Decimal,
    expected_leads: int = 0,
) -> MdfRequest:
    """Ask for funds for one activity, from the budget of the quarter it starts in.

    Refused when no budget covers that quarter or when the amount is above what the budget has left
    (checked with the budget row locked, so concurrent requests cannot together overspend it).
    """
    errors = _request_errors(
        partner=partner,
        activity_type=activity_type,
        starts_on=starts_on,
        ends_on=ends_on,
        amount=amount_requested,
    )
    title = _text(title, "title", errors, max_length=200, required=True)
    description = _text(description, "description", errors, max_length=4000)
    if expected_leads is None or expected_leads < 0:
        errors["expected_leads"] = ["must be 0 or more"]
    _raise_if(errors)
    quarter = quarter_of(starts_on).label
    budget = budget_for(partner, quarter)
    if budget is None:
        raise ValidationError(
            {"starts_on": [f"No MDF budget covers {quarter} for {partner}; ask your partner manager."]}
        )
    with transaction.atomic():
        budget = _locked_budget(budget.pk)
        remaining = figures_of(budget).remaining
        if amount_requested > remaining:
            raise ValidationError(
                {
                    "amount_requested": [
                        f"{amount_requested} is above the remaining {budget.quarter} budget: {remaining} of "
                        f"{budget.amount} is left ({budget.scope_label}). Ask for at most {remaining}."
                    ]
                }
            )
        request = MdfRequest.objects.create(
            partner=partner,
            budget=budget,
            activity_type=activity_type,
            title=title,
            description=description,
            starts_on=starts_on,
            ends_on=ends_on,
            amount_requested=amount_requested,
            expected_leads=expected_leads,
            submitted_at=timezone.now(),
            submitted_by=submitted_by,
        )
        record_event(type=EventType.MDF_REQUEST_SUBMITTED, obj=request, partner_id=partner.pk)
    return request


def request_decide(
    *,
    request: MdfRequest,
    decided_by: User,
    approve: bool,
    comment: str = "",
    amount_approved: Decimal | None = None,
    claim_deadline: date | None = None,
) -> MdfRequest:
    """Approve (all or part of the amount, with the day unclaimed funds expire) or reject with a comment."""
    errors: Errors = {}
    comment = _text(comment, "comment", errors, max_length=2000, required=not approve)
    if approve:
        _money(amount_approved, "amount_approved", errors, required=False)
        if claim_deadline is not None:
            _day(claim_deadline, "claim_deadline", errors)
    _raise_if(errors)
    with transaction.atomic():
        _locked_budget(request.budget_id)
        locked = MdfRequest.objects.select_for_update().get(pk=request.pk)
        if locked.status != MdfRequest.Status.SUBMITTED:
            raise ValidationError(
                {"status": [f"this request was already {locked.get_status_display().lower()}"]}
            )
        before = {"status": locked.status}
        locked.decided_at, locked.decided_by, locked.decision_comment = timezone.now(), decided_by, comment
        if approve:
            amount = amount_approved if amount_approved is not None else locked.amount_requested
            deadline = claim_deadline or locked.ends_on + timedelta(days=settings.MDF_CLAIM_DAYS)
            if amount > locked.amount_requested:
                errors["amount_approved"] = [f"is above the {locked.amount_requested} requested"]
            if deadline < locked.ends_on:
                errors["claim_deadline"] = [f"is before the activity ends ({locked.ends_on})"]
            _raise_if(errors)
            locked.status, locked.amount_approved, locked.claim_deadline = (
                MdfRequest.Status.APPROVED,
                amount,
                deadline,
            )
        else:
            locked.status = MdfRequest.Status.REJECTED
        locked.save()
        record_event(
            type=EventType.MDF_REQUEST_DECIDED, obj=locked, partner_id=locked.partner_id, before=before
        )
    return locked


def request_set_claim_deadline(*, request: MdfRequest, claim_deadline: date, changed_by: User) -> MdfRequest:
    """Move the day an approved request's unclaimed funds expire (a manager's decision)."""
    errors: Errors = {}
    _day(claim_deadline, "claim_deadline", errors)
    _raise_if(errors)
    with transaction.atomic():
        _locked_budget(request.budget_id)
        locked = MdfRequest.objects.select_for_update().get(pk=request.pk)
        if locked.status != MdfRequest.Status.APPROVED:
            raise ValidationError(
                {"claim_deadline": ["only an approved, unexpired request has a claim deadline to move"]}
            )
        if claim_deadline < locked.ends_on:
            raise ValidationError({"claim_deadline": [f"is before the activity ends ({locked.ends_on})"]})
        before = {"claim_deadline": locked.claim_deadline}
        locked.claim_deadline = claim_deadline
        locked.save(update_fields=["claim_deadline"])
        record_event(
            type=EventType.MDF_REQUEST_DECIDED, obj=locked, partner_id=locked.partner_id, before=before
        )
    return locked


def requests_expire(*, today: date | None = None) -> int:
    """Expire approved requests whose claim deadline passed with no live claim: their funds return
    to the budget. Safe to run twice or concurrently (each request is re-read under its lock)."""
    today = today or program_today()
    live = MdfClaim.objects.filter(status__in=MdfClaim.LIVE).values("request_id")
    due = list(
        MdfRequest.objects.filter(status=MdfRequest.Status.APPROVED, claim_deadline__lt=today)
        .exclude(pk__in=live)
        .values_list("pk", "budget_id")
    )
    expired = 0
    for request_id, budget_id in due:
        with transaction.atomic():
            _locked_budget(budget_id)
            request = MdfRequest.objects.select_for_update().get(pk=request_id)
            has_live = MdfClaim.objects.filter(request=request, status__in=MdfClaim.LIVE).exists()
            if request.status != MdfRequest.Status.APPROVED or has_live or not request.claim_deadline:
                continue
            if request.claim_deadline >= today:
                continue
            request.status, request.expired_at = MdfRequest.Status.EXPIRED, timezone.now()
            request.save(update_fields=["status", "expired_at"])
            record_event(
                type=EventType.MDF_REQUEST_EXPIRED,
                obj=request,
                partner_id=request.partner_id,
                before={"status": MdfRequest.Status.APPROVED},
            )
            expired += 1
    return expired


# --- Claims ---------------------------------------------------------------------------------------
def _link_errors(partner: Partner, registration_ids: Sequence[int], deal_ids: Sequence[int]) -> Errors:
    """A partner links only its own registrations, and deals it sourced or registered."""
    errors: Errors = {}
    own_registrations = set(
        DealRegistration.objects.filter(partner=partner, pk__in=registration_ids).values_list("pk", flat=True)
    )
    if unknown := sorted(set(registration_ids) - own_registrations):
        errors["registrations"] = [f"not registrations of {partner}: {', '.join(map(str, unknown))}"]
    own_deals = set(
        Deal.objects.filter(
            Q(sourcing_partner=partner) | Q(registration__partner=partner), pk__in=deal_ids
        ).values_list("pk", flat=True)
    )
    if unknown := sorted(set(deal_ids) - own_deals):
        errors["deals"] = [f"not deals of {partner}: {', '.join(map(str, unknown))}"]
    return errors


def _checked_files(
    files: Sequence[UploadedFile[bytes]], *, already: int
) -> list[tuple[UploadedFile[bytes], str]]:
    errors: list[str] = []
    checked = []
    if already + len(files) > settings.MDF_PROOF_MAX_FILES:
        raise ValidationError({"files": [f"at most {settings.MDF_PROOF_MAX_FILES} files a claim"]})
    for upload in files:
        try:
            checked.append((upload, check_proof(upload).extension))
        except ValidationError as exc:
            errors.extend(exc.message_dict.get("files", exc.messages))
    if errors:
        raise ValidationError({"files": errors})
    return checked


def claim_submit(
    *,
    request: MdfRequest,
    submitted_by: User | None,
    amount_claimed: Decimal,
    leads: int = 0,
    summary: str = "",
    registration_ids: Sequence[int] = (),
    deal_ids: Sequence[int] = (),
    files: Sequence[UploadedFile[bytes]] = (),
    today: date | None = None,
) -> MdfClaim:
    """Claim the cost of an approved activity once it has ended, with its results and proof files."""
    today = today or program_today()
    errors: Errors = {}
    _money(amount_claimed, "amount_claimed", errors)
    summary = _text(summary, "summary", errors, max_length=4000)
    if leads is None or leads < 0:
        errors["leads"] = ["must be 0 or more"]
    errors.update(_link_errors(request.partner, list(registration_ids), list(deal_ids)))
    try:
        checked = _checked_files(files, already=0)
    except ValidationError as exc:
        errors.update(exc.message_dict)
        checked = []
    _raise_if(errors)
    with transaction.atomic():
        _locked_budget(request.budget_id)
        locked = MdfRequest.objects.select_for_update().get(pk=request.pk)
        if locked.status != MdfRequest.Status.APPROVED:
            raise ValidationError(
                {"request": [f"only an approved request is claimed (this one is {locked.status})"]}
            )
        if MdfClaim.objects.filter(request=locked, status__in=MdfClaim.LIVE).exists():
            raise ValidationError({"request": ["this request already has a claim in review or settled"]})
        if today < locked.ends_on:
            raise ValidationError({"request": [f"claim once the activity has ended ({locked.ends_on})"]})
        if locked.claim_deadline and today > locked.claim_deadline:
            raise ValidationError({"request": [f"the claim deadline passed on {locked.claim_deadline}"]})
        assert locked.amount_approved is not None  # an approved request has its amount (a constraint)
        if amount_claimed > locked.amount_approved:
            raise ValidationError({"amount_claimed": [f"is above the {locked.amount_approved} approved"]})
        claim = MdfClaim.objects.create(
            request=locked,
            amount_claimed=amount_claimed,
            leads=leads,
            summary=summary,
            submitted_at=timezone.now(),
            submitted_by=submitted_by,
        )
        claim.registrations.set(sorted(set(registration_ids)))
        claim.deals.set(sorted(set(deal_ids)))
        _save_proofs(claim, checked, submitted_by)
        record_event(type=EventType.MDF_CLAIM_SUBMITTED, obj=claim, partner_id=locked.partner_id)
    return claim


def _save_proofs(
    claim: MdfClaim, checked: Iterable[tuple[UploadedFile[bytes], str]], uploaded_by: User | None
) -> list[MdfProofFile]:
    saved = []
    now = timezone.now()
    for upload, extension in checked:
        proof = MdfProofFile(
            claim=claim,
            name=(upload.name or "proof").rsplit("/", 1)[-1][:200],
            content_type=CONTENT_TYPES[extension],
            size=upload.size or 0,
            uploaded_at=now,
            uploaded_by=uploaded_by,
        )
        upload.seek(0)
        proof.file.save(f"proof.{extension}", upload, save=False)
        proof.save()
        saved.append(proof)
    return saved


def proof_add(*, claim: MdfClaim, upload: UploadedFile[bytes], uploaded_by: User | None) -> MdfProofFile:
    """Add one proof file to a claim still in review."""
    with transaction.atomic():
        locked = MdfClaim.objects.select_for_update().get(pk=claim.pk)
        if locked.status != MdfClaim.Status.SUBMITTED:
            raise ValidationError({"file": ["files are added only while the claim is in review"]})
        try:
            checked = _checked_files([upload], already=locked.files.count())
        except ValidationError as exc:
            raise ValidationError({"file": exc.message_dict["files"]}) from None
        return _save_proofs(locked, checked, uploaded_by)[0]


def claim_decide(
    *,
    claim: MdfClaim,
    decided_by: User,
    approve: bool,
    amount_approved: Decimal | None = None,
    comment: str = "",
) -> MdfClaim:
    """Approve a claim (all of it, or part: approved <= claimed <= the request's approved amount), or
    reject it with a comment. Approving needs at least one proof file."""
    errors: Errors = {}
    comment = _text(comment, "comment", errors, max_length=2000, required=not approve)
    if approve:
        _money(amount_approved, "amount_approved", errors, required=False)
    _raise_if(errors)
    with transaction.atomic():
        _locked_budget(claim.request.budget_id)
        locked = MdfClaim.objects.select_for_update(of=("self",)).select_related("request").get(pk=claim.pk)
        if locked.status != MdfClaim.Status.SUBMITTED:
            raise ValidationError(
                {"status": [f"this claim was already {locked.get_status_display().lower()}"]}
            )
        before = {"status": locked.status}
        locked.decided_at, locked.decided_by, locked.decision_comment = timezone.now(), decided_by, comment
        if approve:
            amount = amount_approved if amount_approved is not None else locked.amount_claimed
            if amount > locked.amount_claimed:
                raise ValidationError({"amount_approved": [f"is above the {locked.amount_claimed} claimed"]})
            if not locked.files.exists():
                raise ValidationError(
                    {"status": ["no proof of performance was uploaded; it cannot be approved"]}
                )
            locked.status, locked.amount_approved = MdfClaim.Status.APPROVED, amount
        else:
            locked.status = MdfClaim.Status.REJECTED
        locked.save()
        record_event(
            type=EventType.MDF_CLAIM_DECIDED, obj=locked, partner_id=locked.request.partner_id, before=before
        )
    return locked


def claim_reimburse(*, claim: MdfClaim, reimbursed_by: User | None, on: date | None = None) -> MdfClaim:
    """Pay an approved claim and book its cost (category MDF, the partner, its linked deals and
    registrations) in the same transaction. Idempotent: a reimbursed claim is returned unchanged, and
    the cost is booked once per claim (`mdf-claim:<id>`), however often this runs."""
    on = on or program_today()
    errors: Errors = {}
    _day(on, "reimbursed_on", errors)
    _raise_if(errors)
    with transaction.atomic():
        locked = (
            MdfClaim.objects.select_for_update(of=("self",))
            .select_related("request__partner")
            .get(pk=claim.pk)
        )
        if locked.status == MdfClaim.Status.REIMBURSED:
            return locked
        if locked.status != MdfClaim.Status.APPROVED:
            raise ValidationError(
                {"status": [f"only an approved claim is reimbursed (this one is {locked.status})"]}
            )
        assert locked.amount_approved is not None  # an approved claim has its amount (a constraint)
        cost = book_program_cost(
            source=CostEntry.Source.MDF_REIMBURSEMENT,
            reference=f"mdf-claim:{locked.pk}",
            category=CostEntry.Category.MDF,
            partner=locked.request.partner,
            date=on,
            amount=locked.amount_approved,
            note=f"MDF claim #{locked.pk}: {locked.request.title}"[:500],
            deal_ids=list(locked.deals.values_list("pk", flat=True)),
            registration_ids=list(locked.registrations.values_list("pk", flat=True)),
        )
        locked.status, locked.reimbursed_on, locked.reimbursed_by, locked.cost_entry = (
            MdfClaim.Status.REIMBURSED,
            on,
            reimbursed_by,
            cost,
        )
        locked.save()
        record_event(
            type=EventType.MDF_CLAIM_REIMBURSED,
            obj=locked,
            partner_id=locked.request.partner_id,
            before={"status": MdfClaim.Status.APPROVED},
        )
    return locked
