"""What the overview covers: a period or a custom range of months, the whole program, one join source
or a group of partners (tier, type). Turns the GET parameters into the cards to show."""

from collections.abc import Container, Iterable
from dataclasses import dataclass

from django import forms
from django.http import QueryDict

from kpis import readers as kpi_readers
from kpis.metrics import METRICS_BY_NAME, Scope
from kpis.periods import Period
from kpis.ranges import MonthRange, Selection, month_range, summed_cards, trend_window, with_trends
from partners.models import JoinSource, Partner
from partners.selectors import tiers_in_order


class RangeForm(forms.Form):
    """A custom range of whole months (`from=2026-01&to=2026-03`); both or neither."""

    start = forms.CharField(required=False, max_length=7, label="From month")
    end = forms.CharField(required=False, max_length=7, label="To month")

    def clean(self) -> dict:
        data = super().clean() or {}
        start, end = (data.get("start") or "").strip(), (data.get("end") or "").strip()
        data["range"] = None
        if not start and not end:
            return data
        if not start or not end:
            raise forms.ValidationError("A custom range needs both a first and a last month.")
        try:
            data["range"] = month_range(start, end)
        except ValueError as error:
            raise forms.ValidationError(str(error)) from error
        return data


class PartnerGroupForm(forms.Form):
    """Which partners the overview covers: all, a join source, a tier, a type (combinable)."""

    tier = forms.ChoiceField(required=False, choices=[])
    type = forms.ChoiceField(required=False, choices=[("", "Any type"), *Partner.Type.choices])
    join_source = forms.ModelChoiceField(
        queryset=JoinSource.objects.order_by("name"), required=False, empty_label="Any join source"
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        tier = self.fields["tier"]
        assert isinstance(tier, forms.ChoiceField)
        tier.choices = [("", "Any tier"), *((t, t) for t in tiers_in_order())]

    def selection(self, model: str) -> Selection:
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        source, tier, kind = data.get("join_source"), data.get("tier"), data.get("type")
        if tier or kind:
            partners = Partner.objects.all()
            if tier:
                partners = partners.filter(tier=tier)
            if kind:
                partners = partners.filter(type=kind)
            if source:
                partners = partners.filter(join_source=source)
            return Selection(partners=partners, attribution_model=model)
        if source:
            return Selection(scope=Scope.JOIN_SOURCE, scope_key=source.export_key, attribution_model=model)
        return Selection(attribution_model=model)

    def drill_target(self) -> tuple[str, int]:
        """Where the cards' values drill: the program, the join source, or nowhere for a tier or
        type (its sums are no published scope: "group" is no scope, so drill_href gives no link)."""
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        if data.get("tier") or data.get("type"):
            return "group", 0
        if data.get("join_source"):
            return Scope.JOIN_SOURCE.value, data["join_source"].pk
        return Scope.PROGRAM.value, 0

    def description(self) -> str:
        """`gold partners of type reseller from Website`, or "" for the whole program."""
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        parts = []
        if data.get("tier"):
            parts.append(f"{data['tier']} partners")
        if data.get("type"):
            parts.append(f"type {dict(Partner.Type.choices)[data['type']].lower()}")
        if data.get("join_source"):
            parts.append(f"joined through {data['join_source'].name}")
        return ", ".join(parts)


@dataclass
class CardRequest:
    span: Period | MonthRange
    selection: Selection
    metrics: tuple[str, ...]


def build_cards(req: CardRequest) -> list[kpi_readers.Card]:
    """The cards for a span and selection: the published values themselves for a period of the
    program or a join source (ratios, medians and targets included), sums otherwise
    (kpis.ranges). Two queries either way."""
    sel = req.selection
    if isinstance(req.span, Period) and sel.partners is None:
        cards = kpi_readers.cards(
            req.span,
            req.metrics,
            scope=sel.scope,
            scope_key=sel.scope_key,
            attribution_model=sel.attribution_model,
        )
        for card in cards:
            if Scope(sel.scope) not in METRICS_BY_NAME[card.metric].scopes():
                card.undefined_reason = f"Not published per {Scope(sel.scope).value.replace('_', ' ')}."
        return with_trends(cards, trend_window(req.span), sel)
    return summed_cards(req.span, req.metrics, sel)


def sort_links(
    query: QueryDict,
    keys: Iterable[str],
    *,
    current: str,
    descending: bool,
    ascending_first: Container[str] = (),
) -> dict[str, dict[str, str]]:
    """A table's column-header links (url and aria-sort) over the page's other parameters: the
    column sorted now flips; another starts with the largest first, or A→Z (oldest first) for the
    columns in `ascending_first` (names, dates)."""
    links = {}
    for key in keys:
        link = query.copy()
        link["sort"] = key
        if key == current:
            link["direction"] = "asc" if descending else "desc"
        else:
            link["direction"] = "asc" if key in ascending_first else "desc"
        links[key] = {
            "url": "?" + link.urlencode(),
            "aria_sort": ("descending" if descending else "ascending") if key == current else "none",
        }
    return links
