"""The KPIS.md "Data quality" rules for deals, registrations and touches as plain functions.

The partner lifecycle rules (statuses, transitions, who may act) live in `partners.rules`.

Model constraints enforce them in the database; the service layer, the admin forms (through the
models' `clean()`) and the CSV importer call these functions so every entry point refuses bad input
with the same message. Functions return field -> messages dicts (empty when valid) and never touch
the database.
"""

import re
from datetime import datetime
from decimal import Decimal

from program.validation import amount_errors as plausible_amount_errors
from program.validation import merge_errors

CLOSED_BEFORE_CREATED = "closed_at is before created_at"
CLOSED_STATUS_WITHOUT_CLOSED_AT = "a {status} deal needs closed_at"
OPEN_WITH_CLOSED_AT = "an open deal has no closed_at; set status to won or lost to close it"

# A partner's second registration of a customer while its first still awaits review is a duplicate,
# refused with this message. Once the first is decided (approved: a new opportunity at the same
# customer is normal; rejected) or expired, the partner may register the customer again
# (docs/domain.md "Registering the same customer twice").
ALREADY_REGISTERED = (
    "you already registered this customer and it awaits review: registration #{pk} (submitted "
    "{submitted}, protected until {until}); wait for the decision instead of registering it again"
)

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
