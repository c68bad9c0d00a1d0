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
