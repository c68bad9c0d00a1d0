"""The KPIS.md "Data quality" rules and the partner lifecycle rules as plain functions.

Model constraints enforce them in the database; the service layer, the admin forms (through the
models' `clean()`) and the CSV importer call these functions so every entry point refuses bad input
with the same message. Functions return field -> messages dicts (empty when valid) and never touch
the database.
"""

import re
from datetime import date, datetime
from decimal import Decimal

from program.validation import amount_errors as plausible_amount_errors

CLOSED_BEFORE_CREATED = "closed_at is before created_at"
CLOSED_STATUS_WITHOUT_CLOSED_AT = "a {status} deal needs closed_at"
OPEN_WITH_CLOSED_AT = "an open deal has no closed_at; set status to won or lost to close it"
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

DECIDED_BEFORE_SUBMITTED = "decided_at is before submitted_at"
DECISION_WITHOUT_DECIDED_AT = "an {status} registration needs decided_at"

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")


def normalise_domain(value: str | None) -> str:
    """`https://WWW.Acme.com/path` -> `acme.com`; also accepts an email address."""
    if not value:
        return ""
    domain = value.strip().lower()
    if "@" in domain and "://" not in domain:
        domain = domain.rsplit("@", 1)[1]
    domain = _SCHEME.sub("", domain)
    domain = domain.split("/", 1)[0].split("?", 1)[0].split(":", 1)[0].rstrip(".")
    if domain.startswith("www."):
        domain = domain[4:]
    return domain


def amount_errors(amount: Decimal | None) -> list[str]:
    """Greater than 0 and within the plausible range (program.validation)."""
    return [] if amount is None else plausible_amount_errors(amount)


def domain_errors(domain: str) -> list[str]:
    """Messages for a customer domain, given already normalised; empty when it is usable for matching."""
    if not domain:
        return ["is required: the customer's web or email domain, e.g. acme.com"]
    if "." not in domain or " " in domain:
        return [f"{domain!r} is not a domain name such as acme.com"]
    return []


def registration_errors(
    *, amount: Decimal | None, submitted_at: datetime | None, decided_at: datetime | None, status: str | None
) -> dict[str, list[str]]:
    """Field -> messages for a registration that breaks a rule the database also holds."""
    errors: dict[str, list[str]] = {}
    if amount_errors(amount):
        errors["amount"] = amount_errors(amount)
    if decided_at is not None and submitted_at is not None and decided_at < submitted_at:
        errors["decided_at"] = [DECIDED_BEFORE_SUBMITTED]
    if status in ("approved", "rejected") and decided_at is None:
        errors.setdefault("decided_at", []).append(DECISION_WITHOUT_DECIDED_AT.format(status=status))
    return errors


def deal_errors(
    *, amount: Decimal | None, created_at: datetime | None, closed_at: datetime | None, status: str
) -> dict[str, list[str]]:
    """Field -> messages for a deal that breaks a data-quality rule; empty when it is valid."""
    errors: dict[str, list[str]] = {}
    if amount_errors(amount):
        errors["amount"] = amount_errors(amount)
    if closed_at is not None and created_at is not None and closed_at < created_at:
        errors.setdefault("closed_at", []).append(CLOSED_BEFORE_CREATED)
    if status in ("won", "lost") and closed_at is None:
        errors.setdefault("closed_at", []).append(CLOSED_STATUS_WITHOUT_CLOSED_AT.format(status=status))
    return merge_errors(errors, deal_status_errors(status=status, closed_at=closed_at))


def deal_status_errors(*, status: str, closed_at: datetime | None) -> dict[str, list[str]]:
    """Beyond KPIS.md: an open deal carrying closed_at is contradictory, so it is refused too."""
    if status == "open" and closed_at is not None:
        return {"closed_at": [OPEN_WITH_CLOSED_AT]}
    return {}


def partner_errors(*, status: str, applied_at: date | None, joined_at: date | None) -> dict[str, list[str]]:
    """A partner's dates must match its lifecycle status (joined_at is the approval date)."""
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
    partner, *, field: str = "partner", allow_churned: bool = True
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


def merge_errors(*error_dicts: dict[str, list[str]]) -> dict[str, list[str]]:
    merged: dict[str, list[str]] = {}
    for errors in error_dicts:
        for field, messages in errors.items():
            merged.setdefault(field, []).extend(messages)
    return merged
