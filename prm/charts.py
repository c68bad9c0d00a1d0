"""Chart specs for templates (dashboards and portal): the plotly.js drawing data and the same
numbers as table rows."""

from decimal import Decimal


def chart(
    chart_id: str,
    title: str,
    labels: list[str],
    series: list[tuple[str, list[Decimal | int | float | None]]],
    *,
    stacked: bool = False,
    value_kind: str = "money",
    label_heading: str = "Period",
    line_series: tuple[str, ...] = (),
) -> dict:
    """A chart for `dashboards/_chart.html`; None values are drawn as 0 and shown as "—" in the table."""
    return {
        "id": chart_id,
        "data_id": f"{chart_id}-data",
        "title": title,
        "labels": labels,
        "series": [
            {
                "name": name,
                "values": [float(v) if v is not None else 0.0 for v in values],
                "type": "line" if name in line_series else "bar",
            }
            for name, values in series
        ],
        "rows": [[label, [values[i] for _, values in series]] for i, label in enumerate(labels)],
        "stacked": stacked,
        "value_kind": value_kind,
        "label_heading": label_heading,
    }
