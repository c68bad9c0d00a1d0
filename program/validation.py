"""The plausible range of every date and amount the domain accepts, in one place.

The model fields (`program.fields`), so the admin, the services and every form built on them, the
API's input fields (`api.fields`), the portal's forms and the CSV importer all call these
functions, so a value is refused with the same message wherever it comes in (docs/domain.md,
"Plausible values"):

- dates and datetimes from 1 January of `PLAUSIBLE_EARLIEST_YEAR` (2000) to `PLAUSIBLE_YEARS_AHEAD`
  (10) years after today; datetimes carry a UTC offset;
- amounts greater than 0 with at most 12 digits, 2 of them decimals (below 10,000,000,000);
- numbers written in plain notation with ASCII digits (`1250.00`; not `1E+5`, not `١٢٥٠`);
- no NUL character in any text.

Functions named `*_errors` return messages (empty when valid); `parse_*` return the value or raise
`ValueError` with the message; `validate_*` are Django validators (they raise ValidationError).
"""

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

MONEY_MAX_DIGITS = 12
MONEY_DECIMAL_PLACES = 2
MAX_AMOUNT = Decimal(10) ** (MONEY_MAX_DIGITS - MONEY_DECIMAL_PLACES) - Decimal("0.01")
CENT = Decimal("0.01")
TARGET_MAX_DIGITS = 20
TARGET_DECIMAL_PLACES = 4
MAX_TARGET = Decimal(10) ** (TARGET_MAX_DIGITS - TARGET_DECIMAL_PLACES) - Decimal("0.0001")

# ASCII digits only: Python's `\d` and Decimal() also accept other scripts' digits ("٣" is 3).
_PLAIN_NUMBER = re.compile(r"^[+-]?[0-9]+(\.[0-9]+)?$", re.ASCII)
# Decimal() and float() accept these; refusing them keeps the message about the value, not a crash.
_TOO_LONG_NUMBER = 40

AMOUNT_NOT_POSITIVE = "must be greater than 0"
AMOUNT_TOO_LARGE = f"must be below {MAX_AMOUNT + CENT:,.0f} (at most {MONEY_MAX_DIGITS} digits)"
AMOUNT_TOO_PRECISE = f"has more than {MONEY_DECIMAL_PLACES} decimal places"
NOT_PLAIN_NUMBER = "{value!r} is not a number in plain notation with ASCII digits (e.g. 1250.00)"
NEGATIVE_TARGET = "must not be negative"
TARGET_TOO_LARGE = f"must be below {MAX_TARGET + Decimal('0.0001'):,.0f}"
TARGET_TOO_PRECISE = f"has more than {TARGET_DECIMAL_PLACES} decimal places"
DATE_OUT_OF_RANGE = "{value} is outside the accepted range {first} to {last}"
NAIVE_DATETIME = "needs a time zone (an offset such as +00:00)"
NUL_IN_TEXT = "must not contain the NUL character"


def earliest_date() -> date:
    return date(settings.PLAUSIBLE_EARLIEST_YEAR, 1, 1)


def latest_date(today: date | None = None) -> date:
    """The last day of the accepted range: `PLAUSIBLE_YEARS_AHEAD` years after today (UTC)."""
    today = today or timezone.now().date()
    year = today.year + settings.PLAUSIBLE_YEARS_AHEAD
    return (
        today.replace(year=year, day=28) if (today.month, today.day) == (2, 29) else today.replace(year=year)
    )


def earliest_month_index() -> int:
    """The first month a KPI period may start in (`year * 12 + month - 1`, as kpis.periods)."""
    return settings.PLAUSIBLE_EARLIEST_YEAR * 12


def latest_month_index(today: date | None = None) -> int:
    """The last month a KPI period may fall in: the month of `latest_date`."""
    last = latest_date(today)
    return last.year * 12 + last.month - 1


def year_errors(year: int) -> list[str]:
    first, last = earliest_date().year, latest_date().year
    if first <= year <= last:
        return []
    return [f"year {year} is outside the accepted range {first} to {last}"]


def date_errors(value: date) -> list[str]:
    day = value.date() if isinstance(value, datetime) else value
    first, last = earliest_date(), latest_date()
    if first <= day <= last:
        return []
    return [DATE_OUT_OF_RANGE.format(value=day.isoformat(), first=first.isoformat(), last=last.isoformat())]


def datetime_errors(value: datetime) -> list[str]:
    if timezone.is_naive(value):
        return [NAIVE_DATETIME]
    return date_errors(value)


def amount_errors(value: Decimal) -> list[str]:
    """A money amount: greater than 0, at most 12 digits of which 2 decimals."""
    if not value.is_finite():
        return [NOT_PLAIN_NUMBER.format(value=str(value))]
    if value <= 0:
        return [AMOUNT_NOT_POSITIVE]
    errors = []
    if value > MAX_AMOUNT:
        errors.append(AMOUNT_TOO_LARGE)
    if value != value.quantize(CENT, rounding="ROUND_DOWN"):
        errors.append(AMOUNT_TOO_PRECISE)
    return errors


def target_value_errors(value: Decimal) -> list[str]:
    """A target: 0 or more (a count, an amount, a rate or days), at most 4 decimals."""
    if not value.is_finite():
        return [NOT_PLAIN_NUMBER.format(value=str(value))]
    if value < 0:
        return [NEGATIVE_TARGET]
    errors = []
    if value > MAX_TARGET:
        errors.append(TARGET_TOO_LARGE)
    if value != value.quantize(Decimal("0.0001"), rounding="ROUND_DOWN"):
        errors.append(TARGET_TOO_PRECISE)
    return errors


def text_errors(value: str) -> list[str]:
    return [NUL_IN_TEXT] if "\x00" in value else []


def parse_plain_decimal(text: str) -> Decimal:
    """`1250.00` -> Decimal; ValueError for exponents, other scripts' digits, NaN, separators."""
    stripped = text.strip()
    if len(stripped) > _TOO_LONG_NUMBER or not _PLAIN_NUMBER.match(stripped):
        raise ValueError(NOT_PLAIN_NUMBER.format(value=text[:_TOO_LONG_NUMBER]))
    try:
        return Decimal(stripped)
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only valid decimals
        raise ValueError(NOT_PLAIN_NUMBER.format(value=text)) from exc


def decimal_from_input(value: object) -> Decimal:
    """A number as a client sends it: a plain-notation string, a JSON integer or a JSON float.

    Floats are read through their shortest repr, so 1250.1 stays 1250.1; `1e+16` is refused like
    the string `1E+16` would be.
    """
    if isinstance(value, bool):
        raise ValueError(NOT_PLAIN_NUMBER.format(value=value))
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return parse_plain_decimal(repr(value))
    if isinstance(value, str):
        return parse_plain_decimal(value)
    raise ValueError(NOT_PLAIN_NUMBER.format(value=value))


# --- Django validators ---------------------------------------------------------------------------
def _raise(messages: list[str], code: str) -> None:
    if messages:
        raise ValidationError(messages, code=code)


def validate_plausible_date(value: date) -> None:
    _raise(date_errors(value), "date_out_of_range")


def validate_plausible_datetime(value: datetime) -> None:
    _raise(datetime_errors(value), "datetime_out_of_range")


def validate_amount(value: Decimal) -> None:
    _raise(amount_errors(value), "invalid_amount")


def validate_target_value(value: Decimal) -> None:
    _raise(target_value_errors(value), "invalid_target")


def validate_no_nul(value: str) -> None:
    _raise(text_errors(value), "null_characters_not_allowed")


def merge_errors(*error_dicts: dict[str, list[str]]) -> dict[str, list[str]]:
    """One field -> messages dict from several, the messages of a field in order."""
    merged: dict[str, list[str]] = {}
    for errors in error_dicts:
        for field, messages in errors.items():
            merged.setdefault(field, []).extend(messages)
    return merged
