"""Writes for partners, their applications and lifecycle, and the logins that act for them.

Every function validates first and raises `ValidationError({field: [messages]})` with nothing
written; the rules themselves live in `partners.rules` so the admin and the importer share them.
"""

from datetime import date

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from events.services import record_event
from events.types import EventType
from partners.models import JoinSource, Partner, PartnerUser
from partners.roles import StaffRole
from partners.rules import partner_errors, partner_transition_errors
from program.models import program_today
from program.validation import date_errors, merge_errors

KEY_TAKEN = "{model} with key {key!r} already exists"


def _full_clean(instance, errors: dict[str, list[str]]) -> None:
    """Field-level checks (lengths, choices, decimals) plus model.clean(), merged with our own errors.

    Check constraints are left to the rules: their messages are the ones users should read.
    """
    try:
        instance.full_clean(exclude=set(errors), validate_constraints=False)
    except ValidationError as exc:
        errors = merge_errors(errors, exc.message_dict)
    if errors:
        raise ValidationError(errors)


def _lock_partner(partner: Partner) -> Partner:
    """Re-read the partner under a row lock so two status changes cannot interleave."""
    if partner is None or partner.pk is None:
        raise ValidationError({"partner": ["unknown partner"]})
    try:
        # NO KEY: rows that reference the partner (registrations, touches) can still be inserted.
        return Partner.objects.select_for_update(no_key=True).get(pk=partner.pk)
    except Partner.DoesNotExist:
        raise ValidationError({"partner": ["unknown partner"]}) from None


def partner_apply(
    *,
    name: str,
    type: str,  # noqa: A002 - the field is called type everywhere (model, CSV, API)
    join_source: JoinSource,
    applied_at: date,
    tier: str = "",
    referred_by: Partner | None = None,
    manager: User | None = None,
    key: str | None = None,
) -> Partner:
    """Record an application; the organisation is not a partner until `partner_approve`."""
    errors: dict[str, list[str]] = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = ["is required"]
    if join_source is None or join_source.pk is None:
        errors["join_source"] = ["unknown join source"]
    if applied_at is None:
        errors["applied_at"] = ["is required"]
    if referred_by is not None and not referred_by.has_joined:
        errors["referred_by"] = [f"{referred_by} is not an approved partner, so it cannot refer others"]
    if key and Partner.objects.filter(key=key).exists():
        errors["key"] = [KEY_TAKEN.format(model="a partner", key=key)]
    partner = Partner(
        name=name,
        type=type,
        tier=(tier or "").strip(),
        status=Partner.Status.APPLIED,
        join_source=join_source if "join_source" not in errors else None,
        applied_at=applied_at,
        referred_by=referred_by,
        manager=manager,
        key=key or None,
    )
    _full_clean(partner, errors)
    with transaction.atomic():
        partner.save()
        record_event(type=EventType.PARTNER_APPLIED, obj=partner, partner_id=partner.pk)
    return partner


def partner_approve(*, partner: Partner, joined_at: date | None = None) -> Partner:
    """Approve an application: status active, `joined_at` the approval date (default: program today)."""
    with transaction.atomic():
        partner = _lock_partner(partner)
        joined_at = joined_at or program_today()
        if partner.status != Partner.Status.APPLIED:
            errors = {"status": [f"only an application can be approved; {partner} is {partner.status}"]}
        else:
            errors = partner_errors(
                status=Partner.Status.ACTIVE, applied_at=partner.applied_at, joined_at=joined_at
            )
            if messages := date_errors(joined_at):
                errors.setdefault("joined_at", []).extend(messages)
        if errors:
            raise ValidationError(errors)
        partner.status = Partner.Status.ACTIVE
        partner.joined_at = joined_at
        partner.save(update_fields=["status", "joined_at", "updated_at"])
        record_event(
            type=EventType.PARTNER_APPROVED,
            obj=partner,
            partner_id=partner.pk,
            before={"status": Partner.Status.APPLIED, "joined_at": None},
        )
    return partner


def partner_reject(*, partner: Partner) -> Partner:
    with transaction.atomic():
        partner = _lock_partner(partner)
        if partner.status != Partner.Status.APPLIED:
            raise ValidationError(
                {"status": [f"only an application can be rejected; {partner} is {partner.status}"]}
            )
        partner.status = Partner.Status.REJECTED
        partner.save(update_fields=["status", "updated_at"])
        record_event(
            type=EventType.PARTNER_REJECTED,
            obj=partner,
            partner_id=partner.pk,
            before={"status": Partner.Status.APPLIED},
        )
    return partner


def partner_set_status(*, partner: Partner, status: str) -> Partner:
    """Move a joined partner between active, inactive and churned (see partners.rules.PARTNER_TRANSITIONS).

    Applications go through `partner_approve` / `partner_reject`, which set or keep `joined_at`.
    """
    with transaction.atomic():
        partner = _lock_partner(partner)
        if status not in Partner.JOINED_STATUSES:
            raise ValidationError(
                {"status": [f"must be one of active, inactive, churned (use approve/reject for {status})"]}
            )
        if partner.status not in Partner.JOINED_STATUSES:
            raise ValidationError(
                {"status": [f"{partner} is {partner.status}: use approve/reject for applications"]}
            )
        if errors := partner_transition_errors(old_status=partner.status, new_status=status):
            raise ValidationError(errors)
        partner.status = status
        partner.save(update_fields=["status", "updated_at"])
    return partner


def _user_errors(*, username: str, email: str, password: str) -> tuple[User, dict[str, list[str]]]:
    user_model = get_user_model()
    errors: dict[str, list[str]] = {}
    username = (username or "").strip()
    user = user_model(username=username, email=(email or "").strip())
    if username and user_model.objects.filter(username__iexact=username).exists():
        errors["username"] = [f"the username {username!r} is taken"]
    try:
        user.full_clean(exclude={"password", *errors})
    except ValidationError as exc:
        errors = merge_errors(errors, exc.message_dict)
    try:
        validate_password(password or "", user=user)
    except ValidationError as exc:
        errors = merge_errors(errors, {"password": list(exc.messages)})
    return user, errors


def partner_user_create(
    *, partner: Partner, username: str, email: str, password: str, role: str
) -> PartnerUser:
    """A portal login that acts for `partner` (admin or member); never staff."""
    user, errors = _user_errors(username=username, email=email, password=password)
    if partner is None or partner.pk is None:
        errors["partner"] = ["unknown partner"]
    if role not in PartnerUser.Role.values:
        errors["role"] = [f"must be one of {', '.join(PartnerUser.Role.values)}"]
    if errors:
        raise ValidationError(errors)
    try:
        with transaction.atomic():
            user.set_password(password)
            user.save()
            membership = PartnerUser.objects.create(user=user, partner=partner, role=role)
    except IntegrityError as exc:
        # Two sign-ups with one username at once: the check above passed for both.
        raise ValidationError({"username": ["A user with that username already exists."]}) from exc
    return membership


def staff_user_create(*, username: str, email: str, password: str, role: StaffRole) -> User:
    """A vendor-side login in one staff role; `is_staff` so it can use the admin its role allows."""
    user, errors = _user_errors(username=username, email=email, password=password)
    try:
        role = StaffRole(role)
    except ValueError:
        errors["role"] = [f"must be one of {', '.join(r.value for r in StaffRole)}"]
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        user.is_staff = True
        user.set_password(password)
        user.save()
        group, _ = Group.objects.get_or_create(name=role.value)
        user.groups.add(group)
    return user
