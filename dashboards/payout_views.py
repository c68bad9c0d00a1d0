"""Payout batches for partner managers: make the month's batch, read it, mark it paid, export it
for accounts payable, and read any partner's statement (docs/economics.md, "Payouts").

Staff readers read; only partner managers make and pay batches.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from dashboards.permissions import staff_required
from economics.models import CommissionSettings
from economics.payout_models import Payout, PayoutBatch
from economics.payout_selectors import (
    ap_rows,
    batch_totals,
    batches_with_totals,
    statement_lines,
    statement_rows,
)
from economics.payouts import month_start, payout_batch_create, payout_batch_mark_paid
from partners import access
from prm.forms import add_service_errors
from prm.http import AuthenticatedRequest
from program.models import program_today


class BatchCreateForm(forms.Form):
    month = forms.DateField(
        input_formats=["%Y-%m"],
        widget=forms.DateInput(attrs={"type": "month"}, format="%Y-%m"),
        help_text="The month to settle (YYYY-MM): every entry approved by its end.",
    )


class MarkPaidForm(forms.Form):
    paid_on = forms.DateField(
        label="Paid on",
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        help_text="The payment date: each payout is booked as a commission cost on it.",
    )


def csv_response(rows: Iterable[list[str]], filename: str) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerows(rows)
    return response


def _managers_only(request: AuthenticatedRequest) -> None:
    if not access.can_write_all(request.user):
        raise PermissionDenied("Only partner managers make and pay payout batches.")


def _last_month() -> str:
    today = month_start(program_today())
    previous = today.replace(year=today.year - (today.month == 1), month=(today.month - 2) % 12 + 1)
    return previous.strftime("%Y-%m")


@staff_required
def payout_batches(request: AuthenticatedRequest) -> HttpResponse:
    """The batches; POST makes a month's batch (or opens the one it already has)."""
    form = BatchCreateForm(request.POST or None, initial={"month": _last_month()})
    if request.method == "POST":
        _managers_only(request)
        if form.is_valid():
            try:
                batch, created = payout_batch_create(
                    month=month_start(form.cleaned_data["month"]), created_by=request.user
                )
            except ValidationError as error:
                add_service_errors(form, error)
            else:
                if created:
                    messages.success(request, f"Batch {batch.period} made.")
                else:
                    messages.info(request, f"{batch.period} already has its batch; here it is.")
                return redirect("dashboards:payout_batch", batch_id=batch.pk)
    elif request.method != "GET":
        return HttpResponse(status=405)
    batches = batches_with_totals(PayoutBatch.objects.order_by("-month"), limit=36)
    return render(
        request,
        "dashboards/payout_batches.html",
        {
            "form": form,
            "batches": batches,
            "settings": CommissionSettings.load(),
            "can_write": access.can_write_all(request.user),
        },
        status=400 if form.errors else 200,
    )


@require_GET
@staff_required
def payout_batch(request: AuthenticatedRequest, batch_id: int) -> HttpResponse:
    batch = get_object_or_404(PayoutBatch, pk=batch_id)
    return _batch_page(request, batch, MarkPaidForm(initial={"paid_on": program_today()}))


def _batch_page(
    request: AuthenticatedRequest, batch: PayoutBatch, form: MarkPaidForm, status: int = 200
) -> HttpResponse:
    return render(
        request,
        "dashboards/payout_batch.html",
        {
            "batch": batch,
            "totals": batch_totals(batch),
            "payouts": batch.payouts.select_related("partner").order_by("partner__name", "id"),
            "form": form,
            "can_write": access.can_write_all(request.user),
        },
        status=status,
    )


@require_POST
@staff_required
def payout_batch_paid(request: AuthenticatedRequest, batch_id: int) -> HttpResponse:
    _managers_only(request)
    batch = get_object_or_404(PayoutBatch, pk=batch_id)
    form = MarkPaidForm(request.POST)
    if form.is_valid():
        try:
            batch, paid = payout_batch_mark_paid(
                batch=batch, paid_on=form.cleaned_data["paid_on"], paid_by=request.user
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            if paid:
                messages.success(
                    request, f"Batch {batch.period} marked paid; its payouts are booked as costs."
                )
            else:
                messages.info(request, f"Batch {batch.period} was already paid on {batch.paid_on:%Y-%m-%d}.")
            return redirect("dashboards:payout_batch", batch_id=batch.pk)
    return _batch_page(request, batch, form, status=400)


@require_GET
@staff_required
def payout_batch_export(request: AuthenticatedRequest, batch_id: int) -> HttpResponse:
    """The accounts-payable file: partner, key, amount, currency, period, reference."""
    batch = get_object_or_404(PayoutBatch, pk=batch_id)
    return csv_response(ap_rows(batch), f"payouts-{batch.period}.csv")


@require_GET
@staff_required
def payout_statement(request: AuthenticatedRequest, payout_id: int) -> HttpResponse:
    payout = get_object_or_404(Payout.objects.select_related("batch", "partner"), pk=payout_id)
    if request.GET.get("format") == "csv":
        return csv_response(
            statement_rows(payout), f"statement-{payout.batch.period}-{payout.partner_id}.csv"
        )
    return render(
        request,
        "dashboards/payout_statement.html",
        {"payout": payout, "lines": statement_lines(payout)},
    )
