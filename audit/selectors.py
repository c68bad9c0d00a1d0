"""Reads of the trail: the staff listing and a partner's view of its own registration."""

from auditlog.models import LogEntry
from django.db.models import QuerySet

from audit.display import EntryView, present
from deals.models import DealRegistration
from partners.models import Partner, PartnerUser
from prm.acting import Channel

# What a partner may read of its registration's history: what it sees on the registration itself.
# Left out: who decided (a staff login), the conflicting claim (another partner's) and the reason
# a conflict was overridden (staff-internal), and the bookkeeping fields (key, submitter, partner).
PARTNER_VISIBLE_REGISTRATION_FIELDS = (
    "status",
    "account",
    "amount",
    "expected_close_date",
    "notes",
    "submitted_at",
    "protection_expires_at",
    "decided_at",
    "decision_reason",
    "deal",
)
PROGRAM_TEAM = "Partner program team"
AUTOMATIC = "Automatic (program rules)"


def log_entries() -> QuerySet[LogEntry]:
    """Every entry, newest first, with what the listing shows of each joined in."""
    return LogEntry.objects.select_related("content_type", "actor").order_by("-timestamp", "-id")


def registration_history(*, registration: DealRegistration, partner: Partner) -> list[EntryView]:
    """The history of a registration as the partner that owns it may read it, oldest first.

    Only changes to PARTNER_VISIBLE_REGISTRATION_FIELDS are shown, and entries with none are left
    out. People of the partner are named; anyone else is "the partner program team". The history
    starts after the last deletion of a row with this id and after the last change of partner,
    so a partner never reads entries about another partner's registration.
    """
    if registration.partner_id != partner.pk:
        return []
    entries = list(
        LogEntry.objects.get_for_object(registration)
        .select_related("content_type")
        .order_by("timestamp", "id")
    )
    start = 0
    for index, entry in enumerate(entries):
        if entry.action == LogEntry.Action.CREATE:
            start = index  # a row with this id begins here (an earlier one was deleted)
        elif entry.action == LogEntry.Action.DELETE or "partner" in (entry.changes or {}):
            start = index + 1
    entries = entries[start:]
    actor_ids = {entry.actor_id for entry in entries if entry.actor_id is not None}
    own_people = dict(
        PartnerUser.objects.filter(partner=partner, user_id__in=actor_ids).values_list(
            "user_id", "user__username"
        )
    )

    def actor_label(entry: LogEntry) -> str:
        if entry.actor_id in own_people:
            return own_people[entry.actor_id]
        if (entry.additional_data or {}).get("channel") == Channel.TASK:
            return AUTOMATIC
        return PROGRAM_TEAM

    views = present(entries, fields=PARTNER_VISIBLE_REGISTRATION_FIELDS, actor_label=actor_label)
    return [view for view in views if view.changes]
