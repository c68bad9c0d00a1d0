"""`{% drill text metric period scope sid %}`: a KPI value as a link to the rows behind it.

Staff pages link to /dashboard/drill/<metric>/, portal pages (the request resolved in the portal's
namespace) to /portal/drill/<metric>/ (the partner's own rows). A value with no rows to open (a
target, a metric that does not exist in the scope, a metric without a value over a custom range)
stays plain text.
"""

from urllib.parse import urlencode

from django import template
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from kpis.drilldown import drillable
from kpis.ranges import RANGE_SEPARATOR, defined_over_range

register = template.Library()


def drill_href(
    metric: str, period: str, scope: str = "program", sid: object = 0, *, portal: bool = False
) -> str:
    """The drill-down URL of one published value ("" when it has no rows to open). `period`: a
    period label or a custom range of whole months as a URL spells it (`MonthRange.param`)."""
    scope = scope or "program"
    if not period or not drillable(metric, scope):
        return ""
    if RANGE_SEPARATOR in period and not defined_over_range(metric):
        return ""  # its range card shows "—": no value to open (kpis.ranges)
    if portal:
        if scope != "partner":
            return ""
        return reverse("portal:drill", args=[metric]) + "?" + urlencode({"period": period})
    query = {"period": period}
    if scope != "program":
        query[scope] = str(sid)
    return reverse("dashboards:drill", args=[metric]) + "?" + urlencode(query)


def _in_portal(context: template.Context) -> bool:
    request = context.get("request")
    match = getattr(request, "resolver_match", None)
    return getattr(match, "namespace", "") == "portal"


@register.simple_tag(takes_context=True)
def drill_url(
    context: template.Context, metric: str, period: str, scope: str = "program", sid: object = 0
) -> str:
    return drill_href(metric, str(period), scope, sid, portal=_in_portal(context))


@register.simple_tag(takes_context=True)
def drill(
    context: template.Context, text: object, metric: str, period: str, scope: str = "program", sid: object = 0
) -> SafeString:
    """`text` as a link to the rows behind the value (plain text when there are none)."""
    href = drill_href(metric, str(period), scope, sid, portal=_in_portal(context))
    if not href:
        return format_html("{}", text)
    return format_html(
        '<a class="drill-link" href="{}" title="The rows behind this value">{}</a>', href, text
    )


@register.filter
def get_item(row: dict, name: str) -> object:
    return row.get(name)


@register.filter
def cents_money(cents: int | None) -> str:
    from decimal import Decimal

    from kpis import formatting

    return formatting.money(None if cents is None else Decimal(int(cents)) / 100)


SEGMENTS = {"s": "sourced", "i": "influenced", "d": "direct"}


@register.filter
def segment(code: str) -> str:
    return SEGMENTS.get(code, code)


@register.simple_tag
def chart_cell(chart: dict, row: int, column: int, value: object) -> SafeString:
    """One number of a chart's table, linked to its rows when the chart has drill-down links
    (dashboards.drilldown_views.add_chart_links)."""
    from django.template.defaultfilters import floatformat

    from kpis import formatting

    if value is None:
        text = "—"
    elif chart.get("value_kind") == "money":
        text = formatting.money(value)  # type: ignore[arg-type]
    else:
        text = floatformat(value, "0")
    links = chart.get("links") or []
    href = links[column][row] if column < len(links) and row < len(links[column]) else ""
    if not href:
        return format_html("{}", text)
    return format_html('<a class="drill-link" href="{}">{}</a>', href, text)
