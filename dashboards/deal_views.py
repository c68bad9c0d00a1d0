"""Staff pages of deals: the filtered, sorted, paginated list and a deal's page (its timeline and
its attribution split under every model). Thin: the reads are deals.selectors and
kpis.deal_attribution."""

from decimal import Decimal
from functools import cached_property
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.core.paginator import Paginator
from django.http import HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from dashboards.forms import PartnerReferenceField
from dashboards.permissions import staff_required
from dashboards.selection import sort_links
from deals.models import Deal
from deals.selectors import DEAL_SORTS, SEGMENTS, DealListQuery, deal_list, deal_list_count, deal_timeline
from kpis.deal_attribution import deal_attribution_splits
from kpis.periods import period_or_none
from partners.models import JoinSource
from prm.http import AuthenticatedRequest
from program.attribution import AttributionModel
from program.models import ProgramSettings
from program.validation import validate_plausible_date

PAGE_SIZE = 25
# The list counts its deals up to this many, then says "more than": counting every one of a
# broad filter's hundreds of thousands of deals (a join source's) costs more than the page.
COUNT_CAP = 10_000


class CappedPaginator(Paginator):
    """Counts at most COUNT_CAP + 1 rows (one statement whose cost stops there); `capped` when
    there are more, and then the pages end at the COUNT_CAP-th deal."""

    def __init__(self, query: DealListQuery, per_page: int) -> None:
        super().__init__(deal_list(query), per_page)
        self.query = query

    @cached_property
    def _counted(self) -> int:
        return deal_list_count(self.query, COUNT_CAP)

    @cached_property
    def count(self) -> int:
        return min(self._counted, COUNT_CAP)

    @property
    def capped(self) -> bool:
        return self._counted > COUNT_CAP


class DealListForm(forms.Form):
    """The deal list's filters (GET). Every field is optional; a bad value is a form error."""

    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Deal.Status.choices])
    segment = forms.ChoiceField(
        required=False, choices=[("", "Any segment"), *[(s, s.title()) for s in SEGMENTS]]
    )
    # A text field, not a select: a program may have ten thousand partners.
    partner = PartnerReferenceField()
    join_source = forms.ModelChoiceField(
        required=False,
        queryset=JoinSource.objects.order_by("name"),
        empty_label="Any join source",
        label="Join source",
    )
    period = forms.CharField(
        required=False, max_length=7, help_text="2026-03, 2026-Q1 or 2026 (or dates below)"
    )
    date_from = forms.DateField(
        required=False,
        label="From",
        validators=[validate_plausible_date],
        widget=forms.DateInput({"type": "date"}),
    )
    date_to = forms.DateField(
        required=False,
        label="To",
        validators=[validate_plausible_date],
        widget=forms.DateInput({"type": "date"}),
    )
    date_basis = forms.ChoiceField(
        required=False, choices=[("closed", "Close date"), ("created", "Creation date")], label="Dates of"
    )
    amount_min = forms.DecimalField(
        required=False, min_value=0, max_digits=14, decimal_places=2, label="Amount ≥"
    )
    amount_max = forms.DecimalField(
        required=False, min_value=0, max_digits=14, decimal_places=2, label="Amount ≤"
    )
    sort = forms.ChoiceField(required=False, choices=[(k, k.title()) for k in DEAL_SORTS])
    direction = forms.ChoiceField(required=False, choices=[("desc", "Descending"), ("asc", "Ascending")])

    def clean_period(self) -> str:
        label: str = self.cleaned_data.get("period") or ""
        if label and period_or_none(label) is None:
            raise forms.ValidationError("Not a period like 2026-03, 2026-Q1 or 2026.")
        return label

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        low, high = data.get("amount_min"), data.get("amount_max")
        if low is not None and high is not None and low > high:
            self.add_error("amount_max", "Must not be below the minimum.")
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "Must not be before the start.")
        return data

    def query(self) -> DealListQuery:
        """The valid filters (an invalid field filters nothing; its error is shown)."""
        data = self.cleaned_data if self.is_bound else {}
        period = period_or_none(data.get("period") or "")
        partner, source = data.get("partner"), data.get("join_source")
        return DealListQuery(
            status=data.get("status") or None,
            segment=data.get("segment") or None,
            partner_id=partner.pk if partner else None,
            join_source_id=source.pk if source else None,
            date_from=period.start if period else data.get("date_from"),
            date_to=period.end if period else data.get("date_to"),
            date_basis=data.get("date_basis") or "closed",
            amount_min=data.get("amount_min"),
            amount_max=data.get("amount_max"),
            sort=data.get("sort") or "created",
            descending=(data.get("direction") or "desc") == "desc",
        )


@require_GET
@staff_required
def deal_list_page(request: AuthenticatedRequest) -> HttpResponse:
    form = DealListForm(request.GET or None)
    if form.is_bound:
        form.is_valid()  # errors are shown; the valid fields still filter
    query = form.query()
    page = CappedPaginator(query, PAGE_SIZE).get_page(request.GET.get("page"))
    kept: dict[str, str] = {k: str(v) for k, v in request.GET.items() if k != "page" and v}
    return render(
        request,
        "dashboards/deal_list.html",
        {
            "form": form,
            "page": page,
            "query": urlencode(kept),
            "sort_links": sort_links(
                QueryDict(urlencode(kept)), DEAL_SORTS, current=query.sort, descending=query.descending
            ),
            "currency": ProgramSettings.load().currency,
        },
        status=400 if form.errors else 200,
    )


@require_GET
@staff_required
def deal_detail(request: AuthenticatedRequest, deal_id: int) -> HttpResponse:
    deal = get_object_or_404(Deal.objects.select_related("account", "sourcing_partner"), pk=deal_id)
    splits = deal_attribution_splits(deal)
    program = ProgramSettings.load()
    partners = sorted(
        {s.partner_id: s.partner_name for split in splits for s in split.shares}.items(), key=lambda p: p[1]
    )
    amounts = {(split.model, s.partner_id): s.amount for split in splits for s in split.shares}
    rows = [
        {
            "partner_id": pid,
            "name": name,
            "cells": [
                _share_cell(amounts.get((split.model, pid), Decimal("0.00")), deal.amount) for split in splits
            ],
        }
        for pid, name in partners
    ]
    return render(
        request,
        "dashboards/deal_detail.html",
        {
            "deal": deal,
            "timeline": deal_timeline(deal),
            "splits": splits,
            "split_rows": rows,
            "models": [AttributionModel(s.model) for s in splits],
            "program_model": program.attribution_model,
            "currency": program.currency,
        },
    )


def _share_cell(amount: Decimal, total: Decimal) -> dict[str, Decimal]:
    share = (amount / total * 100).quantize(Decimal("0.1")) if total else Decimal(0)
    return {"amount": amount, "percent": share}
