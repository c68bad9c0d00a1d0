"""Applications to join the program made at /apply/, and the manager's decision on them.

An application is a Partner in status `applied` (made by `partner_apply`, so the KPIs count it in
its join source on `applied_at`) plus an `Application` row with what only the applicant told us.
Approval goes through `partner_approve` and invites the contact as the partner's first admin;
rejection goes through `partner_reject` and tells the applicant why.
"""

import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from partners import events
from partners.invitations import invitation_create
from partners.models import Application, JoinSource, Partner, PartnerProfile, PartnerUser
from partners.services import partner_apply, partner_approve, partner_reject
from program.models import program_today

logger = logging.getLogger(__name__)

KEY_MAX_LENGTH = 100
ALREADY_PENDING = "an application from this address is already waiting for review"


@dataclass(frozen=True)
class ResolvedSource:
    """The join source an application gets, the referring partner, and how they were decided."""

    join_source: JoinSource
    referred_by: Partner | None
    origin: str


def _source_with_key(key: str, *, kind: str, name: str) -> JoinSource:
    """The join source with `key`; else the oldest of `kind`; else a new one with `key` (first need)."""
    source = (
        JoinSource.objects.filter(key=key).first()
        or JoinSource.objects.filter(kind=kind).order_by("pk").first()
    )
    if source is None:
        source, _ = JoinSource.objects.get_or_create(key=key, defaults={"name": name, "kind": kind})
    return source


def default_join_source() -> JoinSource:
    return _source_with_key(settings.APPLY_DEFAULT_SOURCE_KEY, kind=JoinSource.Kind.WEBSITE, name="Website")


def referral_join_source() -> JoinSource:
    return _source_with_key(
        settings.APPLY_REFERRAL_SOURCE_KEY, kind=JoinSource.Kind.REFERRAL, name="Partner referral"
    )


def offered_join_sources():
    """The sources an applicant may pick ("how did you hear of us"); referrals come by link only."""
    return JoinSource.objects.filter(offered_on_application=True).exclude(kind=JoinSource.Kind.REFERRAL)


def referring_partner(ref: str) -> Partner | None:
    """The joined partner a referral link names, by its key (or its id when it has no key)."""
    ref = (ref or "").strip()
    if not ref or len(ref) > KEY_MAX_LENGTH:
        return None
    partner = Partner.objects.filter(key=ref).first()
    if partner is None and ref.isdigit() and len(ref) < 19:
        partner = Partner.objects.filter(pk=int(ref), key__isnull=True).first()
    return partner if partner is not None and partner.has_joined else None


def tracked_join_source(source: str) -> JoinSource | None:
    source = (source or "").strip()
    if not source or len(source) > KEY_MAX_LENGTH:
        return None
    return JoinSource.objects.filter(key=source).first()


def resolve_join_source(
    *, source: str = "", ref: str = "", chosen: JoinSource | None = None
) -> ResolvedSource:
    """Decide an application's join source from its link, never trusting the link blindly.

    A referral link (`ref`, a joined partner's key) gives the referral source (or the link's
    `source` when that is a referral source too) and records the referrer; a tracked link
    (`source`, a join source key) gives that source; otherwise the applicant's choice among the
    offered sources, else the default website source. A key that names nothing is logged and
    ignored.
    """
    referrer = referring_partner(ref) if ref else None
    tracked = tracked_join_source(source) if source else None
    if ref and referrer is None:
        logger.warning(
            "Application with an unknown or not joined referring partner ref=%r; ignored", ref[:200]
        )
    if source and tracked is None:
        logger.warning("Application with an unknown join source key source=%r; falling back", source[:200])
    if referrer is not None:
        if tracked is not None and tracked.kind == JoinSource.Kind.REFERRAL:
            return ResolvedSource(tracked, referrer, Application.SourceOrigin.REFERRAL)
        return ResolvedSource(referral_join_source(), referrer, Application.SourceOrigin.REFERRAL)
    if tracked is not None:
        return ResolvedSource(tracked, None, Application.SourceOrigin.LINK)
    if chosen is not None and offered_join_sources().filter(pk=chosen.pk).exists():
        return ResolvedSource(chosen, None, Application.SourceOrigin.CHOSEN)
    return ResolvedSource(default_join_source(), None, Application.SourceOrigin.DEFAULT)


def application_submit(
    *,
    company: str,
    partner_type: str,
    contact_name: str,
    contact_email: str,
    website: str,
    pitch: str,
    source: str = "",
    ref: str = "",
    chosen_source: JoinSource | None = None,
    client_address: str | None = None,
) -> Application:
    """Record an application: a Partner in status `applied` (applied today) and its Application.

    The applicant and the partner managers (and the program inbox) are told after commit.
    """
    contact_email = (contact_email or "").strip()
    contact_name = (contact_name or "").strip()
    errors: dict[str, list[str]] = {}
    if not contact_name:
        errors["contact_name"] = ["is required"]
    if not (pitch or "").strip():
        errors["pitch"] = ["is required"]
    if (
        contact_email
        and Application.objects.filter(
            contact_email__iexact=contact_email, partner__status=Partner.Status.APPLIED
        ).exists()
    ):
        errors["contact_email"] = [ALREADY_PENDING]
    application = Application(
        contact_name=contact_name,
        contact_email=contact_email,
        website=(website or "").strip(),
        pitch=(pitch or "").strip(),
        requested_source=(source or "")[:KEY_MAX_LENGTH],
        requested_ref=(ref or "")[:KEY_MAX_LENGTH],
        client_address=client_address or None,
        submitted_at=timezone.now(),
    )
    try:
        application.full_clean(exclude={"partner", "source_origin", *errors}, validate_constraints=False)
    except ValidationError as exc:
        errors = {**exc.message_dict, **errors}
    with transaction.atomic():
        # Inside the transaction: a default or referral source created on first need is rolled
        # back with a refused application.
        resolved = resolve_join_source(source=source, ref=ref, chosen=chosen_source)
        application.source_origin = resolved.origin
        try:
            partner = partner_apply(
                name=company,
                type=partner_type,
                join_source=resolved.join_source,
                applied_at=program_today(),
                referred_by=resolved.referred_by,
            )
        except ValidationError as exc:
            raise ValidationError({**_company_errors(exc), **errors}) from None
        if errors:
            raise ValidationError(errors)  # rolls back the partner
        application.partner = partner
        application.save()
        events.application_received.send(
            sender=Application, application=application, contact_email=contact_email
        )
    return application


def _company_errors(exc: ValidationError) -> dict[str, list[str]]:
    """partner_apply's errors under the form's names (name -> company, type -> partner_type)."""
    renamed = {"name": "company", "type": "partner_type"}
    return {renamed.get(field, field): messages for field, messages in exc.message_dict.items()}


def _lock_application(application: Application) -> Application:
    return (
        Application.objects.select_for_update().select_related("partner__join_source").get(pk=application.pk)
    )


def application_approve(*, application: Application, decided_by: User) -> Application:
    """Approve: the partner becomes active (joined today, `partner_approve`), gets its profile from
    the application, and the contact is invited as its first partner admin."""
    with transaction.atomic():
        application = _lock_application(application)
        partner = partner_approve(partner=application.partner)
        application.partner = partner
        application.decided_at = timezone.now()
        application.decided_by = decided_by
        application.save(update_fields=["decided_at", "decided_by"])
        PartnerProfile.objects.update_or_create(
            partner=partner,
            defaults={
                "website": application.website,
                "contact_name": application.contact_name,
                "contact_email": application.contact_email,
                "updated_by": decided_by,
            },
        )
        invitation_create(
            partner=partner,
            email=application.contact_email,
            role=PartnerUser.Role.ADMIN,
            invited_by=decided_by,
        )
        events.application_decided.send(sender=Application, application=application, approved=True, reason="")
    return application


def application_reject(*, application: Application, decided_by: User, reason: str) -> Application:
    """Reject with a reason the applicant reads (`partner_reject`: the partner becomes `rejected`)."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": ["Say why the application is rejected; the applicant reads it."]})
    with transaction.atomic():
        application = _lock_application(application)
        application.partner = partner_reject(partner=application.partner)
        application.decided_at = timezone.now()
        application.decided_by = decided_by
        application.rejection_reason = reason
        application.full_clean(exclude={"partner"}, validate_constraints=False)
        application.save(update_fields=["decided_at", "decided_by", "rejection_reason"])
        events.application_decided.send(
            sender=Application, application=application, approved=False, reason=reason
        )
    return application
