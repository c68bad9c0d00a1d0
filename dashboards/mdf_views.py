"""Staff pages of market development funds: budgets (and editing them), and the request and claim
queues to decide, with filters (docs/mdf.md). Staff readers see them; partner managers act."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from dashboards.forms import object_id
from dashboards.permissions import staff_required
from mdf import selectors, services
from mdf.models import MdfBudget, MdfClaim, MdfRequest
from mdf.quarters import quarter_of
from partners import access
from partners.models import Partner
from prm.forms import add_service_errors
from prm.http import AuthenticatedRequest
from program.fields import PlainDecimalFormField
from program.models import program_today
from program.validation import validate_amount, validate_plausible_date

PAGE_SIZE = 20
DATE = forms.DateInput(attrs={"type": "date"})


def _money(label: str, required: bool = True, help_text: str = "") -> PlainDecimalFormField:
    return PlainDecimalFormField(
        label=label,
        max_digits=14,
        decimal_places=2,
        required=required,
        help_text=help_text,
        validators=[validate_amount],
    )


class BudgetForm(forms.Form):
    quarter = forms.RegexField(
        regex=r"^\d{4}-Q[1-4]$", max_length=7, help_text="A calendar quarter, e.g. 2026-Q3."
    )
    partner = forms.ModelChoiceField(
        queryset=Partner.objects.filter(joined_at__isnull=False).order_by("name"),
        required=False,
        empty_label="— a tier's pool instead —",
    )
    tier = forms.CharField(
        max_length=50, required=False, help_text="For a pool shared by the tier's partners."
    )
    amount = _money("Amount")
    note = forms.CharField(max_length=500, required=False)


class BudgetFilter(forms.Form):
    quarter = forms.CharField(max_length=7, required=False, help_text="2026-Q3; empty for every quarter")
    q = forms.CharField(max_length=100, required=False, label="Partner or tier contains")


class QueueFilter(forms.Form):
    status = forms.ChoiceField(required=False)
    quarter = forms.CharField(max_length=7, required=False)
    q = forms.CharField(max_length=100, required=False, label="Partner contains")

    def __init__(self, *args: Any, statuses: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        status = self.fields["status"]
        assert isinstance(status, forms.ChoiceField)
        status.choices = [("", "Any status"), *statuses]


class RequestDecisionForm(forms.Form):
    DECISIONS = [("approve", "Approve"), ("reject", "Reject")]
    decision = forms.ChoiceField(choices=DECISIONS, widget=forms.RadioSelect)
    amount_approved = _money("Amount approved", required=False, help_text="Empty: the amount requested.")
    claim_deadline = forms.DateField(
        required=False,
        widget=DATE,
        validators=[validate_plausible_date],
        help_text="Unclaimed funds expire after it.",
    )
    comment = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required to reject.",
    )

    def __init__(self, *args: Any, row_id: int, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", f"q{row_id}")
        super().__init__(*args, **kwargs)


class DeadlineForm(forms.Form):
    claim_deadline = forms.DateField(
        widget=DATE, validators=[validate_plausible_date], label="New claim deadline"
    )

    def __init__(self, *args: Any, row_id: int, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", f"d{row_id}")
        super().__init__(*args, **kwargs)


class ClaimDecisionForm(forms.Form):
    DECISIONS = [("approve", "Approve"), ("reject", "Reject")]
    decision = forms.ChoiceField(choices=DECISIONS, widget=forms.RadioSelect)
    amount_approved = _money(
        "Amount approved", required=False, help_text="Less than claimed for a partial approval."
    )
    comment = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required to reject.",
    )

    def __init__(self, *args: Any, row_id: int, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", f"c{row_id}")
        super().__init__(*args, **kwargs)


def _require_manager(request: AuthenticatedRequest) -> None:
    if not access.can_write_all(request.user):
        raise PermissionDenied("Only partner managers decide and edit market development funds.")


@staff_required
def budgets(request: AuthenticatedRequest) -> HttpResponse:
    """Budgets with what is left; POST sets (creates or changes) one."""
    today = program_today()
    form = BudgetForm(initial={"quarter": quarter_of(today).label})
    if request.method == "POST":
        _require_manager(request)
        form = BudgetForm(request.POST)
        if form.is_valid():
            try:
                budget = services.budget_set(changed_by=request.user, **form.cleaned_data)
            except ValidationError as error:
                add_service_errors(form, error)
            else:
                messages.success(
                    request, f"Budget {budget.quarter} of {budget.scope_label} set to {budget.amount}."
                )
                return redirect("dashboards:mdf_budgets")
    elif request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405)
    elif (edit := object_id(request.GET.get("edit"))) is not None:
        budget = get_object_or_404(MdfBudget, pk=edit)
        form = BudgetForm(
            initial={f: getattr(budget, f) for f in ("quarter", "partner", "tier", "amount", "note")}
        )
    filters = BudgetFilter(request.GET or None)
    rows: QuerySet[MdfBudget] = MdfBudget.objects.select_related("partner").order_by(
        "-starts_on", "tier", "partner__name"
    )
    if filters.is_valid():
        if quarter := filters.cleaned_data["quarter"].strip():
            rows = rows.filter(quarter=quarter)
        if q := filters.cleaned_data["q"].strip():
            rows = rows.filter(Q(partner__name__icontains=q) | Q(tier__icontains=q))
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "dashboards/mdf_budgets.html",
        {
            "figures": selectors.budget_figures(page),
            "page": page,
            "filters": filters,
            "form": form,
            "query": query.urlencode(),
            "can_edit": access.can_write_all(request.user),
        },
        status=400 if form.errors else 200,
    )


def _queue_filters(
    request: AuthenticatedRequest, qs: QuerySet[Any], statuses: list[tuple[str, str]], prefix: str
) -> tuple[QueueFilter, QuerySet[Any]]:
    filters = QueueFilter(request.GET if request.GET else {"status": "submitted"}, statuses=statuses)
    if filters.is_valid():
        data = filters.cleaned_data
        if data["status"]:
            qs = qs.filter(status=data["status"])
        if quarter := data["quarter"].strip():
            qs = qs.filter(**{f"{prefix}budget__quarter": quarter})
        if q := data["q"].strip():
            qs = qs.filter(**{f"{prefix}partner__name__icontains": q})
    return filters, qs


@staff_required
def requests_queue(request: AuthenticatedRequest) -> HttpResponse:
    """MDF requests, undecided first by default; POST decides one or moves its claim deadline."""
    bound: dict[int, forms.Form] = {}
    if request.method == "POST":
        _require_manager(request)
        row_id = object_id(request.POST.get("request"))
        if row_id is None:
            messages.error(request, "The form did not name a request; nothing changed.")
            return redirect(request.get_full_path())
        row = get_object_or_404(MdfRequest, pk=row_id)
        if _decide_request(request, row, bound):
            return redirect(request.get_full_path())
    elif request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405)
    base = MdfRequest.objects.select_related("partner", "budget", "decided_by").order_by("submitted_at", "id")
    filters, qs = _queue_filters(request, base, list(MdfRequest.Status.choices), "")
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        {
            "r": r,
            "form": bound.get(r.pk)
            if isinstance(bound.get(r.pk), RequestDecisionForm)
            else RequestDecisionForm(row_id=r.pk),
            "deadline_form": bound.get(r.pk)
            if isinstance(bound.get(r.pk), DeadlineForm)
            else DeadlineForm(row_id=r.pk, initial={"claim_deadline": r.claim_deadline}),
        }
        for r in page
    ]
    _orphan_errors(request, bound, {r.pk for r in page}, "Request")
    return _queue_page(request, "dashboards/mdf_requests.html", filters, page, rows, bound)


def _decide_request(request: AuthenticatedRequest, row: MdfRequest, bound: dict[int, forms.Form]) -> bool:
    if "d" + str(row.pk) + "-claim_deadline" in request.POST:
        form: forms.Form = DeadlineForm(request.POST, row_id=row.pk)
        if form.is_valid():
            try:
                services.request_set_claim_deadline(request=row, changed_by=request.user, **form.cleaned_data)
            except ValidationError as error:
                add_service_errors(form, error)
            else:
                messages.success(
                    request, f"Request #{row.pk}: claim deadline now {form.cleaned_data['claim_deadline']}."
                )
                return True
        bound[row.pk] = form
        return False
    form = RequestDecisionForm(request.POST, row_id=row.pk)
    if form.is_valid():
        data = form.cleaned_data
        try:
            decided = services.request_decide(
                request=row,
                decided_by=request.user,
                approve=data["decision"] == "approve",
                comment=data["comment"],
                amount_approved=data["amount_approved"],
                claim_deadline=data["claim_deadline"],
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(
                request, f"Request #{row.pk} of {row.partner} {decided.get_status_display().lower()}."
            )
            return True
    bound[row.pk] = form
    return False


@staff_required
def claims_queue(request: AuthenticatedRequest) -> HttpResponse:
    """MDF claims, in review first by default; POST decides one, or reimburses an approved one."""
    bound: dict[int, forms.Form] = {}
    if request.method == "POST":
        _require_manager(request)
        row_id = object_id(request.POST.get("claim"))
        if row_id is None:
            messages.error(request, "The form did not name a claim; nothing changed.")
            return redirect(request.get_full_path())
        row = get_object_or_404(MdfClaim.objects.select_related("request__partner"), pk=row_id)
        if _act_on_claim(request, row, bound):
            return redirect(request.get_full_path())
    elif request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405)
    base = (
        MdfClaim.objects.select_related("request__partner", "request__budget", "decided_by")
        .prefetch_related("files", "registrations__account", "deals__account")
        .order_by("submitted_at", "id")
    )
    filters, qs = _queue_filters(request, base, list(MdfClaim.Status.choices), "request__")
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [{"c": c, "form": bound.get(c.pk) or ClaimDecisionForm(row_id=c.pk)} for c in page]
    _orphan_errors(request, bound, {c.pk for c in page}, "Claim")
    return _queue_page(request, "dashboards/mdf_claims.html", filters, page, rows, bound)


def _act_on_claim(request: AuthenticatedRequest, row: MdfClaim, bound: dict[int, forms.Form]) -> bool:
    if request.POST.get("action") == "reimburse":
        try:
            services.claim_reimburse(claim=row, reimbursed_by=request.user)
        except ValidationError as error:
            messages.error(request, f"Claim #{row.pk}: {' '.join(error.messages)}")
            return False
        messages.success(
            request, f"Claim #{row.pk} reimbursed and booked as an MDF cost of {row.request.partner}."
        )
        return True
    form = ClaimDecisionForm(request.POST, row_id=row.pk)
    if form.is_valid():
        data = form.cleaned_data
        try:
            decided = services.claim_decide(
                claim=row,
                decided_by=request.user,
                approve=data["decision"] == "approve",
                amount_approved=data["amount_approved"],
                comment=data["comment"],
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Claim #{row.pk} {decided.get_status_display().lower()}.")
            return True
    bound[row.pk] = form
    return False


def _orphan_errors(
    request: AuthenticatedRequest, bound: dict[int, forms.Form], shown: set[int], label: str
) -> None:
    """Errors of a form whose row is not on this page are shown as messages instead."""
    for row_id, form in bound.items():
        if row_id not in shown:
            for errors in form.errors.values():
                for error in errors:
                    messages.error(request, f"{label} #{row_id}: {error}")


def _queue_page(
    request: AuthenticatedRequest,
    template: str,
    filters: QueueFilter,
    page: Any,
    rows: list[dict[str, Any]],
    bound: dict[int, forms.Form],
) -> HttpResponse:
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        template,
        {
            "filters": filters,
            "page": page,
            "rows": rows,
            "query": query.urlencode(),
            "can_decide": access.can_write_all(request.user),
        },
        status=400 if bound else 200,
    )
