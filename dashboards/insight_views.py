"""Staff insight pages: the KPI heat map (partners × metrics, coloured by percentile within a peer
group) and the pipeline forecast with its backtest. Thin: kpis.peers computes; the forecast is
read as stored after the last KPI publication (kpis.forecast_store)."""

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from dashboards.permissions import staff_required
from kpis.forecast import AGE_BUCKETS
from kpis.forecast_store import forecast_requested, scope_forecast, stored_forecast
from kpis.metrics import Grain
from kpis.metrics import label as metric_label
from kpis.peers import HEATMAP_METRICS, heat_map, heat_map_arguments
from kpis.periods import period_or_none
from partners.models import Partner
from prm.http import AuthenticatedRequest
from program.models import ProgramSettings

PAGE_SIZE = 50


class HeatMapForm(forms.Form):
    grain = forms.ChoiceField(
        required=False, choices=[(g.value, g.value.title()) for g in Grain], initial=Grain.QUARTER.value
    )
    period = forms.CharField(required=False, max_length=7, help_text="2026-03, 2026-Q1 or 2026")
    metrics = forms.MultipleChoiceField(
        required=False,
        choices=[(m, metric_label(m)) for m in HEATMAP_METRICS],
        widget=forms.CheckboxSelectMultiple,
    )
    group = forms.ChoiceField(
        required=False,
        choices=[("tier", "Tier"), ("type", "Type"), ("join_source", "Join source")],
        label="Peer group",
    )
    only = forms.CharField(required=False, max_length=100, label="Only the group", help_text="e.g. gold")
    sort = forms.ChoiceField(required=False, choices=[("name", "Name")] + [(m, m) for m in HEATMAP_METRICS])
    direction = forms.ChoiceField(required=False, choices=[("desc", "Descending"), ("asc", "Ascending")])

    def clean_period(self) -> str:
        label: str = self.cleaned_data.get("period") or ""
        if label and period_or_none(label) is None:
            raise forms.ValidationError("Not a period like 2026-03, 2026-Q1 or 2026.")
        return label


@require_GET
@staff_required
def heatmap(request: AuthenticatedRequest) -> HttpResponse:
    form = HeatMapForm(request.GET or None)
    data = form.cleaned_data if form.is_bound and form.is_valid() else {}
    params = heat_map_arguments(data)
    if not form.errors:
        # Show what is in force: the chosen period and metrics, checked.
        shown = request.GET.copy()
        shown.setlist("metrics", params["metrics"])
        shown["grain"], shown["period"] = str(params["period"].grain), params["period"].label
        form = HeatMapForm(shown)
    number = _page_number(request.GET.get("page"))
    total, rows = heat_map(**params, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE)
    page = Paginator(range(total), PAGE_SIZE).get_page(number)
    kept: list[tuple[str, str]] = [
        (k, str(value))
        for k, values in request.GET.lists()
        for value in values
        if k not in ("page", "sort", "direction")
    ]
    return render(
        request,
        "dashboards/heatmap.html",
        {
            "form": form,
            "rows": rows,
            "page": page,
            "total": total,
            "columns": [(m, metric_label(m), _sort_url(kept, m, params)) for m in params["metrics"]],
            "name_sort": _sort_url(kept, "name", params),
            "query": urlencode(
                [*kept, ("sort", params["sort"]), ("direction", "desc" if params["descending"] else "asc")]
            ),
            **params,
            "tiers": Partner.objects.exclude(tier="")
            .order_by("tier")
            .values_list("tier", flat=True)
            .distinct(),
        },
        status=400 if form.errors else 200,
    )


def _page_number(raw: str | None) -> int:
    try:
        return max(1, min(int(raw or 1), 10**6))
    except ValueError:
        return 1


def _sort_url(kept: list[tuple[str, str]], key: str, params: dict[str, Any]) -> dict[str, str]:
    active = params["sort"] == key
    direction = "asc" if active and params["descending"] else "desc"
    aria = ("descending" if params["descending"] else "ascending") if active else "none"
    return {"url": "?" + urlencode([*kept, ("sort", key), ("direction", direction)]), "aria_sort": aria}


@require_GET
@staff_required
def forecast(request: AuthenticatedRequest) -> HttpResponse:
    """The latest stored forecast (computed after each KPI publication); none yet: ask for one."""
    stored = stored_forecast()
    if stored is None:
        forecast_requested()
        return render(request, "dashboards/forecast.html", {"forecast": None, "page": None})
    page = Paginator(stored.partner_rows(), PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [scope_forecast(row) for row in page.object_list]
    return render(
        request,
        "dashboards/forecast.html",
        {
            "forecast": stored.forecast,
            "computed_at": stored.computed_at,
            "page": page,
            "rows": rows,
            "query": "",
            "buckets": [label for _, label in AGE_BUCKETS],
            "currency": ProgramSettings.load().currency,
        },
    )
