"""Earnings: what a partner has earned, been paid and carries, and its monthly statements.

Money pages: the partner's admins only (a member gets 403); another partner's statement is a 404.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable

from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from economics.payout_models import Payout
from economics.payout_selectors import partner_earnings, statement_lines, statement_rows
from portal.people import partner_admin_required
from portal.permissions import PartnerRequest


def csv_response(rows: Iterable[list[str]], filename: str) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    csv.writer(response).writerows(rows)
    return response


@require_GET
@partner_admin_required
def earnings(request: PartnerRequest) -> HttpResponse:
    statements = (
        Payout.objects.filter(partner=request.partner).select_related("batch").order_by("-batch__month")
    )
    return render(
        request,
        "portal/earnings.html",
        {"earnings": partner_earnings(request.partner), "statements": statements},
    )


@require_GET
@partner_admin_required
def statement(request: PartnerRequest, payout_id: int) -> HttpResponse:
    payout = get_object_or_404(
        Payout.objects.select_related("batch", "partner"), pk=payout_id, partner=request.partner
    )
    if request.GET.get("format") == "csv":
        return csv_response(statement_rows(payout), f"statement-{payout.batch.period}.csv")
    return render(
        request, "portal/earnings_statement.html", {"payout": payout, "lines": statement_lines(payout)}
    )
