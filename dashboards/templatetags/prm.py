from decimal import Decimal

from django import template
from django.forms import BoundField
from django.utils.safestring import SafeString

from kpis import formatting

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
