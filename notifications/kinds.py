"""Every kind of notification, declared once: what it is, who receives it, whether it can be muted.

A kind's templates live in templates/notifications/<name>/ (subject.txt, body.txt, body.html);
docs/notifications.md lists the context each one is rendered with.
"""

from dataclasses import dataclass
from enum import StrEnum


class Audience(StrEnum):
    """Who a kind is for; the preferences page offers a user the kinds of its own audience."""

    STAFF = "staff"  # partner managers, sales ops and the program inbox
    PARTNER = "partner"  # the people who act for a partner (PartnerUser)
    APPLICANT = "applicant"  # an address with no user yet: applicants and invitees
    ANY_USER = "any_user"  # whoever the mail is about (account mail such as a password reset)


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    description: str
    recipients: str
    audience: Audience
    # A user may turn the email off; the in-app notification is always kept.
    optional: bool = True
    # The body carries a live credential (a reset or invitation link): the outbox row's text and
    # html are blanked once it is sent or given up on, and the admin never shows them.
    secret: bool = False


_KINDS = (
    Kind(
        "registration_submitted",
        "Deal registration submitted",
        "A partner registered a deal that waits for a decision.",
        "The partner's manager; the program inbox (NOTIFICATIONS_PROGRAM_INBOX) when it has none.",
        Audience.STAFF,
    ),
    Kind(
        "registration_approved",
        "Deal registration approved",
        "A deal registration of your partner was approved and became a deal.",
        "The partner's active users.",
        Audience.PARTNER,
    ),
    Kind(
        "registration_rejected",
        "Deal registration rejected",
        "A deal registration of your partner was rejected, with the reason.",
        "The partner's active users.",
        Audience.PARTNER,
    ),
    Kind(
        "registration_expiring",
        "Deal registration protection ending",
        "The protection of a pending or approved registration ends within a few days (sent once).",
        "The partner's active users.",
        Audience.PARTNER,
    ),
    Kind(
        "registration_expired",
        "Deal registration expired",
        "A registration was not decided before its protection window ended.",
        "The partner's active users.",
        Audience.PARTNER,
    ),
    Kind(
        "application_received",
        "Partner application received",
        "Someone applied to join the partner program.",
        "Partner managers; the program inbox (NOTIFICATIONS_PROGRAM_INBOX).",
        Audience.STAFF,
    ),
    Kind(
        "application_decided",
        "Partner application decided",
        "The applicant learns whether its application was approved or declined.",
        "The applicant's contact address.",
        Audience.APPLICANT,
        optional=False,
        secret=True,
    ),
    Kind(
        "invitation",
        "Invitation to the partner portal",
        "An invitation to create a login that acts for a partner.",
        "The invited address.",
        Audience.APPLICANT,
        optional=False,
        secret=True,
    ),
    Kind(
        "password_reset",
        "Password reset",
        "A link to choose a new password, sent when someone asks for one.",
        "The address of the account.",
        Audience.ANY_USER,
        optional=False,
        secret=True,
    ),
    Kind(
        "webhook_disabled",
        "Webhook endpoint disabled",
        "A webhook endpoint you registered kept failing for the whole retry window and was disabled.",
        "The user who registered the endpoint.",
        Audience.STAFF,
        optional=False,
    ),
)

KINDS: dict[str, Kind] = {kind.name: kind for kind in _KINDS}


def get_kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(
            f"unknown notification kind {name!r}; declare it in notifications/kinds.py"
        ) from None
