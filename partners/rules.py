"""The partner lifecycle rules (KPIS.md "Partner lifecycle", docs/domain.md) as plain functions.

Model constraints enforce them in the database; the services, the admin forms (through the models'
`clean()`) and the CSV importer call these functions, so every entry point refuses a bad status or
date with the same message. Functions return field -> messages dicts (empty when valid); only
`acting_partner_errors` looks at a Partner instance, and none of them queries the database.
"""

from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from partners.models import Partner

UNKNOWN_PARTNER = "unknown partner"
PARTNER_NOT_JOINED = "{partner} is not an approved partner (status: {status})"
PARTNER_LEFT = "{partner} has left the program (status: churned)"
JOINED_BEFORE_APPLIED = "joined_at ({joined_at}) is before applied_at ({applied_at})"
JOINED_STATUS_WITHOUT_JOINED_AT = "a partner with status {status} needs joined_at (its approval date)"
UNJOINED_STATUS_WITH_JOINED_AT = "a partner with status {status} has no joined_at (it was never approved)"
REFERRED_BY_ITSELF = "a partner cannot refer itself"
TRANSITION_NOT_ALLOWED = "cannot change status from {old} to {new}; allowed from {old}: {allowed}"

# The partner lifecycle: applied -> active | rejected; active <-> inactive; active/inactive ->
# churned; churned -> active (a win-back keeps the original joined_at). Rejected is final: a
# rejected organisation that applies again is a new application.
PARTNER_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "applied": ("active", "rejected"),
    "active": ("inactive", "churned"),
    "inactive": ("active", "churned"),
    "churned": ("active",),
    "rejected": (),
}
JOINED_STATUSES = ("active", "inactive", "churned")


def partner_errors(
    *, status: str | None, applied_at: date | None, joined_at: date | None
) -> dict[str, list[str]]:
    """A partner's dates must match its lifecycle status (joined_at is the approval date; None: a
    status the caller could not read, reported on its own)."""
    errors: dict[str, list[str]] = {}
    if joined_at is not None and applied_at is not None and joined_at < applied_at:
        errors["joined_at"] = [JOINED_BEFORE_APPLIED.format(joined_at=joined_at, applied_at=applied_at)]
    if status in JOINED_STATUSES and joined_at is None:
        errors.setdefault("joined_at", []).append(JOINED_STATUS_WITHOUT_JOINED_AT.format(status=status))
    if status not in JOINED_STATUSES and joined_at is not None:
        errors.setdefault("joined_at", []).append(UNJOINED_STATUS_WITH_JOINED_AT.format(status=status))
    return errors


def partner_transition_errors(*, old_status: str, new_status: str) -> dict[str, list[str]]:
    if old_status == new_status or new_status in PARTNER_TRANSITIONS.get(old_status, ()):
        return {}
    allowed = ", ".join(PARTNER_TRANSITIONS.get(old_status, ())) or "nothing (final status)"
    return {"status": [TRANSITION_NOT_ALLOWED.format(old=old_status, new=new_status, allowed=allowed)]}


def acting_partner_errors(
    partner: "Partner | None", *, field: str = "partner", allow_churned: bool = True
) -> dict[str, list[str]]:
    """A touch, registration or sourced deal needs a known partner that was approved into the program.

    `partner` is a Partner instance or None; an unsaved instance counts as unknown.
    """
    if partner is None or partner.pk is None:
        return {field: [UNKNOWN_PARTNER]}
    if partner.joined_at is None:
        return {field: [PARTNER_NOT_JOINED.format(partner=partner, status=partner.status)]}
    if not allow_churned and partner.status == "churned":
        return {field: [PARTNER_LEFT.format(partner=partner)]}
    return {}


# Tiers are free text (imported from CRMs); the usual ladder sorts from the top, anything else after
# it alphabetically (docs/domain.md "Tiers").
TIER_LADDER = ("diamond", "platinum", "gold", "silver", "bronze", "registered", "member")


def tier_sort_key(tier: str) -> tuple[int, str]:
    """Sort key that puts tiers in ladder order, highest first, unknown tiers after (A→Z)."""
    name = tier.strip().lower()
    rank = TIER_LADDER.index(name) if name in TIER_LADDER else len(TIER_LADDER)
    return rank, name
