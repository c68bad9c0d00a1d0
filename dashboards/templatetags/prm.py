from decimal import Decimal

from django import template
from django.forms import BoundField
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from kpis import formatting
from kpis.readers import Card

register = template.Library()


@register.simple_tag
def accessible(field: BoundField) -> SafeString:
    """The field's widget with its help text and errors tied to it for screen readers."""
    described_by = []
    if field.help_text:
        described_by.append(f"{field.auto_id}_help")
    if field.errors:
        described_by.append(f"{field.auto_id}_error")
    attrs: dict[str, str | bool] = {}
    if described_by:
        attrs["aria-describedby"] = " ".join(described_by)
    if field.errors:
        attrs["aria-invalid"] = "true"
    return field.as_widget(attrs=attrs)


@register.filter
def kpi(value: Decimal | None, metric: str) -> str:
    return formatting.display(metric, value)


@register.filter
def export_value(value: Decimal | None, metric: str) -> str:
    return formatting.export_string(metric, value)


@register.filter
def money(value: Decimal | None) -> str:
    return formatting.money(value)


@register.filter
def percent(value: Decimal | None) -> str:
    return formatting.percent(value)


@register.filter
def words(value: str) -> str:
    """`first_touch` -> `first touch`."""
    return str(value).replace("_", " ")


SPARK_WIDTH, SPARK_HEIGHT, SPARK_PAD = 120, 28, 3


@register.simple_tag
def sparkline(card: Card) -> SafeString:
    """The card's trend as a small inline SVG line (server-side, no script); "" without a trend.

    Undefined values break the line; the last point is marked. The SVG is decorative for screen
    readers apart from its label, which names the span (the numbers are in the card and the tables).
    """
    values = card.trend
    if len(values) < 2 or all(v is None for v in values):
        return SafeString("")
    known = [float(v) for v in values if v is not None]
    low, high = min(known), max(known)
    spread = (high - low) or 1.0
    step = (SPARK_WIDTH - 2 * SPARK_PAD) / (len(values) - 1)

    def point(i: int, v: Decimal) -> tuple[float, float]:
        y = SPARK_HEIGHT - SPARK_PAD - (float(v) - low) / spread * (SPARK_HEIGHT - 2 * SPARK_PAD)
        return round(SPARK_PAD + i * step, 1), round(y, 1)

    segments: list[list[tuple[float, float]]] = [[]]
    for i, v in enumerate(values):
        if v is None:
            segments.append([])
        else:
            segments[-1].append(point(i, v))
    lines = "".join(
        f'<polyline points="{" ".join(f"{x},{y}" for x, y in seg)}"/>' for seg in segments if len(seg) > 1
    )
    last = next(((i, v) for i, v in reversed(list(enumerate(values))) if v is not None))
    cx, cy = point(*last)
    label = f"Trend of {card.label}, {card.trend_labels[0]} to {card.trend_labels[-1]}"
    return format_html(
        '<svg class="sparkline" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-label="{}" '
        'focusable="false"><title>{}</title><g class="sparkline__line">{}</g>'
        '<circle class="sparkline__dot" cx="{}" cy="{}" r="2"/></svg>',
        SPARK_WIDTH,
        SPARK_HEIGHT,
        SPARK_WIDTH,
        SPARK_HEIGHT,
        label,
        label,
        mark_safe(lines),  # built above from numbers only
        cx,
        cy,
    )


@register.filter
def compact_money(value: Decimal | None) -> str:
    return formatting.compact_money(value)
