"""The KPIS.md "Data quality" rules as plain functions.

Model constraints enforce them in the database; the service layer, the admin forms and the CSV
importer call these functions so every entry point refuses bad input with the same message.
"""

import re
from datetime import datetime
from decimal import Decimal

AMOUNT_NOT_POSITIVE = "must be greater than 0"
CLOSED_BEFORE_CREATED = "closed_at is before created_at"
CLOSED_STATUS_WITHOUT_CLOSED_AT = "a {status} deal needs closed_at"

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
    if amount is not None and amount <= 0:
        return [AMOUNT_NOT_POSITIVE]
    return []


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
    return errors
