"""How a published KPI value reads on a page: one place, so every page shows a metric the same way.

The raw value is the export's decimal string (INTERCHANGE.md: money 2 places, rates 4, days 1);
the display text is that value for a person (a percentage, a currency amount, "—" when undefined).
"""

from decimal import ROUND_HALF_UP, Decimal

from kpis.export import format_value
from kpis.metrics import METRICS_BY_NAME, Unit

UNDEFINED = "—"
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}


def export_string(metric: str, value: Decimal | None) -> str:
    """The value exactly as the KPI export writes it (kpis.export.format_value): empty when undefined."""
    if value is None or value == "":
        return ""
    return format_value(metric, "", Decimal(value))


def money(value: Decimal | None, currency: str = "USD") -> str:
    if value is None or value == "":
        return UNDEFINED
    amount = Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    sign = "−" if amount < 0 else ""
    symbol = CURRENCY_SYMBOLS.get(currency)
    body = f"{abs(amount):,.2f}"
    return f"{sign}{symbol}{body}" if symbol else f"{sign}{body} {currency}"


def display(metric: str, value: Decimal | None, currency: str = "USD") -> str:
    """The value for a person: `$12,300.00`, `42.5%`, `12.50×` (MDF return), `31.5 days`, `12`, or
    `—` when undefined."""
    if value is None or value == "":
        return UNDEFINED
    unit = METRICS_BY_NAME[metric].unit if metric in METRICS_BY_NAME else Unit.DAYS
    value = Decimal(value)
    if unit == Unit.MONEY:
        return money(value, currency)
    if unit == Unit.RATE and METRICS_BY_NAME[metric].multiple:
        return f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)}×"
    if unit == Unit.RATE:
        percent = (value * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        return f"{percent}%"
    if unit == Unit.DAYS:
        days = value.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        return f"{days} days"
    return f"{int(value.to_integral_value(rounding=ROUND_HALF_UP)):,}"


def percent(value: Decimal | None) -> str:
    if value is None or value == "":
        return UNDEFINED
    return f"{(Decimal(value) * 100).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"


# Metrics where a fall is the improvement (a card colours its change accordingly).
LOWER_IS_BETTER = frozenset(
    {
        "cac",
        "program_cost",
        "ttfs_median_days",
        "ttfs_mean_days",
        "sales_cycle_median_days_sourced",
        "sales_cycle_median_days_influenced",
        "sales_cycle_median_days_direct",
    }
)


def lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER


_SUFFIXES = ((Decimal(1000), "K"), (Decimal(10) ** 6, "M"), (Decimal(10) ** 9, "B"), (Decimal(10) ** 12, "T"))


def compact_money(value: Decimal | None, currency: str = "USD") -> str:
    """`$2.22M`, `$12.3K`: three significant digits from a thousand up; below that the exact amount
    (`$950.40`); `—` when undefined."""
    if value is None or value == "":
        return UNDEFINED
    amount = Decimal(value)
    if abs(amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)) < 1000:
        return money(amount, currency)
    sign = "−" if amount < 0 else ""
    amount = abs(amount)
    whole = amount.quantize(Decimal(1), rounding=ROUND_HALF_UP)
    body = f"{whole:,}"
    if whole >= 1000:
        for size, suffix in _SUFFIXES:  # smallest unit first; a value that rounds to 1000 moves up
            scaled = amount / size
            places = 2 if scaled < 10 else 1 if scaled < 100 else 0
            rounded = scaled.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
            body = f"{rounded}{suffix}"
            if rounded < 1000:
                break
    symbol = CURRENCY_SYMBOLS.get(currency)
    return f"{sign}{symbol}{body}" if symbol else f"{sign}{body} {currency}"


def compact(metric: str, value: Decimal | None, currency: str = "USD") -> str:
    """Money compact (`$2.22M`); every other unit as `display`."""
    if metric in METRICS_BY_NAME and METRICS_BY_NAME[metric].unit == Unit.MONEY:
        return compact_money(value, currency)
    return display(metric, value, currency)


def change(metric: str, value: Decimal | None, previous: Decimal | None) -> str:
    """The change from `previous` to `value`: relative for amounts and counts (`+12.5%`), in
    percentage points for rates (`−3.1 pts`); "" when either is undefined or the base is 0."""
    if value is None or previous is None:
        return ""
    value, previous = Decimal(value), Decimal(previous)
    unit = METRICS_BY_NAME[metric].unit if metric in METRICS_BY_NAME else Unit.COUNT
    if unit == Unit.RATE:
        points = ((value - previous) * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        return f"{_signed(points)} pts"
    if previous == 0:
        return ""
    ratio = ((value - previous) / abs(previous) * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{_signed(ratio)}%"


def _signed(amount: Decimal) -> str:
    if amount > 0:
        return f"+{amount:,}"
    if amount < 0:
        return f"−{abs(amount):,}"
    return "0.0" if amount == 0 else f"{amount}"
