"""Cell parsers for INTERCHANGE.md CSV values: each returns the value or raises CellError(reason)."""

import re
from datetime import date, datetime, time, tzinfo
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from kpis.periods import parse_period as kpi_period
from program.validation import (
    AMOUNT_NOT_POSITIVE,
    MONEY_DECIMAL_PLACES,
    MONEY_MAX_DIGITS,
    TARGET_DECIMAL_PLACES,
    TARGET_MAX_DIGITS,
    amount_errors,
    date_errors,
    earliest_date,
    latest_date,
    target_value_errors,
    year_errors,
)

_Moment = TypeVar("_Moment", date, datetime)

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?$", re.ASCII
)
_DECIMAL = re.compile(r"^[+-]?\d+(\.\d+)?$", re.ASCII)
_MONTH = re.compile(r"^(\d{4})-(\d{2})$", re.ASCII)
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$", re.ASCII)
_YEAR = re.compile(r"^(\d{4})$", re.ASCII)


class CellError(ValueError):
    """A cell that cannot be read; the message is the reason shown to the user."""


Bounds = tuple[date, date]


def plausible_bounds() -> Bounds:
    """The accepted range of dates now (program.validation): computed once per import, not per cell."""
    return earliest_date(), latest_date()


def parse_date(text: str, tz: tzinfo, bounds: Bounds | None = None) -> date:
    """`2026-03-31`; a datetime with an offset is accepted and converted to its date in `tz`."""
    if _DATE.match(text):
        try:
            day = date.fromisoformat(text)
        except ValueError as exc:
            raise CellError(f"'{text}' is not a valid date") from exc
        return _plausible(day, bounds)
    if _DATETIME.match(text):
        moment = parse_datetime(text, tz, bounds)
        return _plausible(moment.astimezone(tz).date(), bounds)
    raise CellError(f"'{text}' is not an ISO 8601 date (YYYY-MM-DD)")


def parse_datetime(text: str, tz: tzinfo, bounds: Bounds | None = None) -> datetime:
    """ISO 8601 with an offset; a bare date means the start of that day in the program time zone."""
    if _DATE.match(text):
        return datetime.combine(parse_date(text, tz, bounds), time.min, tzinfo=tz)
    if not _DATETIME.match(text):
        raise CellError(f"'{text}' is not an ISO 8601 datetime (e.g. 2026-03-31T17:05:00+00:00)")
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CellError(f"'{text}' is not a valid datetime") from exc
    if value.tzinfo is None:
        raise CellError(f"'{text}' has no UTC offset (e.g. 2026-03-31T17:05:00+00:00)")
    return _plausible(value, bounds)


def _plausible(value: _Moment, bounds: Bounds | None = None) -> _Moment:
    if (
        bounds is not None
        and bounds[0] <= (value.date() if isinstance(value, datetime) else value) <= bounds[1]
    ):
        return value  # inside the range date_errors checks, taken once for the whole import
    if errors := date_errors(value):
        raise CellError(errors[0])
    return value


def parse_decimal(text: str, *, places: int, max_digits: int) -> Decimal:
    if not _DECIMAL.match(text):
        raise CellError(f"'{text}' is not a decimal number (e.g. 1250.00)")
    try:
        value = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the pattern already excludes these
        raise CellError(f"'{text}' is not a decimal number") from exc
    fraction = text.split(".", 1)[1] if "." in text else ""
    if len(fraction.rstrip("0")) > places:
        raise CellError(f"'{text}' has more than {places} decimal places")
    if len(text.lstrip("+-").split(".", 1)[0].lstrip("0")) > max_digits - places:
        raise CellError(f"'{text}' is too large")
    return value.quantize(Decimal(1).scaleb(-places))


def parse_money(text: str) -> Decimal:
    """An amount; whether it is positive is a rule the importer reports beside the others."""
    value = parse_decimal(text, places=MONEY_DECIMAL_PLACES, max_digits=MONEY_MAX_DIGITS)
    if errors := [e for e in amount_errors(value) if e != AMOUNT_NOT_POSITIVE]:
        raise CellError(errors[0])
    return value


def parse_target_value(text: str) -> Decimal:
    value = parse_decimal(text, places=TARGET_DECIMAL_PLACES, max_digits=TARGET_MAX_DIGITS)
    if errors := target_value_errors(value):
        raise CellError(errors[0])
    return value


def parse_period(text: str) -> tuple[str, date]:
    """`2026-03` / `2026-Q1` / `2026` -> (grain, first day of the period)."""
    grain, start = _period(text)
    if errors := year_errors(start.year):
        raise CellError(errors[0])
    try:
        kpi_period(text)  # the engine's own reading: no period starting after the last accepted month
    except ValueError as exc:
        raise CellError(str(exc)) from exc
    return grain, start


def _period(text: str) -> tuple[str, date]:
    if match := _MONTH.match(text):
        month = int(match.group(2))
        if 1 <= month <= 12 and int(match.group(1)) > 0:
            return "month", date(int(match.group(1)), month, 1)
    elif (match := _QUARTER.match(text)) and int(match.group(1)) > 0:
        return "quarter", date(int(match.group(1)), 3 * int(match.group(2)) - 2, 1)
    elif (match := _YEAR.match(text)) and int(match.group(1)) > 0:
        return "year", date(int(match.group(1)), 1, 1)
    raise CellError(f"'{text}' is not a period (2026-03, 2026-Q1 or 2026)")


def format_decimal(value: Decimal) -> str:
    return format(value, "f")


def format_datetime(value: datetime) -> str:
    return value.isoformat()
